"""Tests for the chunk-fair scheduler, driven by a small discrete-event simulator with fake workers and a fake clock."""
from __future__ import annotations

import heapq
import random
import subprocess
import sys
from collections import defaultdict
from typing import Callable

import pytest

from rftui.engine.scheduler import Assignment, ChunkFairScheduler, Scheduler


# ----------------------------------------------------------------------------- simulator


class Sim:
    """Fake workers and a fake clock around a scheduler, playing the controller's part.

    Whenever a worker is idle the sim asks ``choose()`` (twice, to check idempotency),
    dispatches the assignments and schedules their completion after the run's quantum
    duration. Timed actions (add, pause, resume, remove, lose or add a worker) are events on
    the same clock. At every quantum start it checks the barrier against its own bookkeeping.
    """

    def __init__(
        self,
        num_chunks: int,
        workers: list[int],
        durations: dict[str, float] | Callable[[str, int], float] | None = None,
        remove_on_complete: bool = False,
    ):
        self.sched = ChunkFairScheduler(num_chunks)
        self.num_chunks = num_chunks
        self.workers = set(workers)
        self._durations = durations or {}
        self.remove_on_complete = remove_on_complete
        self.t = 0.0
        self._heap: list[tuple] = []
        self._seq = 0
        self.busy: dict[int, tuple[str, int, int]] = {}   # worker -> (run, chunk, token)
        self.progress: dict[str, int] = {}                # run -> chunks finished (truth)
        self.run_chunks: dict[str, int] = {}
        self.paused: set[str] = set()
        self.removed: set[str] = set()
        self.starts: list[tuple[float, int, str, int]] = []      # (t, worker, run, chunk)
        self.finishes: list[tuple[float, int, str, int]] = []    # (t, worker, run, chunk)
        self.preempted: list[tuple[float, int, str, int]] = []
        self.finished_chunks: dict[str, list[int]] = defaultdict(list)

    # -- controller-side operations (call directly, or schedule with at()) --

    def add_run(self, run: str, chunks_done: int = 0, num_chunks: int | None = None) -> None:
        self.sched.on_run_added(run, chunks_done, num_chunks)
        self.progress[run] = chunks_done
        self.run_chunks[run] = num_chunks or self.num_chunks

    def pause(self, run: str) -> None:
        self.sched.on_run_paused(run)
        self.paused.add(run)
        worker = self._worker_of(run)
        if worker is not None:  # preempted at the next optimizer step
            _, chunk, _ = self.busy.pop(worker)
            self.sched.on_quantum_done(run, worker, chunk_finished=False)
            self.preempted.append((self.t, worker, run, chunk))

    def resume(self, run: str) -> None:
        self.sched.on_run_resumed(run)
        self.paused.discard(run)

    def remove(self, run: str) -> None:
        worker = self._worker_of(run)
        if worker is not None:
            self.busy.pop(worker)
        self.sched.on_run_removed(run)
        self.removed.add(run)

    def lose_worker(self, worker: int) -> None:
        self.workers.discard(worker)
        self.busy.pop(worker, None)
        self.sched.on_worker_lost(worker)

    def add_worker(self, worker: int) -> None:
        self.workers.add(worker)

    def at(self, t: float, action: Callable[[], None]) -> None:
        self._push(t, "action", action)

    # -- the loop --

    def run(self, max_events: int = 100_000) -> "Sim":
        for _ in range(max_events):
            self._dispatch()
            if not self._heap:
                break
            t, _, kind, payload = heapq.heappop(self._heap)
            assert t >= self.t
            self.t = t
            if kind == "action":
                payload()
            else:
                self._complete(*payload)
        else:
            raise AssertionError("simulation did not terminate")
        stuck = [r for r in self.active_runs()]
        assert not stuck, f"deadlock at t={self.t}: runs {stuck} can never be scheduled"
        return self

    def active_runs(self) -> list[str]:
        return [
            r for r in self.progress
            if r not in self.paused and r not in self.removed and self.progress[r] < self.run_chunks[r]
        ]

    def order_of_starts(self) -> list[str]:
        return [run for _, _, run, _ in self.starts]

    def workers_used(self, run: str) -> set[int]:
        return {w for _, w, r, _ in self.starts if r == run}

    # -- internals --

    def _dispatch(self) -> None:
        idle = sorted(self.workers - set(self.busy))
        if not idle:
            return
        before = self.sched.snapshot()
        decisions = self.sched.choose(idle)
        assert self.sched.choose(idle) == decisions, "choose() is not idempotent"
        assert self.sched.snapshot() == before, "choose() changed state"
        assert len({a.run_id for a in decisions}) == len(decisions), "a run was given to two workers"
        for a in decisions:
            assert a.worker_id in idle
            self._check_barrier(a)
            self.sched.on_assigned(a)
            self._seq += 1
            self.busy[a.worker_id] = (a.run_id, a.chunk, self._seq)
            self.starts.append((self.t, a.worker_id, a.run_id, a.chunk))
            self._push(self.t + self._duration(a.run_id, a.chunk), "done", (a.worker_id, self._seq))

    def _check_barrier(self, a: Assignment) -> None:
        assert a.run_id not in self.paused and a.run_id not in self.removed
        assert a.chunk == self.progress[a.run_id], f"{a} but the run has {self.progress[a.run_id]} chunks done"
        for other in self.active_runs():
            assert self.progress[other] >= a.chunk, (
                f"barrier broken at t={self.t}: {a.run_id} starts chunk {a.chunk} "
                f"while {other} has only {self.progress[other]} chunks done"
            )

    def _complete(self, worker: int, token: int) -> None:
        if worker not in self.busy or self.busy[worker][2] != token:
            return  # the quantum was cancelled (preempted, removed, worker lost)
        run, chunk, _ = self.busy.pop(worker)
        self.sched.on_quantum_done(run, worker, chunk_finished=True)
        self.progress[run] += 1
        self.finished_chunks[run].append(chunk)
        self.finishes.append((self.t, worker, run, chunk))
        if self.remove_on_complete and self.progress[run] == self.run_chunks[run]:
            self.sched.on_run_removed(run)

    def _duration(self, run: str, chunk: int) -> float:
        if callable(self._durations):
            return self._durations(run, chunk)
        return self._durations.get(run, 1.0)

    def _worker_of(self, run: str) -> int | None:
        for w, (r, _, _) in self.busy.items():
            if r == run:
                return w
        return None

    def _push(self, t: float, kind: str, payload) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, kind, payload))


