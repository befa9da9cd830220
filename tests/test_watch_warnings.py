"""Engine warnings are kept in state.db, once per (run, message), so that `rftui watch` shows them too:
the fp16-on-cpu warning of a worker or MLflow's "logging stopped" reach whoever attaches later."""
from __future__ import annotations

import random
import sqlite3
from dataclasses import replace

from fake_pool import FakePool

from engine_helpers import SAMPLES, drive, fake_experiment, rows
from rftui.config.yaml_config import load_experiment_file
from rftui.engine import events as ev
from rftui.engine.controller import Controller
from rftui.engine.messages import WorkerWarning
from rftui.engine.setup import create_experiment, open_experiment
from rftui.engine.store import Store
from rftui.errors import ExperimentError
from rftui.ui.watch import WatchSource

FP16 = "fp16 is ignored on cpu"
MLFLOW = "MLflow logging stopped: the tracking server is gone"


def pool_controller(tmp_path) -> Controller:
    spec = load_experiment_file(SAMPLES / "smoke.yaml")
    runs = tuple(replace(r, training={**r.training, "max_steps": 4}) for r in spec.runs)
    spec = replace(spec, name="warned", workdir=str(tmp_path), num_chunks=2, runs=runs)
    exp, spec, store = create_experiment(spec, rows(16), rows(4))
    return Controller(exp, spec, store, FakePool(1, random.Random(0)))


def warnings_of(events) -> list[tuple[str | None, str]]:
    return [(e.run_id, e.message) for e in events if isinstance(e, ev.EngineWarning)]


def kept(store) -> list[tuple[str | None, str]]:
    return [(w["run_id"], w["message"]) for w in store.warnings()]


def watcher(ctl: Controller) -> WatchSource:
    exp, spec, store = open_experiment(str(ctl.exp.root), readonly=True)
    return WatchSource(exp, spec, store, interval=0.01)


def test_warnings_are_kept_once_and_a_watcher_shows_them(tmp_path):
    ctl = pool_controller(tmp_path)
    ctl.start()
    ctl.pool.pending += [(0, WorkerWarning(0, "r1", f"run r1: {FP16}")), (0, WorkerWarning(0, "r2", f"run r2: {FP16}")),
                         (0, WorkerWarning(0, "r1", f"run r1: {FP16}"))]  # a restarted worker says it again
    ctl.warn(MLFLOW)
    ctl.warn(MLFLOW)
    events = ctl.step(0)
    # the events are as before (front ends fold repeats themselves); the store keeps each one once
    assert warnings_of(events) == [("r1", f"run r1: {FP16}"), ("r2", f"run r2: {FP16}"), ("r1", f"run r1: {FP16}"),
                                   (None, MLFLOW), (None, MLFLOW)]
    assert kept(ctl.store) == [("r1", f"run r1: {FP16}"), ("r2", f"run r2: {FP16}"), (None, MLFLOW)]
    assert ctl.store.add_warning(MLFLOW) is False  # a NULL run is one run too (a resumed controller says it again)

    source = watcher(ctl)
    try:
        first = source.open()
        assert warnings_of(first.events) == [("r1", f"run r1: {FP16}"), ("r2", f"run r2: {FP16}"), (None, MLFLOW)]
        ctl.pool.pending.append((0, WorkerWarning(0, "r2", f"run r2: {FP16}")))  # kept already: not shown again
        ctl.warn("the eval rows are plain text")
        ctl.step(0)
        assert warnings_of(source.poll().events) == [(None, "the eval rows are plain text")]
        assert warnings_of(source.poll().events) == []
    finally:
        source.close()
        source.store.close()
        ctl.close()
    assert len(kept(ctl.store)) == 4


def test_a_warning_that_cannot_be_kept_does_not_stop_training(tmp_path, monkeypatch):
    ctl = pool_controller(tmp_path)
    ctl.start()

    def broken(message, run_id=None):
        raise ExperimentError("state.db is not writable now (database is locked)")

    monkeypatch.setattr(ctl.store, "add_warning", broken)
    ctl.step(0)  # the worker says it is ready
    ctl.warn(MLFLOW)
    events = ctl.step(0)  # dispatches r1 and still reports the warning
    assert warnings_of(events) == [(None, MLFLOW)]
    assert any(isinstance(e, ev.QuantumDispatched) for e in events)
    ctl.pool.finish_one()
    assert any(isinstance(e, ev.QuantumReport) for e in ctl.step(0))
    ctl.close()


def test_a_warning_given_while_closing_is_kept(tmp_path):
    ctl = pool_controller(tmp_path)
    ctl.start()
    ctl.warn(MLFLOW)  # e.g. the MLflow sink's, from its thread, while it flushes on close
    assert warnings_of(ctl.close()) == [(None, MLFLOW)]  # for the front end to show after close
    assert kept(ctl.store) == [(None, MLFLOW)]


def test_a_state_db_from_before_the_warnings_table_still_opens(tmp_path):
    ctl = pool_controller(tmp_path)
    ctl.store.close()
    path = ctl.exp.state_db
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE warnings")  # as an older rftui wrote it (its index goes with it)
    conn.commit()
    conn.close()

    old = Store.open(path, readonly=True)  # a watcher cannot add the table: it reads none
    source = WatchSource(ctl.exp, ctl.spec, old, interval=0.01)
    try:
        assert warnings_of(source.open().events) == []
        with Store.open(path) as store:  # a writable open (resume, ctl) adds it
            ctl2 = Controller(ctl.exp, ctl.spec, store, FakePool(1, random.Random(0)))
            ctl2.start()
            ctl2.warn(MLFLOW)
            ctl2.step(0)
            assert kept(store) == [(None, MLFLOW)]
            assert warnings_of(source.poll().events) == [(None, MLFLOW)]  # the reader sees the new table
            ctl2.close()
    finally:
        source.close()
        old.close()


def test_a_watcher_attaching_after_a_real_fake_backend_run_shows_its_warnings(tmp_path):
    controller = fake_experiment(tmp_path, num_chunks=2, max_steps=4)
    said = []

    def warn_once(ctl, events):
        if not said and any(isinstance(e, ev.QuantumReport) for e in events):
            said.append(True)
            ctl.warn(MLFLOW)

    try:
        hosted = drive(controller, on_events=warn_once)
    finally:
        controller.close()
    assert warnings_of(hosted) == [(None, MLFLOW)]
    exp, spec, store = open_experiment(str(controller.exp.root), readonly=True)
    source = WatchSource(exp, spec, store, interval=0.01)
    try:
        assert warnings_of(source.open().events) == [(None, MLFLOW)]
    finally:
        source.close()
        store.close()


def test_the_terminal_ui_prints_a_warning_given_while_closing_after_its_screen_is_gone(tmp_path, monkeypatch,
                                                                                     capsys):
    from ui_helpers import quit_app_when

    from rftui.ui.run import run_hosted

    controller = fake_experiment(tmp_path)
    shutdown = controller.pool.shutdown

    def shutdown_then_warn():
        controller.warn(MLFLOW)
        return shutdown()

    controller.pool.shutdown = shutdown_then_warn
    quit_app_when(monkeypatch)(lambda app: app.source.done)
    assert run_hosted(controller, theme="rftui-dark") == 0
    printed = capsys.readouterr()
    assert printed.out.splitlines()[-1] == f"warning: {MLFLOW}"  # the leaderboard lists every kept warning
    assert MLFLOW not in printed.err  # once
