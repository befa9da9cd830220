"""The session clock the controller keeps in state.db, and `rftui watch`'s elapsed time read from it: it counts
the owner's session, not the watcher's own age, stops when the experiment finishes and leaves out the time it
sat finished before a run reopened it."""
from __future__ import annotations

import os
import time

import pytest

from engine_helpers import dead_pid, drive, fake_experiment
from ui_helpers import FixedClock, wait_for

from rftui.engine.liveness import start_time
from rftui.engine.session_clock import STARTED, STOPPED, session_seconds
from rftui.engine.setup import open_experiment
from rftui.ui.app import build_app
from rftui.ui.status_bar import StatusBar
from rftui.ui.watch import WatchSource

pytestmark = pytest.mark.anyio


def test_session_seconds_runs_while_the_owner_trains_and_stops_where_it_stopped():
    meta = {STARTED: 1000.0, STOPPED: None}
    assert session_seconds(meta, 1100.0, owner_alive=True, last_activity=1050.0) == 100
    assert session_seconds(meta, 1100.0, owner_alive=False, last_activity=1050.0) == 50  # killed: its last point
    assert session_seconds(meta, 1100.0, owner_alive=False, last_activity=None) == 0
    assert session_seconds({STARTED: 1000.0, STOPPED: 1030.0}, 9000.0, owner_alive=False, last_activity=None) == 30
    assert session_seconds({}, 9000.0, owner_alive=True, last_activity=None) is None  # an older state.db


def test_the_controller_stops_its_clock_at_the_finish_and_a_reopening_leaves_the_idle_time_out(tmp_path):
    ctl = fake_experiment(tmp_path, "clock", num_chunks=2, max_steps=4)
    store = ctl.store
    try:
        before = time.time()
        ctl.request("stop", "r1", {}, "api")  # r1 ends stopped; resuming it later reopens the experiment
        drive(ctl)
        started, stopped = store.get_meta(STARTED), store.get_meta(STOPPED)
        assert before <= started <= stopped <= time.time()
        assert store.get_meta("status") == "finished"
        time.sleep(0.3)  # the experiment sits finished
        assert ctl.request("resume", "r1", {}, "api") is not None
        ctl.step(0.05)
        reopened = time.time()
        assert store.get_meta(STOPPED) is None and store.get_meta("status") == "interrupted"
        # the clock goes on from where it stopped: the 0.3 s it sat finished are not counted
        assert store.get_meta(STARTED) == pytest.approx(started + (reopened - stopped), abs=0.2)
        assert store.get_meta(STARTED) >= started + 0.3
        while not ctl.finished:
            ctl.step(0.05)
    finally:
        ctl.close()
    assert store.get_meta(STOPPED) is not None and store.get_meta(STOPPED) <= time.time()


@pytest.fixture
def owned(tmp_path):
    """A stored experiment whose owner is this process, its session started at T0 (a fixed past time)."""
    ctl = fake_experiment(tmp_path, "clock", num_chunks=2, max_steps=4)
    ctl.store.close()
    exp, spec, store = open_experiment(str(ctl.exp.root))
    t0 = 1_700_000_000.0
    store.set_meta("controller_pid", os.getpid())
    store.set_meta("controller_started", start_time(os.getpid()))
    store.set_meta(STARTED, t0)
    store.set_meta(STOPPED, None)
    store.set_meta("status", "running")
    yield exp, spec, store, t0
    store.close()


class Wall:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_the_watch_clock_follows_the_stored_session_not_the_watchers_start(owned):
    exp, spec, store, t0 = owned
    wall = Wall(t0 + 100)
    source = WatchSource(exp, spec, store, interval=0.05, wall_clock=wall)
    try:
        source.open()
        assert source.session_seconds() == 100  # the session's age; was 0 (the watcher had just started)
        wall.now = t0 + 110
        assert source.session_seconds() == 110  # it runs between polls
        store.set_meta(STOPPED, t0 + 120)  # finished
        store.set_meta("status", "finished")
        wall.now = t0 + 1000
        source.poll()
        assert source.session_seconds() == 120
    finally:
        source.close()


def test_a_dead_owners_clock_stops_at_its_last_point(owned):
    exp, spec, store, t0 = owned
    store.add_metrics("r1", 3, {"loss": 1.0}, wall_time=t0 + 130)  # a kill -9 after this point
    store.set_meta("controller_pid", dead_pid())
    source = WatchSource(exp, spec, store, interval=0.05, wall_clock=Wall(t0 + 9000))
    try:
        source.open()
        assert source.done and source.session_seconds() == 130
    finally:
        source.close()


async def test_the_watch_status_bar_shows_the_sessions_time(owned):
    exp, spec, store, t0 = owned
    source = WatchSource(exp, spec, store, interval=0.05, wall_clock=Wall(t0 + 3723))
    app = build_app(source, theme="rftui-dark", clock=FixedClock())  # the app's own clock says 00:00
    async with app.run_test(size=(160, 36)) as pilot:
        await wait_for(lambda: "elapsed 1:02:03" in str(app.main.query_one(StatusBar).render()))
        await pilot.press("q")
        await pilot.press("q")
        await pilot.pause()
