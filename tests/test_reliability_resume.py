"""kill -9 of the controller mid-quantum, then `rftui resume`: workers leave on their own, every run completes
bitwise equal to an undisturbed run, and no metric step is lost or duplicated in state.db or MLflow."""
from __future__ import annotations

import os
import signal
import sqlite3
import time

import pytest
from mlflow import MlflowClient

from reliability_helpers import (
    RUN_IDS, adapter_file, assert_same_adapter, baseline, check_store_invariants, cli, cli_popen, descendants,
    dump, kill_tree_leftovers, losses, metric_steps, query, tree_digest, wait_gone, write_config,
)

STEPS, CHUNKS = 12, 4


def wait_mid_quantum(proc, db, timeout: float = 240.0) -> tuple[str, int]:
    """Block until >= 2 quanta are done and a later quantum has logged a step past its start (so the kill
    lands mid-quantum, with points recorded beyond the run's last checkpoint). Returns (run, start_step)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"rftui run exited early: {proc.communicate()}"
        time.sleep(0.02)
        if not db.exists():
            continue
        try:
            done = query(db, "select count(*) from quanta where status='done'")[0][0]
            running = query(db, "select q.run_id, q.start_step from quanta q join metrics m on m.run_id=q.run_id "
                                "and m.name='loss' and m.step > q.start_step where q.status='running'")
        except sqlite3.Error:
            continue
        if done >= 2 and running:
            return running[0]
    raise AssertionError("the experiment never reached a second quantum")


def test_kill_9_of_the_controller_then_resume_loses_and_duplicates_nothing(tmp_path):
    config = write_config(tmp_path, "crashy", STEPS, CHUNKS)
    workdir, mlflow_db = tmp_path / "runs", tmp_path / "mlflow.db"
    uri = f"sqlite:///{mlflow_db}"
    proc = cli_popen("run", config, "--no-ui", "--workdir", workdir, "--tracking-uri", uri)
    db = workdir / "crashy" / "state.db"
    tree: list[int] = []
    try:
        cut_run, cut_start = wait_mid_quantum(proc, db)
        tree = descendants(proc.pid)
        assert len(tree) >= 2  # at least the forkserver and a worker
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        # Workers (and the forkserver) notice the controller is gone and exit by themselves.
        left = wait_gone(tree, timeout=10)
        assert not left, f"processes outlived the controller: {left}"
    finally:
        kill_tree_leftovers(tree)
        if proc.poll() is None:
            proc.kill()
    assert query(db, "select count(*) from quanta where status='running'")[0][0] == 1
    beyond = query(db, "select count(*) from metrics where run_id=? and step > ?", (cut_run, cut_start))[0][0]
    assert beyond > 0  # points of the cut quantum were recorded: resume must drop and redo them

    t0 = time.monotonic()
    resumed = cli("resume", "crashy", "--no-ui", "--workdir", workdir, "--tracking-uri", uri, timeout=300)
    resume_seconds = time.monotonic() - t0
    assert resumed.returncode == 0, resumed.stderr
    assert "Traceback" not in resumed.stderr
    assert "1 quantum(s) were cut short" in resumed.stderr
    print(f"resume took {resume_seconds:.1f}s")

    base = baseline(tmp_path / "baseline", STEPS, CHUNKS)
    check_store_invariants(db)
    assert {s for (s,) in query(db, "select status from runs")} == {"completed"}
    assert query(db, "select status from quanta where run_id=? and start_step=? order by id",
                 (cut_run, cut_start)) == [("lost",), ("done",)]
    root = db.parent
    for run_id in RUN_IDS:
        assert_same_adapter(adapter_file(root, run_id), adapter_file(base["root"], run_id))
        assert losses(db, run_id) == base["losses"][run_id]  # every step once, the same values
        assert [s for s, _ in losses(db, run_id)] == list(range(1, STEPS + 1))
        assert metric_steps(db, run_id, "eval_loss") == list(range(2, STEPS + 1, 2))
        assert metric_steps(db, run_id, "chunk") == [3, 6, 9, 12]

    # MLflow: one run per rftui run; every metric has each step exactly once, the same steps as state.db.
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("crashy")
    found = client.search_runs([experiment.experiment_id])
    assert sorted(r.data.tags["rftui.run_id"] for r in found) == list(RUN_IDS)
    for mlflow_run in found:
        run_id = mlflow_run.data.tags["rftui.run_id"]
        assert mlflow_run.info.status == "FINISHED"
        names = {n for (n,) in query(db, "select distinct name from metrics where run_id=?", (run_id,))}
        assert set(mlflow_run.data.metrics) == names
        for name in names:
            steps = [m.step for m in client.get_metric_history(mlflow_run.info.run_id, name)]
            assert len(steps) == len(set(steps)), f"{run_id} {name}: duplicated steps {sorted(steps)}"
            assert sorted(steps) == metric_steps(db, run_id, name), f"{run_id} {name}: steps differ"
        history = {m.step: m.value for m in client.get_metric_history(mlflow_run.info.run_id, "loss")}
        assert sorted(history.items()) == [(s, v) for s, v in base["losses"][run_id]]

    # Resuming a finished experiment says so and changes nothing.
    files = lambda: {k: v for k, v in tree_digest(root).items() if not k.startswith("state.db")}
    before_db, before_files = dump(db), files()
    again = cli("resume", "crashy", "--no-ui", "--workdir", workdir, "--tracking-uri", uri)
    assert again.returncode == 0, again.stderr
    assert "already finished" in again.stdout and "nothing to resume" in again.stdout
    assert dump(db) == before_db
    assert files() == before_files  # checkpoints, adapters, logs, data, experiment.yaml


def test_resume_sends_mlflow_the_points_the_killed_controller_had_not_shipped(tmp_path):
    """state.db is the truth: points it holds that never reached MLflow (they sat in the sink's batch when the
    controller died; here: tracking was off) are shipped on resume, once each, next to the new ones."""
    from engine_helpers import drive, fake_experiment
    from rftui.engine.assemble import make_controller
    from rftui.engine.messages import QuantumDone
    from rftui.engine.setup import open_experiment

    first = fake_experiment(tmp_path, "replay", num_chunks=2, max_steps=6, tracking=False)

    def stop_after_first_quantum(ctl, events):
        if any(isinstance(e, QuantumDone) for e in events):
            ctl.begin_shutdown()

    try:
        drive(first, limit=60, on_events=stop_after_first_quantum)
    finally:
        first.close()
    before = {r: metric_steps(first.exp.state_db, r, "loss") for r in RUN_IDS}
    assert before["r1"] == [1, 2, 3] and before["r2"] == []

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    exp, spec, store = open_experiment(str(first.exp.root))
    again = make_controller(exp, spec, store, workers=1, device="cpu", tracking_uri=uri,
                            backend="rftui.engine.fake_backend:FakeBackend", preload=("rftui.engine.fake_backend",))
    try:
        drive(again, limit=60)
    finally:
        again.close()
    client = MlflowClient(uri)
    found = client.search_runs([client.get_experiment_by_name("replay").experiment_id])
    assert len(found) == 2
    for mlflow_run in found:
        run_id = mlflow_run.data.tags["rftui.run_id"]
        for name in ("loss", "eval_loss", "chunk"):
            steps = sorted(m.step for m in client.get_metric_history(mlflow_run.info.run_id, name))
            assert steps == metric_steps(exp.state_db, run_id, name), (run_id, name, steps)
        assert sorted(m.step for m in client.get_metric_history(mlflow_run.info.run_id, "loss")) == [1, 2, 3, 4, 5, 6]


def test_a_restarted_sink_without_the_mlflow_run_id_reattaches_by_identity_tag(tmp_path):
    """kill -9 can land before the controller stored the MLflow run id: the next start finds the run by its
    identity tag instead of making a second MLflow run, and skips the steps it already holds."""
    from rftui.tracking.mlflow_sink import IDENTITY_TAG, MlflowSink

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tags = {"rftui.run_id": "r1", IDENTITY_TAG: "exp/r1/1234.500000"}
    first = MlflowSink(uri, "exp")
    mid = first.start_run("r1", label="r1", params={"lr": 1}, tags=tags)
    first.log_metrics("r1", 1, {"loss": 2.0})
    first.log_metrics("r1", 2, {"loss": 1.5})
    first.close()
    second = MlflowSink(uri, "exp")
    assert second.start_run("r1", label="r1", params={"lr": 1}, tags=tags) == mid
    second.log_metrics("r1", 2, {"loss": 1.5})
    second.log_metrics("r1", 3, {"loss": 1.0})
    other = second.start_run("r2", label="r2", params={}, tags={"rftui.run_id": "r2", IDENTITY_TAG: "exp/r2/1.0"})
    second.close()
    assert other != mid
    client = MlflowClient(uri)
    assert len(client.search_runs([client.get_experiment_by_name("exp").experiment_id])) == 2
    assert sorted(m.step for m in client.get_metric_history(mid, "loss")) == [1, 2, 3]


def test_a_worker_whose_controller_died_abandons_its_quantum_without_writing_a_checkpoint(tmp_path):
    """A checkpoint written after the controller's death could never be recorded in state.db, and would race the
    resumed experiment's writes: the orphaned worker stops at its next step and exits without saving."""
    import psutil
    from test_pool import collect, count, make_pool, quantum

    from rftui.engine.messages import StepLogged, WorkerReady

    pool = make_pool(tmp_path, num_workers=1, step_seconds=0.05).start()
    try:
        collect(pool, count(WorkerReady, 1))
        worker = psutil.Process(pool.worker_pids()[0])
        pool.send(0, quantum(tmp_path, "a", 0, 1000, total=1000))
        collect(pool, count(StepLogged, 3))
        pool._slots[0].conn.close()  # what the controller's death looks like from the worker
        worker.wait(timeout=5)
    finally:
        pool.shutdown(timeout=1)
    assert not (tmp_path / "checkpoints" / "a").exists()
    assert "controller went away" in (tmp_path / "logs" / "worker-0.log").read_text()