def assert_all_chunks_once(sim: Sim, runs: list[str], first_chunk: dict[str, int] | None = None) -> None:
    """Every run finished each of its chunks exactly once, in order (none lost, none run twice)."""
    first_chunk = first_chunk or {}
    for run in runs:
        expected = list(range(first_chunk.get(run, 0), sim.run_chunks[run]))
        assert sim.finished_chunks[run] == expected, run


def finish_time(sim: Sim, run: str, chunk: int) -> float:
    return next(t for t, _, r, c in sim.finishes if r == run and c == chunk)


def start_time(sim: Sim, run: str, chunk: int) -> float:
    return min(t for t, _, r, c in sim.starts if r == run and c == chunk)


# ----------------------------------------------------------------------------- whole schedules


def test_one_worker_four_runs_round_robin_by_chunk():
    sim = Sim(num_chunks=4, workers=[0])
    runs = ["r1", "r2", "r3", "r4"]
    for r in runs:
        sim.add_run(r)
    sim.run()
    assert sim.order_of_starts() == runs * 4
    assert [c for _, _, _, c in sim.starts] == [0] * 4 + [1] * 4 + [2] * 4 + [3] * 4
    assert_all_chunks_once(sim, runs)
    assert sim.sched.is_finished()
    assert sim.t == 16.0


def test_two_workers_share_runs_and_keep_them():
    sim = Sim(num_chunks=3, workers=[0, 1])
    runs = ["r1", "r2", "r3", "r4"]
    for r in runs:
        sim.add_run(r)
    sim.run()
    assert sim.starts[:4] == [(0.0, 0, "r1", 0), (0.0, 1, "r2", 0), (1.0, 0, "r3", 0), (1.0, 1, "r4", 0)]
    assert sim.t == 6.0  # 12 quanta of 1s over 2 workers, no idle time
    assert {r: sim.workers_used(r) for r in runs} == {"r1": {0}, "r2": {1}, "r3": {0}, "r4": {1}}
    assert_all_chunks_once(sim, runs)


