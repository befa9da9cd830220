"""Chunk-fair scheduling policy: decides which run trains which chunk on which idle worker.

Pure policy over plain data (standard library only, no torch). The controller feeds it
events through the ``on_*`` hooks and asks ``choose(idle_workers)`` for decisions; the
scheduler never calls the pool, the store or anything else. Decisions are ``Assignment``
values. ``choose`` is idempotent: only the hooks change state.

Rules (see DESIGN.md, Scheduling):

* Chunk-fair barrier: every active run finishes chunk i before any run starts chunk i+1.
  Let m be the minimum ``chunks_done`` over active runs (not paused, not removed, not
  finished; busy runs included). Only runs with ``chunks_done == m`` that are neither busy
  nor finished are eligible. A run added mid-way with fewer chunks done thus gets priority
  until it has caught up; ties go by run order (order of addition).
* Affinity: a worker that holds a run's state (the run's last quantum ran there) prefers
  that run. Idle workers are served in three passes, each in ascending worker id and run
  order: (1) the first eligible run affine to the worker; (2) the first eligible run with no
  affinity; (3) the first eligible run left, affine to another worker (moving state costs
  MBs, idling costs more). Doing pass 1 for all idle workers first means a lower worker never
  moves a run away from its own worker when that worker is idle in the same call and would
  otherwise get nothing. Each run goes to at most one worker per call.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence, runtime_checkable


@dataclass(frozen=True)
class Assignment:
    """Decision: train ``run_id``'s chunk ``chunk`` (0-based) on ``worker_id``."""

    worker_id: int
    run_id: str
    chunk: int


@runtime_checkable
class Scheduler(Protocol):
    """The shape every scheduling policy has; the controller depends on this, not on a class."""

    def on_run_added(self, run_id: str, chunks_done: int = 0, num_chunks: int | None = None) -> None: ...
    def on_assigned(self, assignment: Assignment) -> None: ...
    def on_quantum_done(self, run_id: str, worker_id: int, chunk_finished: bool) -> None: ...
    def on_run_paused(self, run_id: str) -> None: ...
    def on_run_resumed(self, run_id: str) -> None: ...
    def on_run_removed(self, run_id: str) -> None: ...
    def on_worker_lost(self, worker_id: int) -> None: ...
    def choose(self, idle_workers: Sequence[int]) -> list[Assignment]: ...
    def is_finished(self) -> bool: ...
    def snapshot(self) -> dict: ...


@dataclass
class _RunState:
    run_id: str
    order: int                 # position in run order (order of addition)
    num_chunks: int
    chunks_done: int = 0
    paused: bool = False
    busy_on: int | None = None  # worker running its quantum right now
    affinity: int | None = None  # worker that holds its state (where its last quantum ran)

    @property
    def finished(self) -> bool:
        return self.chunks_done >= self.num_chunks

    @property
    def active(self) -> bool:
        """Counts for the barrier: still has chunks to train and is not paused."""
        return not self.paused and not self.finished


