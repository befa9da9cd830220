"""`rftui watch`: the same screen fed by polling another controller's store; ops go through ctl's path.
When that controller's process is gone (kill -9), watch shows what `rftui show` does and stops polling.

Also the UI model's own rules (series replacement, downsampling, ETA).
"""
from __future__ import annotations

import os
import sqlite3
import threading

import pytest

from engine_helpers import dead_pid, drive, fake_experiment, trained_experiment
from ui_helpers import FixedClock, quit_app_when, wait_for

from rftui.engine import events as ev
from rftui.engine.fake_backend import fake_loss
from rftui.engine.liveness import start_time
from rftui.engine.setup import open_experiment
from rftui.report import show_data
from rftui.ui.app import build_app
from rftui.ui.model import Batch, ExperimentModel, RunRow, Series, downsample
from rftui.ui.sources import start_resource_tracker
from rftui.ui.watch import WatchSource

pytestmark = pytest.mark.anyio


async def test_watch_follows_another_controller_and_sends_ops(tmp_path):
    controller = fake_experiment(tmp_path, num_chunks=2, max_steps=120, step_seconds=0.05)
    # r1 trains until ~9 s in (its second chunk follows r2's first): time to stop it even on a loaded machine

    def trainer():
        try:
            drive(controller, limit=60)
        finally:
            controller.close()

    start_resource_tracker()  # before Textual swaps sys.stderr (the trainer thread starts workers)
    thread = threading.Thread(target=trainer, daemon=True)
    thread.start()
    exp, spec, store = open_experiment(str(controller.exp.root))
    source = WatchSource(exp, spec, store, interval=0.1)
    app = build_app(source, theme="rftui-dark", clock=FixedClock())
    try:
        async with app.run_test(size=(120, 36)) as pilot:
            await wait_for(lambda: app.model.runs and len(app.model.series.get("r1", {}).get("loss", Series())) > 0)
            assert not app.source.hosted
            await pilot.press("s")  # r1 is selected
            log = app.main.query_one("#log")
            await wait_for(lambda: app.model.runs["r1"].status == "stopped")
            await wait_for(lambda: any("stop r1: applied" in t for t in log.texts()))
            await pilot.press("r")
            await wait_for(lambda: all(r.status == "completed" for r in app.model.runs.values()))
            assert app.model.runs["r1"].steps_done == 120
            assert app.model.series["r1"]["loss"].steps[-1] == 120
            assert any("r2 chunk 2/2 done" in t for t in log.texts())
            await pilot.press("q")
            assert app.screen.default == "quit"
            await pilot.press("q")
            await pilot.pause()
        assert app.return_value == 0
    finally:
        thread.join(30)
        store.close()
    assert [op["op"] for op in controller.store.list_ops()] == ["stop", "resume"]
    assert {op["source"] for op in controller.store.list_ops()} == {"tui"}


def test_series_replaces_relogged_steps_and_downsamples():
    series = Series()
    for step in range(1, 11):
        series.add(step, float(step))
    series.add(6, 60.0)  # a redone quantum logs step 6 again: 7..10 are gone
    assert series.steps == [1, 2, 3, 4, 5, 6] and series.values[-1] == 60.0
    xs = list(range(5000))
    ys = [1.0] * 5000
    ys[2500] = 9.0  # a spike survives downsampling
    dx, dy = downsample(xs, ys, 80)
    assert len(dx) <= 2 * 80 + 1 and 9.0 in dy and dx[-1] == 4999 and dx == sorted(dx)


def test_model_eta_from_quantum_reports():
    model = ExperimentModel("x", num_workers=2)
    rows = [RunRow(f"r{i}", f"run {i}", "waiting", 0, 100, 0, 4) for i in (1, 2)]
    model.apply(Batch(runs=rows))
    assert model.eta_seconds() is None
    model.apply(Batch(events=[ev.QuantumDispatched(0, "r1", 0, 0, 25),
                              ev.QuantumReport("r1", 0, 0, 4, 25, 100, 50.0, 50.0, 0.0, 0.0, None, {"loss": 1.0})]))
    assert model.seconds_per_step() == 2.0
    assert model.eta_seconds() == pytest.approx((75 + 100) * 2.0 / 2)
    assert model.runs["r1"].last["loss"] == 1.0


def test_a_watched_run_knows_whether_it_has_a_checkpoint():
    # the warm-clone key is refused before its dialog for a run without one (as the engine would)
    base = {"run_id": "r1", "status": "waiting", "spec": {}}
    assert RunRow.from_store({**base, "checkpoint_dir": None}).checkpointed is False
    assert RunRow.from_store({**base, "checkpoint_dir": "/x/checkpoints/r1/step-8"}).checkpointed is True