def test_uneven_run_times_never_break_the_barrier():
    durations = {"fast": 1.0, "slow": 5.0, "mid": 2.0, "tiny": 0.25}
    sim = Sim(num_chunks=4, workers=[0, 1, 2], durations=durations)
    for r in durations:
        sim.add_run(r)
    sim.run()  # the sim checks the barrier at every quantum start
    for t, _, run, chunk in sim.starts:
        if chunk == 0:
            continue
        for other in durations:
            assert finish_time(sim, other, chunk - 1) <= t, (run, chunk, other)
    assert_all_chunks_once(sim, list(durations))
    # the slow run paces every chunk: fast runs wait at the barrier instead of running ahead
    assert sim.t == 20.0  # tiny, fast and mid fit beside slow each round


def test_affinity_each_run_stays_on_its_worker():
    sim = Sim(num_chunks=5, workers=[0, 1], durations={"a": 1.0, "b": 3.0})
    sim.add_run("a")
    sim.add_run("b")
    sim.run()
    # worker 0 idles while b runs rather than take a; when both are idle each takes its own run
    assert sim.workers_used("a") == {0}
    assert sim.workers_used("b") == {1}
    assert_all_chunks_once(sim, ["a", "b"])


def test_clone_added_mid_way_catches_up_before_anyone_starts_the_next_chunk():
    sim = Sim(num_chunks=6, workers=[0, 1, 2])
    for r in ("r1", "r2", "r3"):
        sim.add_run(r)
    sim.at(2.5, lambda: sim.add_run("clone"))  # r1..r3 are on chunk 2 (2 chunks done)
    sim.run()
    clone_chunks = [c for _, _, r, c in sim.starts if r == "clone"]
    assert clone_chunks == [0, 1, 2, 3, 4, 5]
    first_chunk3 = min(t for t, _, r, c in sim.starts if c == 3)
    assert finish_time(sim, "clone", 2) <= first_chunk3
    assert start_time(sim, "clone", 0) == 3.0  # the first worker to free up takes the clone
    for r in ("r1", "r2", "r3"):
        assert start_time(sim, r, 3) >= finish_time(sim, "clone", 2)
    assert_all_chunks_once(sim, ["r1", "r2", "r3", "clone"])


def test_clone_that_is_behind_goes_first_even_after_run_order():
    s = ChunkFairScheduler(num_chunks=4)
    s.on_run_added("a", chunks_done=2)
    s.on_run_added("b", chunks_done=2)
    s.on_run_added("late", chunks_done=1)
    assert s.choose([0, 1]) == [Assignment(0, "late", 1)]  # a and b wait at the barrier
    assert s.snapshot()["barrier"] == 1


def test_warm_clone_starts_at_its_parents_position():
    sim = Sim(num_chunks=6, workers=[0, 1, 2])
    for r in ("r1", "r2", "r3"):
        sim.add_run(r)
    sim.at(2.5, lambda: sim.add_run("warm", chunks_done=2))
    sim.run()
    assert [c for _, _, r, c in sim.starts if r == "warm"] == [2, 3, 4, 5]
    assert start_time(sim, "warm", 2) == 3.0
    first_chunk3 = min(t for t, _, r, c in sim.starts if c == 3)
    assert first_chunk3 == finish_time(sim, "warm", 2) == 4.0
    assert_all_chunks_once(sim, ["r1", "r2", "r3", "warm"], first_chunk={"warm": 2})


def test_pause_stops_holding_others_back_and_resume_catches_up():
    sim = Sim(num_chunks=4, workers=[0])
    for r in ("r1", "r2", "r3"):
        sim.add_run(r)
    sim.at(0.5, lambda: sim.pause("r2"))
    sim.at(4.5, lambda: sim.resume("r2"))
    sim.run()
    assert sim.order_of_starts() == [
        "r1", "r3", "r1", "r3", "r1",   # r2 paused: r1 and r3 go on without it
        "r2", "r2",                      # resumed at chunk 0: it catches up first
        "r2", "r3",                      # chunk 2: r2 before r3 by run order
        "r1", "r2", "r3",                # chunk 3
    ]
    assert not sim.preempted
    assert_all_chunks_once(sim, ["r1", "r2", "r3"])
    assert sim.sched.is_finished()