def test_resuming_a_run_left_stopped_in_a_finished_experiment_lets_rftui_resume_train_it(tmp_path):
    """The experiment ends when every other run is done and r1 is stopped; `rftui ctl ... resume r1` (no controller
    alive) must reopen it, or `rftui resume` would answer "already finished" and r1 would never train."""
    from engine_helpers import drive, fake_experiment
    from rftui.control import submit
    from rftui.engine.messages import QuantumDone

    ctl = fake_experiment(tmp_path, "stopped-at-end", num_chunks=2, max_steps=4)

    def stop_r1(controller, events):
        if any(isinstance(e, QuantumDone) and e.run_id == "r1" for e in events) and controller.runs["r1"].status != "stopped":
            controller.apply_op("stop", "r1", {}, "api", [])

    try:
        drive(ctl, limit=60, on_events=stop_r1)
    finally:
        ctl.close()
    assert ctl.store.get_meta("status") == "finished"
    assert {r["run_id"]: r["status"] for r in ctl.store.list_runs()} == {"r1": "stopped", "r2": "completed"}
    submit(ctl.exp, ctl.spec, ctl.store, "resume", "r1", {})
    assert ctl.store.get_meta("status") == "interrupted"
    assert ctl.store.get_run("r1")["status"] == "waiting"