async def test_watch_shows_each_past_chunk_with_its_own_metrics(tmp_path):
    controller = fake_experiment(tmp_path, num_chunks=2, max_steps=8)
    try:
        hosted = {(e.run_id, e.chunk): dict(e.metrics) for e in drive(controller) if isinstance(e, ev.QuantumReport)}
    finally:
        controller.close()
    assert hosted[("r1", 0)]["loss"] != hosted[("r1", 1)]["loss"]
    exp, spec, store = open_experiment(str(controller.exp.root))
    source = WatchSource(exp, spec, store, interval=0.1)
    try:
        reports = {(e.run_id, e.chunk): dict(e.metrics) for e in source.open().events
                   if isinstance(e, ev.QuantumReport)}
        assert reports == hosted  # the values the trainer's own chunk lines showed
        app = build_app(WatchSource(exp, spec, store, interval=0.1), theme="rftui-dark", clock=FixedClock())
        async with app.run_test(size=(120, 36)):
            log = app.main.query_one("#log")
            await wait_for(lambda: any("r1 chunk 2/2" in t for t in log.texts()))
            for chunk in (0, 1):
                loss = hosted[("r1", chunk)]["loss"]
                assert any(f"r1 chunk {chunk + 1}/2 done: step {4 * (chunk + 1)}/8, loss {loss:.3f}" in t
                           for t in log.texts()), log.texts()
    finally:
        source.close()
        store.close()


def test_a_past_chunk_report_does_not_hide_newer_points():
    model = ExperimentModel("x")
    model.apply(Batch(runs=[RunRow("r1", "run 1", "running", 4, 8, 1, 2)], points=[("r1", 6, "loss", 0.5, "train")],
                      events=[ev.QuantumReport("r1", 0, 0, 2, 4, 8, 1.0, 1.0, 0.0, 0.0, None,
                                               {"loss": 0.9, "eval_loss": 1.1})]))
    assert model.runs["r1"].last == {"loss": 0.5, "eval_loss": 1.1}


def test_the_state_follows_runs_that_train_again_after_the_finish():
    model = ExperimentModel("x")
    model.apply(Batch(runs=[RunRow("r1", "run 1", "stopped", 4, 8, 1, 2)], status="running",
                      events=[ev.ExperimentFinished("x", {"stopped": 1})]))
    assert model.state() == "finished" and model.finished
    model.apply(Batch(events=[ev.RunStatusChanged("r1", "waiting", "")]))  # resumed after the finish
    assert model.state() == "running" and not model.finished
    watched = ExperimentModel("x")  # a watched store says `interrupted` while a clone of a finished experiment trains
    watched.apply(Batch(runs=[RunRow("r1", "run 1", "completed", 8, 8, 2, 2), RunRow("r2", "run 2", "running", 0, 8, 0, 2)],
                        status="interrupted"))
    assert watched.state() == "running"


# ----------------------------------------------------------------------------- a dead owner (kill -9)


@pytest.fixture
def killed(tmp_path):
    """State.db as a kill -9 leaves it: status `running`, r1 `running` in chunk 2 with its checkpoint at step 2
    and points up to step 3, r2 waiting after chunk 1. The owner pid is this process until a test says otherwise.
    Written straight into the store after a full run: killing a live trainer at step 3 raced its batching
    (a slow poll could bring r1's whole chunk and leave it completed)."""
    controller = trained_experiment(tmp_path, "cut", num_chunks=2, max_steps=4)
    cut = controller.store
    with sqlite3.connect(cut.path) as db:  # chunk 2 never finished for either run
        db.execute("DELETE FROM quanta WHERE chunk = 1")
    cut.delete_metrics_after("r1", 3)
    cut.delete_metrics_after("r2", 2)
    cut.update_run("r1", status="running", steps_done=2, chunks_done=1, worker_id=0, adapter_dir=None)
    cut.update_run("r2", status="waiting", steps_done=2, chunks_done=1, worker_id=None, adapter_dir=None)
    cut.start_quantum("r1", 1, 0, 2, 4)
    cut.set_meta("status", "running")
    cut.set_meta("controller_pid", os.getpid())
    cut.set_meta("controller_started", start_time(os.getpid()))
    exp, spec, store = open_experiment(str(controller.exp.root))
    assert (store.get_run("r1")["status"], store.get_run("r1")["steps_done"]) == ("running", 2)
    assert store.last_metrics("r1")["loss"] == fake_loss("r1", 3)
    yield exp, spec, store
    store.close()
    cut.close()