def test_pausing_a_busy_run_preempts_it_and_resume_continues_the_same_chunk_on_the_same_worker():
    sim = Sim(num_chunks=3, workers=[0, 1], durations={"a": 2.0, "b": 1.0})
    sim.add_run("a")
    sim.add_run("b")
    sim.at(2.5, lambda: sim.pause("a"))   # a is half-way through chunk 1 on worker 0
    sim.at(6.0, lambda: sim.resume("a"))
    sim.run()
    assert sim.preempted == [(2.5, 0, "a", 1)]
    assert [c for _, _, r, c in sim.starts if r == "a"] == [0, 1, 1, 2]  # chunk 1 continued, not skipped
    assert sim.workers_used("a") == {0}
    assert start_time(sim, "b", 2) == 3.0  # b is not held back while a is paused
    assert start_time(sim, "a", 2) == 8.0
    assert_all_chunks_once(sim, ["a", "b"])


def test_paused_run_left_paused_does_not_block_finish():
    sim = Sim(num_chunks=3, workers=[0])
    sim.add_run("a")
    sim.add_run("b")
    sim.at(0.5, lambda: sim.pause("b"))
    sim.run()
    assert sim.sched.is_finished()
    assert sim.finished_chunks["b"] == []
    assert_all_chunks_once(sim, ["a"])
    snap = {r["run_id"]: r for r in sim.sched.snapshot()["runs"]}
    assert snap["b"]["paused"] and snap["b"]["chunks_done"] == 0
    sim.resume("b")
    assert not sim.sched.is_finished()
    sim.run()
    assert_all_chunks_once(sim, ["a", "b"])


@pytest.mark.parametrize("when", [0.5, 1.5])  # r2 idle at 0.5 (worker 0 runs r1), busy at 1.5
def test_removed_run_is_gone_and_holds_nobody_back(when):
    sim = Sim(num_chunks=4, workers=[0])
    for r in ("r1", "r2", "r3"):
        sim.add_run(r)
    sim.at(when, lambda: sim.remove("r2"))
    sim.run()
    assert all(t <= when for t, _, r, _ in sim.starts if r == "r2")
    assert sim.finished_chunks["r2"] == []
    assert_all_chunks_once(sim, ["r1", "r3"])
    assert sim.sched.is_finished()
    assert [r["run_id"] for r in sim.sched.snapshot()["runs"]] == ["r1", "r3"]
    with pytest.raises(ValueError, match="unknown run 'r2'"):
        sim.sched.on_run_resumed("r2")


def test_worker_lost_mid_quantum_retries_elsewhere_and_forgets_affinity():
    sim = Sim(num_chunks=3, workers=[0, 1])
    sim.add_run("a")
    sim.add_run("b")
    sim.at(1.5, lambda: sim.lose_worker(1))   # b is on chunk 1 on worker 1
    sim.at(1.5, lambda: _check_no_affinity_to(sim.sched, 1))
    sim.at(4.0, lambda: sim.add_worker(2))
    sim.run()
    assert [c for _, _, r, c in sim.starts if r == "b"] == [0, 1, 1, 2]  # chunk 1 retried
    assert {w for t, w, r, _ in sim.starts if r == "b" and t > 1.5} <= {0, 2}
    assert_all_chunks_once(sim, ["a", "b"])


def _check_no_affinity_to(sched: ChunkFairScheduler, worker: int) -> None:
    snap = sched.snapshot()
    assert all(r["affinity"] != worker and r["busy_on"] != worker for r in snap["runs"])
    assert worker not in snap["busy_workers"]


def test_runs_with_their_own_num_chunks():
    sim = Sim(num_chunks=4, workers=[0, 1])
    sim.add_run("short", num_chunks=2)
    sim.add_run("long", num_chunks=6)
    sim.add_run("std")
    sim.run()
    assert_all_chunks_once(sim, ["short", "long", "std"])
    assert sim.sched.is_finished()


