"""WorkerPool + worker process, driven by the fake backend (no torch in the workers)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from rftui.config.runspec import RunSpec
from rftui.engine.messages import (
    DropRun,
    EvalDone,
    Preempt,
    QuantumDone,
    QuantumStarted,
    RunFailed,
    StepLogged,
    TrainQuantum,
    WorkerReady,
    WorkerWarning,
)
from rftui.engine.pool import WorkerPool, describe_exit, devices_for

FAKE = "rftui.engine.fake_backend:FakeBackend"
REPO = Path(__file__).resolve().parents[1]


def make_pool(tmp_path: Path, num_workers: int = 2, **options) -> WorkerPool:
    opts = {"step_seconds": 0.01, "num_threads": 1, **options}
    return WorkerPool(num_workers, ["cpu"] * num_workers, tmp_path / "logs",
                      backend_spec=FAKE, backend_options=opts, preload=())


def quantum(tmp_path: Path, run_id: str, start: int, end: int, total: int = 100, **kw) -> TrainQuantum:
    run = RunSpec(run_id=run_id, label=run_id, model_name="fake", training={"learning_rate": 1e-3}, lora=None)
    return TrainQuantum(run=run, chunk=kw.pop("chunk", 0), num_chunks=4, start_step=start, end_step=end,
                        total_steps=total, train_path="unused.jsonl", eval_path=None,
                        checkpoint_root=str(tmp_path / "checkpoints"), adapters_root=str(tmp_path / "adapters"),
                        **kw)


def collect(pool: WorkerPool, until, timeout: float = 10.0) -> list[tuple[int, object]]:
    """Poll events until `until(events)` is true; fail after `timeout` seconds."""
    events: list[tuple[int, object]] = []
    deadline = time.monotonic() + timeout
    while not until(events):
        assert time.monotonic() < deadline, f"timed out; events so far: {events}"
        got, _ = pool.poll_events(0.5)
        events.extend(got)
    return events


def of_type(events, cls, worker_id=None):
    return [e for w, e in events if isinstance(e, cls) and (worker_id is None or w == worker_id)]


def count(cls, n):
    return lambda events: len(of_type(events, cls)) >= n


def test_two_workers_train_quanta_and_events_arrive_from_both(tmp_path):
    with make_pool(tmp_path) as pool:
        assert pool.send(0, quantum(tmp_path, "a", 0, 5, total=10))
        assert pool.send(1, quantum(tmp_path, "b", 0, 10, total=10))
        events = collect(pool, count(QuantumDone, 2))
        pids = pool.worker_pids()
    ready = {e.worker_id: e for e in of_type(events, WorkerReady)}
    assert set(ready) == {0, 1} and ready[0].pid == pids[0] and ready[1].pid == pids[1]
    assert {e.device for e in ready.values()} == {"cpu"}
    done = {e.run_id: e for e in of_type(events, QuantumDone)}
    assert (done["a"].worker_id, done["a"].steps_done, done["a"].completed) == (0, 5, False)
    assert (done["b"].worker_id, done["b"].steps_done, done["b"].completed) == (1, 10, True)
    assert done["a"].preempted is None and done["b"].adapter_dir is not None
    assert [e.step for e in of_type(events, StepLogged, 0)] == [1, 2, 3, 4, 5]
    assert [e.step for e in of_type(events, StepLogged, 1)] == list(range(1, 11))
    assert len(of_type(events, QuantumStarted)) == 2 and len(of_type(events, EvalDone)) == 2
    # per worker, events come in the order they were sent
    kinds = [type(e).__name__ for w, e in events if w == 0]
    assert kinds[:2] == ["WorkerReady", "QuantumStarted"] and kinds[-2:] == ["EvalDone", "QuantumDone"]


def test_next_quantum_continues_from_resident_state_or_checkpoint(tmp_path):
    with make_pool(tmp_path, num_workers=2) as pool:
        pool.send(0, quantum(tmp_path, "a", 0, 4, total=8))
        pool.send(1, quantum(tmp_path, "b", 0, 2, total=8))
        first = {e.run_id: e for e in of_type(collect(pool, count(QuantumDone, 2)), QuantumDone)}
        pool.send(1, quantum(tmp_path, "b", 2, 4, total=8, chunk=1))  # resident on worker 1
        # moving run a to worker 1 resumes from its checkpoint directory
        pool.send(1, quantum(tmp_path, "a", 4, 8, total=8, chunk=1, checkpoint_dir=first["a"].checkpoint_dir))
        events = collect(pool, count(QuantumDone, 2))
    done = {e.run_id: e for e in of_type(events, QuantumDone)}
    assert (done["b"].worker_id, done["b"].steps_done, done["b"].completed) == (1, 4, False)
    assert (done["a"].worker_id, done["a"].steps_done, done["a"].completed) == (1, 8, True)
    assert [e.step for e in of_type(events, StepLogged) if e.run_id == "a"] == [5, 6, 7, 8]


def test_preempt_stops_quantum_at_next_step(tmp_path):
    with make_pool(tmp_path, num_workers=1, step_seconds=0.05) as pool:
        pool.send(0, quantum(tmp_path, "a", 0, 100))
        collect(pool, count(StepLogged, 2))
        t0 = time.monotonic()
        pool.send(0, Preempt("a", "stop"))
        events = collect(pool, count(QuantumDone, 1))
        elapsed = time.monotonic() - t0
    done = of_type(events, QuantumDone)[0]
    assert done.preempted == "stop" and not done.completed
    assert 2 <= done.steps_done < 10
    assert elapsed < 1.0
    assert not of_type(events, EvalDone)  # no chunk-end eval after a preemption


def test_preempt_for_another_run_and_droprun_wait_for_the_quantum(tmp_path):
    with make_pool(tmp_path, num_workers=1, step_seconds=0.02) as pool:
        pool.send(0, quantum(tmp_path, "a", 0, 10))
        pool.send(0, Preempt("other"))  # not this run: ignored
        pool.send(0, DropRun("a"))  # queued, applied after the quantum
        pool.send(0, quantum(tmp_path, "a", 10, 12))  # no checkpoint_dir, state was dropped
        events = collect(pool, lambda ev: of_type(ev, QuantumDone) and of_type(ev, RunFailed))
    done = of_type(events, QuantumDone)[0]
    assert (done.steps_done, done.preempted) == (10, None)
    failed = of_type(events, RunFailed)[0]
    assert failed.run_id == "a" and "start at step 10" in failed.reason


def test_sigkilled_worker_is_noticed_within_two_seconds_and_restarted(tmp_path):
    with make_pool(tmp_path, num_workers=2, step_seconds=0.05) as pool:
        pool.send(1, quantum(tmp_path, "a", 0, 1000))
        collect(pool, lambda ev: of_type(ev, StepLogged) and len(of_type(ev, WorkerReady)) == 2)
        old_pid = pool.worker_pids()[1]
        os.kill(old_pid, signal.SIGKILL)
        t0 = time.monotonic()
        while not pool.dead_workers():
            pool.poll_events(5.0)
            assert time.monotonic() - t0 < 2.0, "dead worker not noticed within 2 s"
        assert time.monotonic() - t0 < 2.0
        assert pool.dead_workers() == [1] and not pool.is_alive(1) and pool.is_alive(0)
        assert "SIGKILL" in pool.exit_reason(1)
        pool.poll_events(0.0)  # the first poll after a death reports it ...
        t1 = time.monotonic()
        pool.poll_events(0.3)  # ... later ones do not wake up for it again
        assert time.monotonic() - t1 >= 0.25
        pool.restart_worker(1)
        assert pool.dead_workers() == [] and pool.is_alive(1)
        assert pool.worker_pids()[1] != old_pid
        pool.send(1, quantum(tmp_path, "a", 0, 3))
        events = collect(pool, count(QuantumDone, 1))
    assert of_type(events, WorkerReady, 1)[0].pid != old_pid
    assert of_type(events, QuantumDone)[0].steps_done == 3
    log_text = (tmp_path / "logs" / "worker-1.log").read_text()
    assert "restarting worker 1" in log_text and log_text.count("==== worker 1 started") == 2


def test_fake_crash_with_marker_dir_happens_once_so_a_retry_succeeds(tmp_path):
    markers = tmp_path / "markers"
    with make_pool(tmp_path, num_workers=1, crash_at=[("a", 2, "exit")], crash_marker_dir=str(markers)) as pool:
        pool.send(0, quantum(tmp_path, "a", 0, 3))
        events = collect(pool, lambda ev: bool(pool.dead_workers()))
        assert pool.dead_workers() == [0] and "exited with code 3" in pool.exit_reason(0)
        assert [e.step for e in of_type(events, StepLogged)] == [1]  # sent before dying, still delivered
        pool.restart_worker(0)
        pool.send(0, quantum(tmp_path, "a", 0, 3))
        done = of_type(collect(pool, count(QuantumDone, 1)), QuantumDone)[0]
    assert done.steps_done == 3 and (markers / "crash-a-2").exists()


def test_backend_exception_fails_the_run_and_worker_keeps_serving(tmp_path):
    crash_at = [("bad", 3, "raise"), ("big", 2, "oom")]
    with make_pool(tmp_path, num_workers=1, crash_at=crash_at) as pool:
        pid = pool.worker_pids()[0]
        pool.send(0, quantum(tmp_path, "bad", 0, 10))
        pool.send(0, quantum(tmp_path, "big", 0, 10))
        pool.send(0, quantum(tmp_path, "good", 0, 4))
        events = collect(pool, lambda ev: len(of_type(ev, RunFailed)) == 2 and of_type(ev, QuantumDone))
        assert pool.is_alive(0) and pool.worker_pids()[0] == pid and not pool.dead_workers()
    failed = {e.run_id: e for e in of_type(events, RunFailed)}
    bad = failed["bad"]
    assert bad.reason == "RuntimeError: fake failure in run bad at step 3"
    assert "\n" not in bad.reason and "Traceback (most recent call last)" in bad.traceback
    assert "second line of the message" in bad.traceback
    assert failed["big"].reason.startswith("MemoryError: fake out of memory")
    assert "lower per_device_train_batch_size or max_length" in failed["big"].reason
    assert of_type(events, QuantumDone)[0].run_id == "good"
    log_text = (tmp_path / "logs" / "worker-0.log").read_text()
    assert "RuntimeError: fake failure in run bad at step 3" in log_text and "Traceback" in log_text


def test_worker_output_goes_to_its_log_not_the_terminal(tmp_path, capfd):
    with make_pool(tmp_path, num_workers=2) as pool:
        pool.send(0, quantum(tmp_path, "a", 0, 2))
        collect(pool, count(QuantumDone, 1))
    out, err = capfd.readouterr()
    assert "[fake]" not in out + err and "worker-" not in out + err
    log0 = (tmp_path / "logs" / "worker-0.log").read_text()
    assert "[fake] backend up on cpu (worker 0)" in log0  # Python-level print
    assert "[fake] stderr line from worker 0" in log0  # fd-level write
    assert "[fake] run a chunk 0 from step 0" in log0
    assert "[fake] stderr line from worker 1" in (tmp_path / "logs" / "worker-1.log").read_text()


def test_shutdown_stops_running_quanta_and_leaves_no_worker_processes(tmp_path):
    pool = make_pool(tmp_path, num_workers=2, step_seconds=0.05).start()
    pool.send(0, quantum(tmp_path, "a", 0, 1000))
    collect(pool, count(StepLogged, 1))
    pids = list(pool.worker_pids().values())
    t0 = time.monotonic()
    events = pool.shutdown(timeout=10)
    assert time.monotonic() - t0 < 5
    done = [e for _, e in events if isinstance(e, QuantumDone)]
    assert len(done) == 1 and done[0].preempted == "shutdown" and done[0].steps_done < 1000
    assert pool.dead_workers() == []
    children = {p.pid for p in psutil.Process().children(recursive=True)}
    for pid in pids:
        assert pid not in children
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert pool.shutdown() == []  # idempotent


def test_shutdown_answers_quanta_still_queued_behind_the_running_one(tmp_path):
    pool = make_pool(tmp_path, num_workers=1, step_seconds=0.05).start()
    pool.send(0, quantum(tmp_path, "a", 0, 1000))
    pool.send(0, quantum(tmp_path, "b", 0, 10))
    collect(pool, count(StepLogged, 1))
    events = pool.shutdown(timeout=10)
    done = {e.run_id: e for _, e in events if isinstance(e, QuantumDone)}
    assert done["a"].preempted == "shutdown" and 1 <= done["a"].steps_done < 1000
    assert (done["b"].preempted, done["b"].steps_done, done["b"].completed) == ("shutdown", 0, False)


def test_command_the_worker_cannot_unpickle_fails_only_that_run(tmp_path, monkeypatch):
    with make_pool(tmp_path, num_workers=1) as pool:
        collect(pool, count(WorkerReady, 1))
        # a hook from a module the worker cannot import (its path was added after the start)
        (tmp_path / "late_hooks.py").write_text("def fmt(row):\n    return str(row)\n")
        monkeypatch.syspath_prepend(str(tmp_path))
        import late_hooks

        run = RunSpec(run_id="h", label="h", model_name="fake", training={}, lora=None, formatting_func=late_hooks.fmt)
        bad = TrainQuantum(run=run, chunk=0, num_chunks=1, start_step=0, end_step=2, total_steps=2,
                           train_path="x", eval_path=None, checkpoint_root=str(tmp_path / "ck"),
                           adapters_root=str(tmp_path / "ad"))
        pool.send(0, bad)
        pool.send(0, quantum(tmp_path, "fine", 0, 2))
        events = collect(pool, lambda ev: of_type(ev, RunFailed) and of_type(ev, QuantumDone))
    failed = of_type(events, RunFailed)[0]
    assert failed.run_id == "h" and "late_hooks" in failed.reason
    assert failed.reason.startswith("could not read a command in the worker: ModuleNotFoundError")
    assert of_type(events, QuantumDone)[0].run_id == "fine"


def test_backend_that_cannot_start_fails_each_run_with_the_reason(tmp_path):
    pool = WorkerPool(1, ["cpu"], tmp_path / "logs", backend_spec="rftui.engine.no_such_module:Backend",
                      backend_options={"num_threads": 1}, preload=())
    with pool:
        pool.send(0, quantum(tmp_path, "a", 0, 2))
        events = collect(pool, count(RunFailed, 1))
        assert pool.is_alive(0)
    warning = of_type(events, WorkerWarning)[0].message
    assert "rftui.engine.no_such_module:Backend failed to start: ModuleNotFoundError" in warning
    assert of_type(events, RunFailed)[0].reason == warning


def test_worker_exits_quietly_when_controller_disappears(tmp_path):
    pool = make_pool(tmp_path, num_workers=1).start()
    collect(pool, count(WorkerReady, 1))
    proc = psutil.Process(pool.worker_pids()[0])
    pool._slots[0].conn.close()  # what the controller's death looks like from the worker
    proc.wait(timeout=5)
    assert "controller went away" in (tmp_path / "logs" / "worker-0.log").read_text()
    pool.shutdown(timeout=1)


def test_poll_events_wakes_for_extra_waitables(tmp_path):
    import multiprocessing

    reader, writer = multiprocessing.Pipe(duplex=False)
    with make_pool(tmp_path, num_workers=1) as pool:
        collect(pool, count(WorkerReady, 1))
        writer.send("op")
        t0 = time.monotonic()
        events, ready = pool.poll_events(5.0, extra=[reader])
        assert ready == [reader] and events == [] and time.monotonic() - t0 < 1.0
        events, ready = pool.poll_events(0.05, extra=[])
        assert ready == [] and events == []


def test_devices_and_exit_descriptions():
    assert devices_for(3, use_cuda=False) == ["cpu", "cpu", "cpu"]
    assert devices_for(0, use_cuda=False) == ["cpu"]
    assert "SIGKILL" in describe_exit(-9) and "code 3" in describe_exit(3)


def _run_python(code_or_script: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    args = [code_or_script] if code_or_script.endswith(".py") else ["-c", code_or_script]
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("start_method", ["forkserver", "spawn"])
def test_unguarded_user_script_is_not_rerun_in_workers(tmp_path, start_method):
    script = tmp_path / "cookbook.py"
    script.write_text(textwrap.dedent(f"""
        import os, time
        from pathlib import Path
        from rftui.config.runspec import RunSpec
        from rftui.engine.messages import TrainQuantum, QuantumDone, WorkerWarning
        from rftui.engine.pool import WorkerPool

        here = Path(__file__).parent
        with open(here / "ran.txt", "a") as f:
            f.write(f"{{os.getpid()}}\\n")

        def my_format(row):  # lives in __main__: must reach the worker by value
            return "formatted-" + str(row["chunk"])

        run = RunSpec("r", "r", "fake", {{}}, None, formatting_func=my_format)
        cmd = TrainQuantum(run=run, chunk=0, num_chunks=1, start_step=0, end_step=2, total_steps=2,
                           train_path="x", eval_path=None, checkpoint_root=str(here / "ck"),
                           adapters_root=str(here / "ad"))
        pool = WorkerPool(1, ["cpu"], here / "logs", backend_spec="{FAKE}",
                          backend_options={{"call_hooks": True, "num_threads": 1}},
                          preload=(), start_method="{start_method}")
        pool.start()
        assert __file__ and __spec__ is None  # restored after starting
        pool.send(0, cmd)
        events, deadline = [], time.monotonic() + 60
        while not any(isinstance(e, QuantumDone) for _, e in events) and time.monotonic() < deadline:
            events += pool.poll_events(1.0)[0]
        pool.shutdown()
        print("HOOK", [e.message for _, e in events if isinstance(e, WorkerWarning)])
        print("DONE", [e.steps_done for _, e in events if isinstance(e, QuantumDone)])
    """))
    result = _run_python("cookbook.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "HOOK ['hook: formatted-0']" in result.stdout
    assert "DONE [2]" in result.stdout
    assert len((tmp_path / "ran.txt").read_text().splitlines()) == 1, "the user's script ran again in a worker"


def test_pool_module_does_not_import_textual_or_torch(tmp_path):
    code = ("import sys, rftui.engine.pool, rftui.engine.worker, rftui.engine.fake_backend; "
            "bad = [m for m in ('textual', 'rich', 'torch') if m in sys.modules]; "
            "assert not bad, bad")
    result = _run_python(code, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
