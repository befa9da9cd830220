"""Quitting `rftui watch` says how to continue only when nothing trains the experiment."""
from __future__ import annotations

import os

from engine_helpers import trained_experiment
from ui_helpers import quit_app_when

from rftui.engine.liveness import start_time
from rftui.engine.setup import open_experiment

def test_quitting_the_watch_of_an_experiment_its_live_owner_reopened_prints_nothing(tmp_path, monkeypatch,
                                                                                     capsys):
    # A clone added to a finished experiment marks it interrupted while the owner (its UI still open) trains it.
    from rftui.ui.run import run_watch

    ctl = trained_experiment(tmp_path, "reopened")
    exp, spec, store = open_experiment(str(ctl.exp.root))
    ctl.store.set_meta("status", "interrupted")
    ctl.store.set_meta("controller_started", start_time(os.getpid()))
    ctl.store.set_meta("controller_pid", os.getpid())
    quit_app_when(monkeypatch)(lambda app: bool(app.model.runs))
    assert run_watch(exp, spec, store, theme="rftui-dark") == 0
    out, err = capsys.readouterr()
    assert out == "" and "rftui resume" not in err