def test_completed_runs_removed_by_controller():
    sim = Sim(num_chunks=3, workers=[0, 1], durations={"a": 1.0, "b": 2.0, "c": 0.5}, remove_on_complete=True)
    for r in ("a", "b", "c"):
        sim.add_run(r)
    sim.run()
    assert_all_chunks_once(sim, ["a", "b", "c"])
    assert sim.sched.snapshot()["runs"] == []
    assert sim.sched.is_finished()


@pytest.mark.parametrize("seed", range(25))
def test_random_schedules_keep_every_invariant(seed):
    rng = random.Random(seed)
    n_workers = rng.randint(1, 4)
    num_chunks = rng.randint(1, 5)
    runs = [f"r{i}" for i in range(rng.randint(1, 6))]
    base = {r: rng.choice([0.5, 1.0, 1.5, 3.0]) for r in runs}
    sim = Sim(num_chunks, list(range(n_workers)), durations=lambda r, c: base.get(r, 1.0) * rng.uniform(0.5, 1.5))
    for r in runs:
        sim.add_run(r)
    first = {}
    for i in range(rng.randint(0, 2)):  # clones, some warm
        name, start = f"clone{i}", rng.choice([0, min(1, num_chunks)])
        first[name] = start
        sim.at(rng.uniform(0, 6), lambda n=name, s=start: sim.add_run(n, chunks_done=s))
    paused = rng.sample(runs, k=min(len(runs), rng.randint(0, 2)))
    for r in paused:
        t0 = rng.uniform(0, 5)
        sim.at(t0, lambda r=r: sim.pause(r) if r not in sim.paused else None)
        sim.at(t0 + rng.uniform(0.1, 5), lambda r=r: sim.resume(r))
    if n_workers > 1 and rng.random() < 0.5:
        sim.at(rng.uniform(0, 4), lambda: sim.lose_worker(0))
    sim.run()
    assert sim.sched.is_finished()
    assert_all_chunks_once(sim, runs + list(first), first_chunk=first)
    quanta = defaultdict(int)
    for _, _, r, _ in sim.finishes:
        quanta[r] += 1
    assert dict(quanta) == {r: sim.run_chunks[r] - first.get(r, 0) for r in runs + list(first) if sim.run_chunks[r] > first.get(r, 0)}


# ----------------------------------------------------------------------------- choose() directly


def test_choose_is_idempotent_and_changes_nothing():
    s = ChunkFairScheduler(num_chunks=2)
    for r in ("a", "b", "c"):
        s.on_run_added(r)
    before = s.snapshot()
    first = s.choose([1, 0])
    assert first == s.choose([0, 1]) == [Assignment(0, "a", 0), Assignment(1, "b", 0)]
    assert s.snapshot() == before
    s.on_assigned(first[0])
    assert s.choose([1]) == [Assignment(1, "b", 0)]
    assert s.choose([1]) == [Assignment(1, "b", 0)]


def test_affinity_tiers():
    s = ChunkFairScheduler(num_chunks=3)
    for r in ("a", "b", "c", "d"):
        s.on_run_added(r)
    # a and b ran on worker 1, c on worker 2; d never ran
    for run, w in (("a", 1), ("b", 1), ("c", 2)):
        s.on_assigned(Assignment(w, run, 0))
        s.on_quantum_done(run, w, chunk_finished=False)
    # worker 0 holds nothing: it takes the run with no state (d) before moving one
    assert s.choose([0, 1]) == [Assignment(0, "d", 0), Assignment(1, "a", 0)]
    # no run without state left: worker 0 moves one (run order: b before c), worker 1 keeps a
    s.on_assigned(Assignment(3, "d", 0))
    assert s.choose([0, 1]) == [Assignment(0, "b", 0), Assignment(1, "a", 0)]
    # worker 2 idle too: each worker takes its own run first, worker 0 moves the surplus one
    assert s.choose([0, 1, 2]) == [Assignment(0, "b", 0), Assignment(1, "a", 0), Assignment(2, "c", 0)]
    s.on_assigned(Assignment(1, "a", 0))
    s.on_assigned(Assignment(2, "c", 0))
    assert s.choose([0]) == [Assignment(0, "b", 0)]


