"""Worker failures on the real tiny model: SIGKILL mid-quantum (noticed within 2 s, retried once, failed the
second time) and out of memory (the run fails with a hint, its memory is freed, the worker trains on)."""
from __future__ import annotations

import io
import logging
import os
import signal
import time

from engine_helpers import drive
from reliability_helpers import (
    adapter_file, assert_same_adapter, baseline, check_store_invariants, losses, smoke_controller,
)
from rftui.cli import main as cli_main
from rftui.engine import events as ev
from rftui.engine.messages import QuantumDone, RunFailed, StepLogged
from rftui.headless import HeadlessView

STEPS, CHUNKS = 12, 4
OOM_HINT = "lower per_device_train_batch_size or max_length"


def test_sigkilled_worker_is_noticed_within_2s_retried_once_and_a_second_death_fails_the_run(tmp_path, capsys):
    ctl = smoke_controller(tmp_path, "killed", STEPS, CHUNKS)
    output = io.StringIO()
    view = HeadlessView(ctl, output, json_lines=False, tty=False)
    # r1 dies in its second quantum and again in the retry; r2 dies once in its second quantum.
    plan = {"r1": 2, "r2": 1}
    state = {"killed_at": None, "kills": [], "latencies": []}

    def on_events(controller, events):
        view.render(events)
        now = time.monotonic()
        for event in events:
            if isinstance(event, ev.WorkerRestarted):
                assert state["killed_at"] is not None
                state["latencies"].append(now - state["killed_at"])
                state["killed_at"] = None
            if (isinstance(event, StepLogged) and event.step > STEPS // CHUNKS and plan.get(event.run_id)
                    and state["killed_at"] is None and event.run_id in controller.busy.values()
                    and not any(isinstance(e, QuantumDone) and e.run_id == event.run_id for e in events)
                    and (event.run_id, controller.runs[event.run_id].attempts) not in state["kills"]):
                # Mid-quantum: the worker has logged a step of the quantum and has more to do.
                plan[event.run_id] -= 1
                state["kills"].append((event.run_id, controller.runs[event.run_id].attempts))
                state["killed_at"] = time.monotonic()
                os.kill(controller.pool.worker_pids()[0], signal.SIGKILL)

    try:
        drive(ctl, limit=400, on_events=on_events)
    finally:
        ctl.close()
    with capsys.disabled():
        print(f"\nkill -> noticed and restarted: {[f'{s * 1000:.0f} ms' for s in state['latencies']]}")
    assert len(state["latencies"]) == 3 and max(state["latencies"]) < 2.0
    db = ctl.exp.state_db
    check_store_invariants(db)
    runs = {row["run_id"]: row for row in ctl.store.list_runs()}
    assert runs["r1"]["status"] == "failed"
    reason = runs["r1"]["reason"]
    assert "its worker died twice" in reason and "SIGKILL" in reason, reason
    assert runs["r2"]["status"] == "completed" and not runs["r2"]["reason"]  # its "retrying once" is over
    assert runs["r2"]["status"] == "completed"
    # r2's quantum was redone from its checkpoint: its results equal an undisturbed run's.
    assert [q["status"] for q in ctl.store.list_quanta("r2")] == ["done", "lost", "done", "done", "done"]
    base = baseline(tmp_path / "baseline", STEPS, CHUNKS)
    assert losses(db, "r2") == base["losses"]["r2"]
    assert_same_adapter(adapter_file(ctl.exp.root, "r2"), adapter_file(base["root"], "r2"))
    assert losses(db, "r1") == base["losses"]["r1"][: STEPS // CHUNKS]  # the lost quantum's points are gone

    text = output.getvalue()  # the headless output says what happened
    assert text.count("worker 0 died (worker process killed by SIGKILL") == 3
    assert "r1 failed: its worker died twice (worker process killed by SIGKILL" in text
    log_text = (ctl.exp.logs / "worker-0.log").read_text()
    assert log_text.count("restarting worker 0: previous process") == 3

    assert cli_main(["show", "killed", "--workdir", str(tmp_path / "runs")]) == 0
    shown = capsys.readouterr().out
    assert "r1: its worker died twice (worker process killed by SIGKILL" in shown
    assert [line.split()[1:4] for line in shown.splitlines() if line.split()[1:2] in (["r1"], ["r2"])] == [
        ["r2", "lr=3e-4", "completed"], ["r1", "lr=1e-3", "failed"]]


def test_out_of_memory_fails_only_that_run_with_a_hint_and_the_worker_trains_on(tmp_path):
    ctl = smoke_controller(tmp_path, "oom", STEPS, CHUNKS, fail_at={"run_id": "r1", "step": 5, "error": "oom"})
    seen = []
    try:
        seen = drive(ctl, limit=300)
        pids = ctl.pool.worker_pids()
    finally:
        ctl.close()
    assert not [e for e in seen if isinstance(e, ev.WorkerRestarted)]  # the worker survived
    failed = [e for e in seen if isinstance(e, RunFailed)]
    assert [e.run_id for e in failed] == ["r1"]
    reason = failed[0].reason
    assert reason.startswith("OutOfMemoryError: CUDA out of memory before step 5 of run r1"), reason
    assert OOM_HINT in reason
    assert "Traceback" in failed[0].traceback and "\n" not in reason
    runs = {row["run_id"]: row for row in ctl.store.list_runs()}
    assert runs["r1"]["status"] == "failed" and runs["r1"]["reason"] == reason and runs["r1"]["steps_done"] == 3
    assert runs["r2"]["status"] == "completed"
    # r2 trained on the same worker process after r1 failed there, and is unchanged by it.
    after = [e.worker_id for e in seen if isinstance(e, QuantumDone) and e.run_id == "r2" and e.chunk >= 1]
    assert after == [0, 0, 0] and list(pids) == [0]
    base = baseline(tmp_path / "baseline", STEPS, CHUNKS)
    assert losses(ctl.exp.state_db, "r2") == base["losses"]["r2"]
    assert_same_adapter(adapter_file(ctl.exp.root, "r2"), adapter_file(base["root"], "r2"))
    check_store_invariants(ctl.exp.state_db)
    assert "OutOfMemoryError" in (ctl.exp.logs / "worker-0.log").read_text()


def test_out_of_memory_frees_the_runs_state_in_the_worker(tmp_path):
    """In-process: the worker's error path drops the failed run's adapter, optimizer and trainer from the host,
    and the next run trains on the same resident base."""
    import torch

    from rftui.engine.messages import TrainQuantum
    from rftui.engine.worker import _run_quantum
    from rftui.training.host import TrainingHost

    torch.set_num_threads(1)
    ctl = smoke_controller(tmp_path, "inproc", 4, 2)
    ctl.store.close()
    key, (train_path, eval_path) = next(iter(ctl.data_files.items()))

    def command(run_id):
        rec = ctl.runs[run_id]
        return TrainQuantum(run=rec.spec, chunk=0, num_chunks=2, start_step=0, end_step=2, total_steps=4,
                            train_path=train_path, eval_path=eval_path, checkpoint_root=str(ctl.exp.checkpoints),
                            adapters_root=str(ctl.exp.adapters), checkpoint_dir=None, warm_from=None, seed=0)

    class Channel:
        def __init__(self):
            self.events = []

        def emit(self, event):
            self.events.append(event)

        def preempt_poller(self, run_id):
            return lambda: None

    host = TrainingHost(0, device="cpu", fail_at=[{"run_id": "r1", "step": 2, "error": "oom"}])
    channel = Channel()
    try:
        _run_quantum(0, host, command("r1"), channel, "cpu", logging.getLogger("test"))
        failed = [e for e in channel.events if isinstance(e, RunFailed)]
        assert len(failed) == 1 and OOM_HINT in failed[0].reason
        assert host.holds("r1") is None and "r1" not in host._runs
        (base,) = host._bases.values()
        assert "r1" not in base.runs and "r1" not in (base.peft.peft_config if base.peft is not None else {})
        _run_quantum(0, host, command("r2"), channel, "cpu", logging.getLogger("test"))
        done = [e for e in channel.events if isinstance(e, QuantumDone)]
        assert [(e.run_id, e.steps_done) for e in done] == [("r2", 2)]
        assert host.holds("r2") == 2 and set(base.peft.peft_config) == {"r2"}
    finally:
        host.close()


def test_a_cuda_error_fails_the_run_and_replaces_the_worker_so_other_runs_train_on(tmp_path):
    # After a device-side assert every later kernel in that process fails: the worker must not serve on.
    ctl = smoke_controller(tmp_path, "cudaerr", STEPS, CHUNKS, fail_at={"run_id": "r1", "step": 5, "error": "cuda"})
    seen = []
    try:
        seen = drive(ctl, limit=300)
    finally:
        ctl.close()
    failed = [e for e in seen if isinstance(e, RunFailed)]
    assert [e.run_id for e in failed] == ["r1"]
    assert failed[0].reason.startswith("RuntimeError: CUDA error: device-side assert triggered before step 5")
    assert "CUDA context is unusable" in failed[0].reason
    restarts = [e for e in seen if isinstance(e, ev.WorkerRestarted)]
    assert len(restarts) == 1 and "CUDA error left its GPU context unusable" in restarts[0].reason
    runs = {row["run_id"]: row for row in ctl.store.list_runs()}
    assert runs["r1"]["status"] == "failed" and runs["r1"]["steps_done"] == 3
    assert runs["r2"]["status"] == "completed" and not runs["r2"]["reason"]
    # r2 continued on the fresh worker from its checkpoint, unchanged by the restart.
    base = baseline(tmp_path / "baseline", STEPS, CHUNKS)
    assert losses(ctl.exp.state_db, "r2") == base["losses"]["r2"]
    assert_same_adapter(adapter_file(ctl.exp.root, "r2"), adapter_file(base["root"], "r2"))
    check_store_invariants(ctl.exp.state_db)
    assert "restarting worker 0: previous process" in (ctl.exp.logs / "worker-0.log").read_text()
