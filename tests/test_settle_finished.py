"""An op applied to a stored experiment (no process owns it) that leaves nothing to train makes it `finished`
again: a clone of a finished experiment deleted before it trained, the last waiting run of a killed one deleted.
`rftui resume` then says there is nothing to resume and starts no workers; the last session's clock is kept."""
from __future__ import annotations

import json

import pytest

import rftui.cli as cli
from engine_helpers import dead_pid, drive, fake_experiment, trained_experiment
from rftui.control import submit
from rftui.engine.session_clock import STARTED, STOPPED


def _clock(store) -> tuple:
    return store.get_meta(STARTED), store.get_meta(STOPPED)


def _show(tmp_path, capsys) -> dict:
    assert cli.main(["show", "exp", "--json", "--workdir", str(tmp_path)]) == 0
    return json.loads(capsys.readouterr().out)


def test_a_clone_deleted_before_it_trained_leaves_the_experiment_finished(tmp_path, capsys, monkeypatch):
    ctl = trained_experiment(tmp_path)
    store = ctl.store
    clock = _clock(store)
    assert store.get_meta("status") == "finished" and None not in clock
    assert submit(ctl.exp, ctl.spec, store, "clone", "r2", {})["new_run_id"] == "r3"
    assert _show(tmp_path, capsys)["status"] == "interrupted"  # r3 waits for `rftui resume`
    assert _clock(store) == clock  # no session trains it yet: the last one's clock stays stopped
    submit(ctl.exp, ctl.spec, store, "delete", "r3", {})
    assert store.get_meta("status") == "finished"  # stayed `interrupted`
    assert _show(tmp_path, capsys)["status"] == "finished"
    assert _clock(store) == clock
    store.close()
    monkeypatch.setattr(cli, "_drive", lambda *a, **k: pytest.fail("rftui resume started workers"))
    assert cli.main(["resume", "exp", "--no-ui", "--workdir", str(tmp_path)]) == 0
    assert "experiment exp already finished; nothing to resume" in capsys.readouterr().out


def test_a_resumed_stopped_run_stopped_again_leaves_nothing_to_train(tmp_path):
    ctl = fake_experiment(tmp_path, "exp")

    def stop_r1(controller, events):
        if controller.runs["r1"].status == "waiting" and controller.runs["r1"].chunks_done:
            controller.apply_op("stop", "r1", {}, "api", [])

    try:
        drive(ctl, limit=60, on_events=stop_r1)
    finally:
        ctl.close()
    assert ctl.store.get_meta("status") == "finished" and ctl.store.get_run("r1")["status"] == "stopped"
    submit(ctl.exp, ctl.spec, ctl.store, "resume", "r1", {})
    assert ctl.store.get_meta("status") == "interrupted"
    submit(ctl.exp, ctl.spec, ctl.store, "stop", "r1", {})
    assert ctl.store.get_meta("status") == "finished"  # as a live owner finishes with only stopped runs left
    ctl.store.close()


def test_deleting_a_killed_experiments_last_waiting_run_finishes_it_and_keeps_its_clock(tmp_path, capsys):
    ctl = fake_experiment(tmp_path, "exp")  # never started: r1 and r2 pending
    store = ctl.store
    store.set_meta("status", "running")
    store.set_meta(STARTED, 1_700_000_000.0)
    store.set_meta("controller_pid", dead_pid())  # killed: `show` says interrupted
    submit(ctl.exp, ctl.spec, store, "delete", "r1", {})
    assert _show(tmp_path, capsys)["status"] == "interrupted"  # r2 still has to train
    submit(ctl.exp, ctl.spec, store, "delete", "r2", {})
    assert _show(tmp_path, capsys)["status"] == "finished"
    # a killed owner's clock is read up to its last activity; a stop stamped now would count the time since
    assert _clock(store) == (1_700_000_000.0, None)
    store.close()


def test_a_live_owner_whose_clone_is_deleted_before_it_trains_finishes_again(tmp_path):
    ctl = fake_experiment(tmp_path, "exp")
    try:
        drive(ctl)
        assert ctl.apply_op("clone", "r1", {}, "api", []).new_run_id == "r3"
        assert ctl.store.get_meta("status") == "interrupted" and ctl.store.get_meta(STOPPED) is None
        assert ctl.apply_op("delete", "r3", {}, "api", []).status == "applied"
        assert ctl.store.get_meta("status") == "interrupted"  # the live owner's step records the finish
        ctl.step(0.05)
        assert ctl.store.get_meta("status") == "finished" and ctl.store.get_meta(STOPPED) is not None
    finally:
        ctl.close()
    ctl.store.close()