def test_watch_of_a_dead_owner_shows_it_interrupted_at_its_checkpoint_and_stops(killed):
    exp, spec, store = killed
    store.set_meta("controller_pid", dead_pid())
    source = WatchSource(exp, spec, store, interval=0.05)
    try:
        batch = source.open()
        rows = {row.run_id: row for row in batch.runs}
        assert (rows["r1"].status, rows["r1"].steps_done, rows["r2"].status) == ("interrupted", 2, "waiting")
        assert rows["r1"].last["loss"] == fake_loss("r1", 2)  # not step 3's, which `rftui resume` redoes
        shown = {run["id"]: run for run in show_data(exp, store)["runs"]}
        assert rows["r1"].last["eval_loss"] == shown["r1"]["metrics"]["eval_loss"]  # what `rftui show` says
        assert shown["r1"]["status"] == "interrupted"
        assert max(step for run, step, *_ in batch.points if run == "r1") == 2
        assert batch.status == "interrupted" and batch.workers == {0: None}
        assert not any(isinstance(e, ev.QuantumDispatched) and e.chunk == 1 for e in batch.events)
        warnings = [e.message for e in batch.events if isinstance(e, ev.EngineWarning)]
        assert len(warnings) == 1 and f"`rftui resume cut --workdir {exp.workdir}` continues" in warnings[0]
        assert not any(isinstance(e, ev.Progress) and "quitting leaves it running" in e.message for e in batch.events)
        assert source.done
        refused = source.ops("stop", "r2").result(timeout=5)
        assert refused.status == "refused" and "rftui resume cut" in refused.reason
        assert store.list_ops() == []
    finally:
        source.close()


def test_watch_sees_the_owner_die_while_it_watches(killed):
    exp, spec, store = killed  # this process stands in for the live owner
    source = WatchSource(exp, spec, store, interval=0.05)
    model = ExperimentModel("cut")
    try:
        model.apply(source.open())
        assert (model.runs["r1"].status, model.runs["r1"].last["loss"]) == ("running", fake_loss("r1", 3))
        assert model.workers == {0: "r1"} and not source.done
        assert source.poll().runs[0].status == "running" and not source.done
        store.set_meta("controller_pid", dead_pid())
        batch = source.poll()
        assert ev.RunStatusChanged("r1", "interrupted", None) in batch.events and source.done
        model.apply(batch)
        assert (model.runs["r1"].status, model.runs["r1"].last["loss"]) == ("interrupted", fake_loss("r1", 2))
        assert model.state() == "interrupted" and model.workers == {0: None}
    finally:
        source.close()


def test_watch_of_a_cleanly_stopped_experiment_keeps_following_it(killed):
    exp, spec, store = killed  # as a quit leaves it: no owner, runs checkpointed, nothing left running
    store.update_run("r1", status="waiting")
    store.set_meta("status", "interrupted")
    store.set_meta("controller_pid", None)
    source = WatchSource(exp, spec, store, interval=0.05)
    try:
        batch = source.open()
        assert [row.status for row in batch.runs] == ["waiting", "waiting"] and batch.status == "interrupted"
        assert not any(isinstance(e, ev.EngineWarning) for e in batch.events) and not source.done
    finally:
        source.close()


async def test_the_watch_screen_of_a_dead_owner_says_how_to_continue_and_stops_polling(killed):
    exp, spec, store = killed
    store.set_meta("controller_pid", dead_pid())
    app = build_app(WatchSource(exp, spec, store, interval=0.05), theme="rftui-dark", clock=FixedClock())
    async with app.run_test(size=(120, 36)) as pilot:
        log = app.main.query_one("#log")
        await wait_for(lambda: not app.bridge_alive and app.model.runs)
        await wait_for(lambda: any(f"rftui resume cut --workdir {exp.workdir}" in t for t in log.texts()))
        assert app.model.runs["r1"].status == "interrupted" and app.model.state() == "interrupted"
        await pilot.press("q")
        await pilot.press("q")
        await pilot.pause()
    assert app.return_value == 0


@pytest.fixture
def quit_when(monkeypatch):
    return quit_app_when(monkeypatch)


def test_quitting_the_watch_of_a_dead_owner_prints_the_leaderboard_and_how_to_continue(killed, quit_when, capsys):
    from rftui.ui.run import run_watch

    exp, spec, store = killed
    store.set_meta("controller_pid", dead_pid())
    quit_when(lambda app: not app.bridge_alive and app.model.runs)
    assert run_watch(exp, spec, store, theme="rftui-dark") == 0
    out, err = capsys.readouterr()
    hint = f"`rftui resume cut --workdir {exp.workdir}` continues"
    lines = out.splitlines()
    assert lines[0] == f"experiment cut ({exp.workdir}) — interrupted: {hint}"
    rows = {line.split()[1]: line.split()[3:6] for line in lines[3:]}
    assert rows == {"r1": ["interrupted", "2/4", "1/2"], "r2": ["waiting", "2/4", "1/2"]}
    assert f"rftui: experiment cut is interrupted; {hint}\n" in err


def test_quitting_the_watch_of_a_live_experiment_prints_nothing(killed, quit_when, capsys):
    from rftui.ui.run import run_watch

    exp, spec, store = killed  # this process stands in for the live owner
    quit_when(lambda app: app.model.runs and app.model.runs["r1"].status == "running")
    assert run_watch(exp, spec, store, theme="rftui-dark") == 0
    out, err = capsys.readouterr()
    assert out == "" and "rftui resume" not in err
