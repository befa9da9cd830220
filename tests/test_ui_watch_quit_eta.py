"""A watcher's quit dialog and status bar say what is true of the watched experiment.

The dialog said "it keeps running in its own process" after the owner was killed or the experiment
finished; the status bar counted an ETA down while nothing trained (a killed owner, or a run resumed
offline from the watch of an experiment whose owner had quit).
"""
from __future__ import annotations

import pytest

import test_ui_watch
from engine_helpers import dead_pid, trained_experiment
from ui_helpers import FixedClock, record, settle, wait_for

from rftui.engine.setup import open_experiment
from rftui.ui.app import build_app
from rftui.ui.quit_dialog import QuitDialog, watched_state
from rftui.ui.status_bar import StatusBar
from rftui.ui.watch import WatchSource

SIZE = (120, 36)
pytestmark = pytest.mark.anyio
killed = test_ui_watch.killed  # the fixture: state.db as a kill -9 leaves it (this process its owner)


def watch_app(exp, spec, store):
    return build_app(WatchSource(exp, spec, store, interval=0.05), theme="rftui-dark", clock=FixedClock())


async def quit_body(pilot, app) -> str:
    await pilot.press("q")
    await pilot.pause()
    assert isinstance(app.screen, QuitDialog) and app.screen.default == "quit"
    body = str(app.screen.query_one("#body").render()).replace("\n", " ")
    await pilot.press("escape")
    await pilot.pause()
    return body


def status(app) -> str:
    app.main._refresh_status()
    return app.main.query_one(StatusBar)._shown.plain


async def test_the_watch_of_a_killed_owner_says_interrupted_with_the_resume_command_and_no_eta(killed):
    exp, spec, store = killed
    store.set_meta("controller_pid", dead_pid())
    app = watch_app(exp, spec, store)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(lambda: not app.bridge_alive and app.model.runs)
        await pilot.pause()
        bar = status(app)
        body = await quit_body(pilot, app)
    assert "cut interrupted" in bar and "engine stopped" in bar and bar.endswith("ETA - │ watching"), bar
    assert "keeps running" not in body, body
    assert body == (f"Experiment cut is interrupted: no process trains it now. Continue it with "
                    f"`rftui resume cut --workdir {exp.workdir}`; quitting only closes this screen."), body


async def test_the_watch_of_a_live_owner_says_it_keeps_running(killed):
    exp, spec, store = killed  # this process stands in for the live owner
    app = watch_app(exp, spec, store)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(lambda: app.model.runs and app.model.runs["r1"].status == "running")
        await pilot.pause()
        bar = status(app)
        body = await quit_body(pilot, app)
    assert body == "Experiment cut is not touched: it keeps running in its own process.", body
    assert "cut running" in bar and "ETA " in bar and "ETA -" not in bar, bar  # it trains: a clock


async def test_the_watch_of_a_finished_experiment_says_it_has_finished(tmp_path):
    ctl = trained_experiment(tmp_path, "done")
    exp, spec, store = open_experiment(str(ctl.exp.root))
    app = watch_app(exp, spec, store)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(lambda: app.model.runs and app.model.state() == "finished")
        await pilot.pause()
        bar = status(app)
        body = await quit_body(pilot, app)
    store.close()
    assert body == "Experiment done has finished; quitting only closes this screen.", body
    assert "ETA done" in bar, bar


async def test_a_run_resumed_from_the_watch_of_a_quit_experiment_shows_no_eta(killed):
    """The owner quit (checkpointed, status interrupted); `r` from the watch resumes r1 in state.db only."""
    exp, spec, store = killed
    store.update_run("r1", status="stopped")
    store.set_meta("status", "interrupted")
    store.set_meta("controller_pid", None)
    app = watch_app(exp, spec, store)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(lambda: app.model.runs and app.model.runs["r1"].status == "stopped")
        app.send_op("resume", "r1")
        await wait_for(lambda: app.model.runs["r1"].status == "waiting")
        await pilot.pause()
        bar = status(app)
        body = await quit_body(pilot, app)
    assert app.bridge_alive and app.model.eta_seconds(), app.model.eta_seconds()  # it would have shown a clock
    assert "cut interrupted" in bar and "ETA -" in bar, bar
    assert body.startswith("Experiment cut is interrupted: no process trains it now. Continue it with `rftui resume"), body


async def test_a_hosted_app_whose_engine_stopped_shows_no_eta(tmp_path):
    source = record(tmp_path, quanta=3)
    app = build_app(source, theme="rftui-dark", clock=FixedClock())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        assert "ETA 01:01" in status(app)
        app.bridge_alive = False  # the engine thread died: nothing trains
        assert "ETA -" in status(app)


@pytest.mark.parametrize("state, following, word", [
    ("running", True, "running"), ("running", False, "unknown"), ("stopping", True, "stopping"),
    ("finished", False, "finished"), ("interrupted", True, "interrupted"), ("starting", True, "unknown"),
])
def test_watched_state(state, following, word):
    assert watched_state(state, following) == word


@pytest.mark.parametrize("watched, expected", [
    ("stopping", "Experiment x is not touched: its own process is stopping it (running quanta checkpoint). "
                 "Continue it later with `rftui resume x --workdir /w`."),
    ("created", "Experiment x has not started: no process trains it. Start it with `rftui resume x --workdir /w`; "
                "quitting only closes this screen."),
    ("unknown", "Quitting does not touch experiment x, whether or not its own process trains it now."),
])
def test_the_other_watcher_bodies(watched, expected):
    dialog = QuitDialog(False, "x", resume_command="rftui resume x --workdir /w", watched=watched)
    assert dialog._watcher_body() == expected