def test_lower_idle_worker_does_not_steal_from_an_idle_owner():
    s = ChunkFairScheduler(num_chunks=2)
    s.on_run_added("a")
    s.on_assigned(Assignment(5, "a", 0))
    s.on_quantum_done("a", 5, chunk_finished=False)
    assert s.choose([0, 5]) == [Assignment(5, "a", 0)]
    assert s.choose([0]) == [Assignment(0, "a", 0)]  # owner busy or gone: move it rather than idle


def test_is_finished():
    s = ChunkFairScheduler(num_chunks=1)
    assert s.is_finished()
    s.on_run_added("a")
    assert not s.is_finished()
    s.on_assigned(Assignment(0, "a", 0))
    s.on_run_paused("a")
    assert not s.is_finished()  # its preempted quantum is still in flight
    s.on_quantum_done("a", 0, chunk_finished=False)
    assert s.is_finished()      # only a paused run is left
    s.on_run_resumed("a")
    assert not s.is_finished()
    s.on_assigned(Assignment(0, "a", 0))
    s.on_quantum_done("a", 0, chunk_finished=True)
    assert s.is_finished()
    assert s.choose([0]) == []
    s.on_run_added("b", chunks_done=1)  # a run added already complete has nothing to schedule
    assert s.is_finished()


def test_snapshot_is_plain_data():
    s = ChunkFairScheduler(num_chunks=2)
    s.on_run_added("a")
    s.on_run_added("b", num_chunks=3)
    s.on_assigned(Assignment(0, "a", 0))
    assert s.snapshot() == {
        "num_chunks": 2,
        "barrier": 0,
        "eligible": ["b"],
        "busy_workers": {0: "a"},
        "runs": [
            {"run_id": "a", "order": 0, "chunks_done": 0, "num_chunks": 2, "paused": False,
             "finished": False, "busy_on": 0, "affinity": None},
            {"run_id": "b", "order": 1, "chunks_done": 0, "num_chunks": 3, "paused": False,
             "finished": False, "busy_on": None, "affinity": None},
        ],
    }
    assert isinstance(s, Scheduler)


# ----------------------------------------------------------------------------- bad calls


def test_bad_calls_raise_value_error():
    s = ChunkFairScheduler(num_chunks=2)
    s.on_run_added("a")
    s.on_run_added("b")
    with pytest.raises(ValueError, match="already added"):
        s.on_run_added("a")
    with pytest.raises(ValueError, match="chunks_done"):
        s.on_run_added("c", chunks_done=3)
    with pytest.raises(ValueError, match="num_chunks"):
        s.on_run_added("c", num_chunks=0)
    for call in (
        lambda: s.on_assigned(Assignment(0, "zzz", 0)),
        lambda: s.on_quantum_done("zzz", 0, True),
        lambda: s.on_run_paused("zzz"),
        lambda: s.on_run_resumed("zzz"),
        lambda: s.on_run_removed("zzz"),
    ):
        with pytest.raises(ValueError, match="unknown run 'zzz'"):
            call()
    with pytest.raises(ValueError, match="chunk 0 next"):
        s.on_assigned(Assignment(0, "a", 1))
    s.on_assigned(Assignment(0, "a", 0))
    with pytest.raises(ValueError, match="already busy on worker 0"):
        s.on_assigned(Assignment(1, "a", 0))
    with pytest.raises(ValueError, match="worker 0 is already busy with run 'a'"):
        s.on_assigned(Assignment(0, "b", 0))
    with pytest.raises(ValueError, match="is busy on worker 0"):
        s.on_quantum_done("a", 1, True)
    with pytest.raises(ValueError, match="is not busy"):
        s.on_quantum_done("b", 1, True)
    with pytest.raises(ValueError, match="listed idle but is busy"):
        s.choose([0, 1])
    with pytest.raises(ValueError, match="duplicates"):
        s.choose([1, 1])
    s.on_run_paused("b")
    with pytest.raises(ValueError, match="paused"):
        s.on_assigned(Assignment(1, "b", 0))
    with pytest.raises(ValueError, match="num_chunks"):
        ChunkFairScheduler(0)


# ----------------------------------------------------------------------------- import hygiene


def test_import_does_not_pull_in_torch():
    code = (
        "import sys, rftui.engine.scheduler; "
        "heavy = [m for m in ('torch', 'transformers', 'textual', 'rich', 'numpy') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