def test_a_ctl_op_is_served_by_a_finished_controller_that_is_still_open(tmp_path):
    """A finished experiment whose UI is still open keeps its controller: `rftui ctl` must reach it, not
    apply the op behind its back to the store (the live controller would never learn of the clone)."""
    import threading

    from engine_helpers import drive, fake_experiment
    from rftui.control import controller_alive, submit

    ctl = fake_experiment(tmp_path, "open-after-finish", num_chunks=2, max_steps=4)
    try:
        drive(ctl, limit=60)
        assert ctl.store.get_meta("status") == "finished"
        assert controller_alive(ctl.store)
        answer: dict = {}
        worker = threading.Thread(target=lambda: answer.update(
            submit(ctl.exp, ctl.spec, ctl.store, "clone", "r1", {"edits": {"learning_rate": 5e-4}})))
        worker.start()
        deadline = time.monotonic() + 30
        while worker.is_alive():
            assert time.monotonic() < deadline, "the op was not answered"
            ctl.step(0.05)
        worker.join()
        assert answer["new_run_id"] == "r3"
        assert "r3" in ctl.runs  # the live controller has the clone and trains it
        drive(ctl, limit=60)
        assert ctl.runs["r3"].status == "completed"
    finally:
        ctl.close()


def test_an_op_left_unread_by_a_closing_controller_is_applied_to_the_store(tmp_path):
    """The op arrives as the experiment's process closes: instead of a 10 s wait and an error, the
    submitter withdraws it and applies it offline, and the log says so."""
    import threading

    from engine_helpers import drive, fake_experiment
    from rftui.control import submit

    ctl = fake_experiment(tmp_path, "closing", num_chunks=2, max_steps=4)
    drive(ctl, limit=60)
    answer: dict = {}
    worker = threading.Thread(target=lambda: answer.update(submit(ctl.exp, ctl.spec, ctl.store, "delete", "r2", {})))
    t0 = time.monotonic()
    worker.start()
    deadline = time.monotonic() + 10
    while not ctl.store.pending_ops():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    ctl.close()  # without stepping again: the op is never read by this controller
    worker.join(timeout=30)
    assert not worker.is_alive() and time.monotonic() - t0 < 5
    assert answer["status"] == "applied"
    assert ctl.store.get_run("r2")["status"] == "deleted"
    ops = ctl.store.list_ops()
    assert [(o["op"], o["status"]) for o in ops] == [("delete", "refused"), ("delete", "applied")]
    assert "closed before reading it" in ops[0]["reason"]


def test_the_api_refuses_to_resume_an_experiment_another_process_trains(tmp_path):
    from engine_helpers import fake_experiment
    from rftui.api import Experiment
    from rftui.errors import ExperimentError

    ctl = fake_experiment(tmp_path, "busy", num_chunks=2, max_steps=4)
    ctl.store.set_meta("controller_pid", os.getppid())  # a live process that is not this one
    api = Experiment("busy", workdir=tmp_path)
    assert api.exp is not None
    with pytest.raises(ExperimentError, match="is running"):
        api.resume()
    ctl.store.set_meta("controller_pid", None)
