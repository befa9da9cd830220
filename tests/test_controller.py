"""Controller on the fake backend: dispatch, chunk order, store, ops, worker death."""
from __future__ import annotations

from engine_helpers import drive, fake_experiment

from rftui.engine import events as ev
from rftui.engine.messages import QuantumDone, StepLogged


def test_every_run_completes_after_num_chunks_quanta(tmp_path):
    ctl = fake_experiment(tmp_path, num_chunks=2, max_steps=4)
    try:
        seen = drive(ctl)
    finally:
        ctl.close()
    done = [e for e in seen if isinstance(e, QuantumDone)]
    assert [(d.run_id, d.chunk) for d in done] == [("r1", 0), ("r2", 0), ("r1", 1), ("r2", 1)]
    assert [d.steps_done for d in done] == [2, 2, 4, 4]
    runs = {r["run_id"]: r for r in ctl.store.list_runs()}
    assert {r["status"] for r in runs.values()} == {"completed"}
    assert all(r["chunks_done"] == 2 and r["steps_done"] == 4 for r in runs.values())
    quanta = ctl.store.list_quanta()
    assert len(quanta) == 4 and {q["status"] for q in quanta} == {"done"}
    steps = [s for s, _ in ctl.store.metric_series("r1", "loss")]
    assert steps == [1, 2, 3, 4]
    assert any(isinstance(e, ev.ExperimentFinished) for e in seen)
    assert ctl.store.get_meta("status") == "finished"


def test_two_workers_give_the_same_results_as_one(tmp_path):
    results = []
    for workers in (1, 2):
        ctl = fake_experiment(tmp_path / str(workers), workers=workers, num_chunks=2, max_steps=4)
        try:
            drive(ctl)
            results.append({r: ctl.store.metric_series(r, "loss") for r in ("r1", "r2")})
        finally:
            ctl.close()
    assert results[0] == results[1]


def test_stop_then_resume_from_the_api_entry_point(tmp_path):
    ctl = fake_experiment(tmp_path, num_chunks=2, max_steps=40, step_seconds=0.01)
    state = {"stopped": False, "resumed": False}

    def on_events(controller, events):
        for event in events:
            if isinstance(event, StepLogged) and event.run_id == "r1" and event.step == 3 and not state["stopped"]:
                state["stopped"] = True
                controller.apply_op("stop", "r1", {}, "api", [])
            if (isinstance(event, ev.RunStatusChanged) and event.run_id == "r1" and event.status == "stopped"
                    and not state["resumed"]):
                state["resumed"] = True
                assert controller.runs["r1"].steps_done < 20  # stopped mid-chunk, not at its end
                controller.apply_op("resume", "r1", {}, "api", [])

    try:
        drive(ctl, on_events=on_events)
    finally:
        ctl.close()
    assert state == {"stopped": True, "resumed": True}
    assert ctl.store.get_run("r1")["status"] == "completed"
    steps = [s for s, _ in ctl.store.metric_series("r1", "loss")]
    assert steps == list(range(1, 41))
    ops = ctl.store.list_ops()
    assert [(o["op"], o["status"], o["source"]) for o in ops] == [("stop", "applied", "api"), ("resume", "applied", "api")]


def test_illegal_ops_are_refused_with_a_reason(tmp_path):
    ctl = fake_experiment(tmp_path)
    try:
        drive(ctl)
        out = []
        resumed = ctl.apply_op("resume", "r1", {}, "api", out)
        unknown = ctl.apply_op("stop", "r9", {}, "ctl", out)
        assert resumed.status == "refused" and "completed" in resumed.reason
        assert unknown.status == "refused" and "no run 'r9'" in unknown.reason
        assert [o["status"] for o in ctl.store.list_ops()] == ["refused", "refused"]
    finally:
        ctl.close()


def test_a_killed_worker_is_replaced_and_the_quantum_retried(tmp_path):
    ctl = fake_experiment(tmp_path, num_chunks=2, max_steps=6, step_seconds=0.01,
                          crash_at=[("r1", 4, "kill")], crash_marker_dir=str(tmp_path / "markers"))
    try:
        seen = drive(ctl)
    finally:
        ctl.close()
    assert any(isinstance(e, ev.WorkerRestarted) for e in seen)
    assert {r["status"] for r in ctl.store.list_runs()} == {"completed"}
    assert [s for s, _ in ctl.store.metric_series("r1", "loss")] == [1, 2, 3, 4, 5, 6]
    assert "lost" in {q["status"] for q in ctl.store.list_quanta("r1")}
