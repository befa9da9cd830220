"""What `rftui resume` and `Experiment.resume` keep of the metric history: a continued run drops the points
past its checkpoint (it redoes those steps); a failed, completed or deleted run keeps all of it."""
from __future__ import annotations

from engine_helpers import drive, fake_experiment, trained_experiment
from reliability_helpers import cli, metric_steps, query

from rftui.engine import events as ev
from rftui.engine.setup import forget_cut_work


def failed_and_completed(tmp_path, name):
    """r1 fails at step 3 of its only chunk (points at steps 1 and 2, checkpoint at 0); r2 completes."""
    ctl = trained_experiment(tmp_path, name, num_chunks=1, max_steps=4, crash_at=[("r1", 3, "raise")])
    db = ctl.exp.state_db
    assert query(db, "select run_id, status, steps_done from runs order by run_id") == [
        ("r1", "failed", 0), ("r2", "completed", 4)]
    assert metric_steps(db, "r1", "loss") == [1, 2]
    return ctl


def test_only_runs_that_continue_lose_their_points_past_the_checkpoint(tmp_path):
    ctl = failed_and_completed(tmp_path, "prep")
    store, db = ctl.store, ctl.exp.state_db
    # r2 as if cut short after its checkpoint at step 2: its quantum was still running, steps 3-4 logged.
    store.update_run("r2", status="running", steps_done=2)
    store.start_quantum("r2", 0, 0, 2, 4)
    assert forget_cut_work(store) == 1
    assert metric_steps(db, "r1", "loss") == [1, 2]  # failed: nothing redoes these steps
    assert metric_steps(db, "r2", "loss") == [1, 2]  # continued: steps 3-4 are redone
    assert query(db, "select status from quanta where run_id='r2' order by id")[-1] == ("lost",)


def failed_and_cut_short(tmp_path, name):
    """r1 fails in its second chunk (points at steps 1 and 2); the experiment is interrupted as it fails, so r2
    still has work that a resume trains."""
    ctl = fake_experiment(tmp_path, name, num_chunks=2, max_steps=4, crash_at=[("r1", 3, "raise")])

    def stop_when_r1_fails(controller, events):
        if any(isinstance(e, ev.RunStatusChanged) and e.run_id == "r1" and e.status == "failed" for e in events):
            controller.begin_shutdown()

    try:
        drive(ctl, on_events=stop_when_r1_fails)
    finally:
        ctl.close()
    db = ctl.exp.state_db
    assert query(db, "select status from runs where run_id='r1'") == [("failed",)]
    assert query(db, "select status from runs where run_id='r2'") != [("completed",)]
    assert metric_steps(db, "r1", "loss") == [1, 2]
    return ctl


def test_cli_and_api_resume_keep_a_failed_runs_history(tmp_path):
    from rftui.api import Experiment

    for name, resume in (("viacli", lambda: cli("resume", "viacli", "--workdir", tmp_path, "--no-ui",
                                                "--no-tracking", "--device", "cpu").returncode),
                         ("viaapi", lambda: Experiment("viaapi", workdir=tmp_path).resume(device="cpu",
                                                                                             quiet=True))):
        ctl = failed_and_cut_short(tmp_path, name)
        assert ctl.store.get_meta("status") == "interrupted"
        before = query(ctl.exp.state_db, "select run_id, step, name, value from metrics order by seq")
        quanta_before = len(query(ctl.exp.state_db, "select id from quanta where run_id='r2'"))
        assert resume() in (1, None)  # the CLI exits 1: a run is failed
        after = query(ctl.exp.state_db, "select run_id, step, name, value from metrics order by seq")
        assert [p for p in after if p[0] == "r1"] == [p for p in before if p[0] == "r1"], name
        assert metric_steps(ctl.exp.state_db, "r1", "loss") == [1, 2], name
        # the resume did train: r2 got a new quantum (it fails there, as the real backend cannot read the fake
        # backend's checkpoint; r1's history is what this test is about)
        assert len(query(ctl.exp.state_db, "select id from quanta where run_id='r2'")) == quanta_before + 1, name
