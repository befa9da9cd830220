"""`rftui watch`'s elapsed time: the owner's session's training time from state.db, not the watcher's own age.
It stops when the experiment finishes, leaves out the time it sat finished, and ignores earlier sessions."""
from __future__ import annotations

import os
import sqlite3
import subprocess
import time

import pytest

from engine_helpers import dead_pid, trained_experiment
from ui_helpers import FixedClock, wait_for

from rftui.engine.liveness import start_time
from rftui.engine.setup import open_experiment
from rftui.ui.app import build_app
from rftui.ui.status_bar import StatusBar
from rftui.ui.watch import WatchSource
from rftui.ui.watch_clock import busy_seconds, process_started_at

pytestmark = pytest.mark.anyio


def test_busy_seconds_joins_short_gaps_and_leaves_out_long_ones():
    assert busy_seconds([(100, 110), (0, 10), (15, 20)], gap=30) == 30  # 0..20, then 100..110
    assert busy_seconds([(0, 50), (10, 20)], gap=30) == 50  # overlapping quanta of two workers count once
    assert busy_seconds([]) == 0


def test_process_started_at_is_the_wall_time_the_process_started():
    before = time.time()
    proc = subprocess.Popen(["sleep", "5"])
    try:
        started = process_started_at(start_time(proc.pid))
    finally:
        proc.kill()
        proc.wait()
    assert started is not None and before - 1.5 <= started <= time.time() + 1.5
    assert process_started_at(None) is None


class Wall:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def owned(tmp_path):
    """A stored experiment whose owner is this process (started at T0), with an earlier session's quantum."""
    controller = trained_experiment(tmp_path, "clock", num_chunks=2, max_steps=4)
    controller.store.close()
    exp, spec, store = open_experiment(str(controller.exp.root))
    t0 = process_started_at(start_time(os.getpid()))
    assert t0 is not None
    with sqlite3.connect(store.path) as db:
        db.execute("DELETE FROM quanta")
    quantum(store, "r1", 0, t0 - 1000, t0 - 900)  # the session before this owner's
    store.set_meta("controller_pid", os.getpid())
    store.set_meta("controller_started", start_time(os.getpid()))
    store.set_meta("status", "running")
    yield exp, spec, store, t0
    store.close()


def quantum(store, run_id, chunk, started, ended=None):
    with sqlite3.connect(store.path) as db:
        db.execute("INSERT INTO quanta(run_id, chunk, worker_id, start_step, end_step, status, started_at, ended_at)"
                   " VALUES (?, ?, 0, 0, 2, ?, ?, ?)", (run_id, chunk, "running" if ended is None else "done",
                                                         started, ended))


def end_quanta(store, ended):
    with sqlite3.connect(store.path) as db:
        db.execute("UPDATE quanta SET status = 'done', ended_at = ? WHERE status = 'running'", (ended,))


def test_the_watch_clock_counts_the_owners_session_and_stops_while_it_sits_finished(owned):
    exp, spec, store, t0 = owned
    quantum(store, "r1", 1, t0 + 100, t0 + 160)
    quantum(store, "r2", 1, t0 + 160)
    wall = Wall(t0 + 200)
    source = WatchSource(exp, spec, store, interval=0.05, wall_clock=wall)
    try:
        source.open()
        assert source.session_seconds() == 100  # from its first quantum; was 0 (the watcher had just started)
        wall.now = t0 + 210
        assert source.session_seconds() == 110  # a quantum trains: the clock runs between polls
        end_quanta(store, t0 + 220)
        store.set_meta("status", "finished")
        wall.now = t0 + 1000
        source.poll()
        assert source.session_seconds() == 120  # stopped at the finish
        quantum(store, "c1", 0, t0 + 2000)  # a clone reopens it much later: the idle time is not training time
        store.set_meta("status", "interrupted")
        wall.now = t0 + 2010
        source.poll()
        assert source.session_seconds() == 130
        end_quanta(store, t0 + 2020)  # the owner quits: it clears itself from state.db
        store.set_meta("controller_pid", None)
        store.set_meta("controller_started", None)
        wall.now = t0 + 5000
        source.poll()
        assert source.session_seconds() == 140 and not source.done
    finally:
        source.close()


def test_a_dead_owners_clock_stops_at_its_last_point_and_no_owner_at_all_shows_none(owned):
    exp, spec, store, t0 = owned
    quantum(store, "r1", 1, t0 + 100)  # left running by a kill -9; its last point came 30 s in
    store.add_metrics("r1", 3, {"loss": 1.0}, wall_time=t0 + 130)
    store.set_meta("controller_pid", dead_pid())
    source = WatchSource(exp, spec, store, interval=0.05, wall_clock=Wall(t0 + 9000))
    try:
        source.open()
        assert source.done and source.session_seconds() == 30
    finally:
        source.close()
    store.set_meta("controller_pid", None)  # a clean quit before the watcher came: no session to count
    store.set_meta("status", "interrupted")
    source = WatchSource(exp, spec, store, interval=0.05, wall_clock=Wall(t0 + 9000))
    try:
        source.open()
        assert source.session_seconds() is None
    finally:
        source.close()


async def test_the_watch_status_bar_shows_the_sessions_time(owned):
    exp, spec, store, t0 = owned
    quantum(store, "r1", 1, t0 + 100)
    source = WatchSource(exp, spec, store, interval=0.05, wall_clock=Wall(t0 + 100 + 3723))
    app = build_app(source, theme="rftui-dark", clock=FixedClock())  # the app's own clock says 00:00
    async with app.run_test(size=(160, 36)) as pilot:
        await wait_for(lambda: "elapsed 1:02:03" in str(app.main.query_one(StatusBar).render()))
        await pilot.press("q")
        await pilot.press("q")
        await pilot.pause()