class ChunkFairScheduler:
    """Fewest-completed-chunks-first over active runs, ties by run order, with worker affinity."""

    def __init__(self, num_chunks: int):
        _check_num_chunks(num_chunks, "scheduler")
        self.num_chunks = num_chunks
        self._runs: dict[str, _RunState] = {}   # insertion order == run order
        self._next_order = 0

    # ------------------------------------------------------------------ events

    def on_run_added(self, run_id: str, chunks_done: int = 0, num_chunks: int | None = None) -> None:
        """Register a run (appended to run order). A warm-start clone passes its parent's chunks_done."""
        if not isinstance(run_id, str) or not run_id:
            raise ValueError(f"scheduler: run id must be a non-empty string, got {run_id!r}")
        if run_id in self._runs:
            raise ValueError(f"scheduler: run {run_id!r} was already added")
        n = self.num_chunks if num_chunks is None else num_chunks
        _check_num_chunks(n, f"run {run_id!r}")
        if not isinstance(chunks_done, int) or isinstance(chunks_done, bool) or not 0 <= chunks_done <= n:
            raise ValueError(
                f"scheduler: run {run_id!r} chunks_done={chunks_done!r} must be an int in 0..{n} (its num_chunks)"
            )
        self._runs[run_id] = _RunState(run_id, self._next_order, n, chunks_done)
        self._next_order += 1

    def on_assigned(self, assignment: Assignment) -> None:
        """The controller dispatched ``assignment``: the run is busy on that worker until its quantum is done."""
        run = self._get(assignment.run_id)
        if run.busy_on is not None:
            raise ValueError(
                f"scheduler: run {run.run_id!r} is already busy on worker {run.busy_on}; "
                f"cannot assign it to worker {assignment.worker_id}"
            )
        if run.paused:
            raise ValueError(f"scheduler: run {run.run_id!r} is paused; resume it before assigning it")
        if run.finished:
            raise ValueError(f"scheduler: run {run.run_id!r} has finished all {run.num_chunks} chunks")
        if assignment.chunk != run.chunks_done:
            raise ValueError(
                f"scheduler: run {run.run_id!r} trains chunk {run.chunks_done} next, "
                f"but the assignment says chunk {assignment.chunk}"
            )
        holder = self._run_busy_on(assignment.worker_id)
        if holder is not None:
            raise ValueError(
                f"scheduler: worker {assignment.worker_id} is already busy with run {holder.run_id!r}"
            )
        run.busy_on = assignment.worker_id

    def on_quantum_done(self, run_id: str, worker_id: int, chunk_finished: bool) -> None:
        """A quantum ended on ``worker_id``; ``chunk_finished=False`` means it was preempted mid-chunk."""
        run = self._get(run_id)
        if run.busy_on != worker_id:
            where = "not busy" if run.busy_on is None else f"busy on worker {run.busy_on}"
            raise ValueError(
                f"scheduler: quantum done for run {run_id!r} on worker {worker_id}, but the run is {where}"
            )
        run.busy_on = None
        run.affinity = worker_id
        if chunk_finished:
            run.chunks_done += 1

    def on_run_paused(self, run_id: str) -> None:
        """Stopped by the user: not eligible and does not hold back others. Idempotent.

        A busy run stays busy until its (preempted) quantum is reported done.
        """
        self._get(run_id).paused = True

    def on_run_resumed(self, run_id: str) -> None:
        """Eligible again with its chunks_done and affinity; it may hold others back until it catches up. Idempotent."""
        self._get(run_id).paused = False

    def on_run_removed(self, run_id: str) -> None:
        """Completed, deleted or failed: forgotten for good (its worker, if busy, counts as free to the scheduler)."""
        self._get(run_id)
        del self._runs[run_id]

    def on_worker_lost(self, worker_id: int) -> None:
        """Forget every affinity to ``worker_id``; a run busy there becomes not busy (its chunk is not done)."""
        for run in self._runs.values():
            if run.affinity == worker_id:
                run.affinity = None
            if run.busy_on == worker_id:
                run.busy_on = None

    # ------------------------------------------------------------------ decisions

    def barrier(self) -> int | None:
        """The chunk index every active run must finish before any run starts the next (None: no active run)."""
        done = [r.chunks_done for r in self._runs.values() if r.active]
        return min(done) if done else None

    def eligible(self) -> list[str]:
        """Run ids that may start a quantum now, in run order."""
        return [r.run_id for r in self._eligible()]

    def choose(self, idle_workers: Sequence[int]) -> list[Assignment]:
        """Assignments for idle workers (sorted by worker id). Pure: does not change state."""
        workers = sorted(idle_workers)
        if len(set(workers)) != len(workers):
            raise ValueError(f"scheduler: idle_workers has duplicates: {list(idle_workers)!r}")
        for w in workers:
            holder = self._run_busy_on(w)
            if holder is not None:
                raise ValueError(f"scheduler: worker {w} is listed idle but is busy with run {holder.run_id!r}")

        candidates = self._eligible()
        taken: set[str] = set()
        picks: dict[int, _RunState] = {}

        def first(worker: int, accept) -> None:
            for run in candidates:
                if run.run_id not in taken and accept(run):
                    picks[worker] = run
                    taken.add(run.run_id)
                    return

        for w in workers:  # pass 1: the run whose state this worker already holds
            first(w, lambda r, w=w: r.affinity == w)
        for w in workers:  # pass 2: a run with no state anywhere
            if w not in picks:
                first(w, lambda r: r.affinity is None)
        for w in workers:  # pass 3: move a run's state here rather than leave the worker idle
            if w not in picks:
                first(w, lambda r: True)
        return [Assignment(w, picks[w].run_id, picks[w].chunks_done) for w in workers if w in picks]

    def is_finished(self) -> bool:
        """True when no run can still be scheduled and no quantum is in flight (paused runs do not count)."""
        return not any(r.active or r.busy_on is not None for r in self._runs.values())

    def snapshot(self) -> dict:
        """Plain data for debugging and tests."""
        return {
            "num_chunks": self.num_chunks,
            "barrier": self.barrier(),
            "eligible": self.eligible(),
            "busy_workers": {r.busy_on: r.run_id for r in self._runs.values() if r.busy_on is not None},
            "runs": [
                {
                    "run_id": r.run_id,
                    "order": r.order,
                    "chunks_done": r.chunks_done,
                    "num_chunks": r.num_chunks,
                    "paused": r.paused,
                    "finished": r.finished,
                    "busy_on": r.busy_on,
                    "affinity": r.affinity,
                }
                for r in self._runs.values()
            ],
        }

    # ------------------------------------------------------------------ helpers

    def _get(self, run_id: str) -> _RunState:
        try:
            return self._runs[run_id]
        except KeyError:
            raise ValueError(f"scheduler: unknown run {run_id!r} (never added, or already removed)") from None

    def _run_busy_on(self, worker_id: int) -> _RunState | None:
        for run in self._runs.values():
            if run.busy_on == worker_id:
                return run
        return None

    def _eligible(self) -> list[_RunState]:
        m = self.barrier()
        if m is None:
            return []
        return [r for r in self._runs.values() if r.active and r.busy_on is None and r.chunks_done == m]


def _check_num_chunks(n: object, who: str) -> None:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"scheduler: {who} num_chunks must be an int >= 1, got {n!r}")
