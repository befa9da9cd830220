"""A run deleted in state.db stays deleted in MLflow across `rftui resume` (resuming restored it: FINISHED,
active, tagged rftui.deleted=true), and one MLflow missed is deleted then; a live run hidden in MLflow's UI is
still restored."""
from __future__ import annotations

import pytest

import mlflow_helpers
from engine_helpers import FAKE, drive, fake_experiment, op_then_shut_down
from rftui.control import submit
from rftui.engine.assemble import make_controller
from rftui.engine.messages import QuantumDone

pytest.importorskip("mlflow")

uri, client, make_sink = mlflow_helpers.uri, mlflow_helpers.client, mlflow_helpers.make_sink  # fixtures


def _mlflow_runs(workdir) -> dict:
    from mlflow.tracking import MlflowClient

    mlflow = MlflowClient(tracking_uri=f"sqlite:///{workdir}/mlflow.db")
    experiment = mlflow.get_experiment_by_name("exp")
    return {run.data.tags["rftui.run_id"]: run
            for run in mlflow.search_runs([experiment.experiment_id], run_view_type=3)}  # 3: active and deleted


def _resume(controller) -> None:
    resumed = make_controller(controller.exp, controller.spec, controller.store, workers=1, device="cpu",
                              backend=FAKE, preload=("rftui.engine.fake_backend",))
    try:
        drive(resumed)
    finally:
        resumed.close()


def test_a_run_deleted_on_a_finished_experiment_stays_deleted_in_mlflow_after_resume(tmp_path):
    # The QA repro: ctl delete r1 on a finished experiment, ctl clone r2, resume.
    controller = fake_experiment(tmp_path, tracking=True)
    try:
        drive(controller)
    finally:
        controller.close()
    assert submit(controller.exp, controller.spec, controller.store, "delete", "r1", {})["status"] == "applied"
    assert _mlflow_runs(tmp_path)["r1"].info.lifecycle_stage == "deleted"
    assert submit(controller.exp, controller.spec, controller.store, "clone", "r2", {})["status"] == "applied"
    _resume(controller)
    runs = _mlflow_runs(tmp_path)
    r1 = runs["r1"]
    assert (r1.info.lifecycle_stage, r1.info.status, r1.data.tags["rftui.deleted"]) == ("deleted", "FINISHED", "true")
    assert sorted(runs) == ["r1", "r2", "r3"]  # no second MLflow run for r1
    assert {runs[r].info.lifecycle_stage for r in ("r2", "r3")} == {"active"}
    assert runs["r3"].info.status == "FINISHED"


def test_a_run_deleted_while_the_experiment_ran_stays_deleted_after_resume(tmp_path):
    controller = fake_experiment(tmp_path, tracking=True, max_steps=40, num_chunks=4, step_seconds=0.02)
    op_then_shut_down(controller, "delete", "r2")
    assert controller.store.get_run("r2")["status"] == "deleted"
    assert (_mlflow_runs(tmp_path)["r2"].info.lifecycle_stage, _mlflow_runs(tmp_path)["r2"].info.status) == \
        ("deleted", "KILLED")
    _resume(controller)
    r2 = _mlflow_runs(tmp_path)["r2"]
    assert (r2.info.lifecycle_stage, r2.info.status) == ("deleted", "KILLED")
    assert _mlflow_runs(tmp_path)["r1"].info.status == "FINISHED"


def test_a_delete_mlflow_missed_is_made_at_resume(tmp_path):
    # `rftui ctl delete` on a stopped experiment while MLflow was unreachable: only state.db knows.
    controller = fake_experiment(tmp_path, tracking=True, max_steps=40, num_chunks=4, step_seconds=0.02)
    try:
        controller.start()
        while not any(isinstance(e, QuantumDone) for e in controller.step(0.05)):  # r1 trained a chunk
            pass
        controller.begin_shutdown()
        while not controller.finished:
            controller.step(0.05)
    finally:
        controller.close()
    assert _mlflow_runs(tmp_path)["r1"].info.status == "KILLED"
    store = controller.store
    good = store.get_meta("tracking_uri")
    store.set_meta("tracking_uri", mlflow_helpers.BAD_URI)
    assert submit(controller.exp, controller.spec, store, "delete", "r1", {})["status"] == "applied"
    store.set_meta("tracking_uri", good)
    assert _mlflow_runs(tmp_path)["r1"].info.lifecycle_stage == "active"
    _resume(controller)
    r1 = _mlflow_runs(tmp_path)["r1"]
    assert (r1.info.lifecycle_stage, r1.info.status, r1.data.tags.get("rftui.deleted")) == \
        ("deleted", "KILLED", "true")


def test_keep_deleted_deletes_a_missed_run_and_kills_it_only_if_mlflow_has_it_going(make_sink, client):
    first, _ = make_sink()
    going = first.start_run("r1", label="r1", params={})  # its process was killed: RUNNING in MLflow
    done = first.start_run("r2", label="r2", params={})
    lost = first.start_run("r3", label="r3", params={}, tags={"rftui.identity": "exp/r3/1.000000"})
    first.set_status("r2", "FINISHED")
    first.close()
    sink, warnings = make_sink()
    sink.keep_deleted("r1", mlflow_run_id=going)
    sink.keep_deleted("r2", mlflow_run_id=done)
    sink.keep_deleted("r3", identity="exp/r3/1.000000")  # its MLflow id never reached state.db
    sink.keep_deleted("r4", identity="exp/r4/1.000000")  # never reached MLflow: nothing is created
    sink.keep_deleted("r5", mlflow_run_id="f" * 32)  # gone from MLflow (a new store): nothing to do, quietly
    sink.flush()
    seen = {mid: (client.get_run(mid).info.lifecycle_stage, client.get_run(mid).info.status,
                  client.get_run(mid).data.tags.get("rftui.deleted")) for mid in (going, done, lost)}
    assert seen == {going: ("deleted", "KILLED", "true"), done: ("deleted", "FINISHED", "true"),
                    lost: ("deleted", "KILLED", "true")}
    assert sink.mlflow_run_id("r3") == lost and sink.mlflow_run_id("r4") is sink.mlflow_run_id("r5") is None
    assert len(client.search_runs([client.get_run(going).info.experiment_id], run_view_type=3)) == 3
    assert warnings == []


def test_a_deleted_mlflow_run_is_restored_only_for_a_live_rftui_run(make_sink, client):
    # restore_run is for a live run the user hid in MLflow's UI; a run deleted by rftui stays deleted, quietly.
    first, _ = make_sink()
    live = first.start_run("r1", label="r1", params={})
    gone = first.start_run("r2", label="r2", params={})
    first.mark_deleted("r2", ended=True)
    first.close()
    client.delete_run(live)
    sink, warnings = make_sink()
    assert sink.start_run("r1", label="r1", params={}, mlflow_run_id=live) == live
    sink.keep_deleted("r2", mlflow_run_id=gone)
    sink.flush()
    assert client.get_run(live).info.lifecycle_stage == "active"
    assert client.get_run(gone).info.lifecycle_stage == "deleted"
    assert warnings == []
