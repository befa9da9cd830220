"""`rftui resume` and Experiment.resume settle a stored status that says there is work left when there is none,
and start no workers: a clone of a finished experiment deleted offline before settling existed (status left
`interrupted`), and an owner killed after its last run completed but before it wrote `finished`."""
from __future__ import annotations

import json

import pytest

import rftui.cli as cli
from engine_helpers import dead_pid, fake_experiment, trained_experiment
from rftui import Experiment
from rftui.control import nothing_to_resume, submit
from rftui.engine.setup import open_experiment
from rftui.engine.session_clock import STARTED, STOPPED


def _clone_deleted_before_settling(tmp_path):
    """A finished experiment whose offline clone was deleted, as stored before settle_stored existed."""
    ctl = trained_experiment(tmp_path)
    submit(ctl.exp, ctl.spec, ctl.store, "clone", "r2", {})
    submit(ctl.exp, ctl.spec, ctl.store, "delete", "r3", {})
    ctl.store.set_meta("status", "interrupted")  # what the delete left then
    return ctl.store


def _killed_after_its_last_run(tmp_path):
    """Every run completed, then the owner was killed before it wrote `finished` or stopped its clock."""
    ctl = trained_experiment(tmp_path)
    ctl.store.set_meta("status", "running")
    ctl.store.set_meta(STOPPED, None)
    ctl.store.set_meta("controller_pid", dead_pid())
    return ctl.store


STALE = [_clone_deleted_before_settling, _killed_after_its_last_run]


@pytest.mark.parametrize("stale", STALE)
@pytest.mark.parametrize("json_lines", [False, True])
def test_rftui_resume_settles_it_and_starts_no_workers(tmp_path, capsys, monkeypatch, stale, json_lines):
    store = stale(tmp_path)
    clock = store.get_meta(STARTED), store.get_meta(STOPPED)
    assert store.get_meta("status") != "finished"
    store.close()
    monkeypatch.setattr(cli, "_drive", lambda *a, **k: pytest.fail("rftui resume started workers"))
    argv = ["resume", "exp", "--no-ui", "--workdir", str(tmp_path), *(["--json"] if json_lines else [])]
    assert cli.main(argv) == 0
    out, err = capsys.readouterr()
    note = f"experiment exp already finished; nothing to resume (see `rftui show exp --workdir {tmp_path}`)"
    if json_lines:
        line = json.loads(out)
        assert line["event"] == "ExperimentFinished" and err == f"rftui: {note}\n"
        assert line["counts"] == {"completed": 2, **({"deleted": 1} if stale is _clone_deleted_before_settling else {})}
    else:
        assert out == note + "\n"
    assert cli.main(["show", "exp", "--json", "--workdir", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "finished"
    _, _, store = open_experiment("exp", tmp_path, readonly=True)
    assert (store.get_meta(STARTED), store.get_meta(STOPPED)) == clock  # settling leaves the clock as it was
    store.close()


@pytest.mark.parametrize("stale", STALE)
def test_experiment_resume_settles_it_and_starts_no_workers(tmp_path, capsys, monkeypatch, stale):
    stale(tmp_path).close()
    capsys.readouterr()
    monkeypatch.setattr(Experiment, "_drive", lambda *a, **k: pytest.fail("Experiment.resume started workers"))
    experiment = Experiment("exp", workdir=tmp_path)
    assert experiment.resume() is None
    assert capsys.readouterr().out == ("experiment exp already finished; nothing to resume (resume_run a stopped "
                                       "run or clone_run one first)\n")
    runs = dict(zip(*experiment.get_runs_info()[["run_id", "status"]].T.values))
    assert runs == {"r1": "completed", "r2": "completed",
                    **({"r3": "deleted"} if stale is _clone_deleted_before_settling else {})}


def test_a_killed_experiment_with_work_left_is_still_resumed(tmp_path):
    ctl = fake_experiment(tmp_path)  # never trained: r1 and r2 pending
    ctl.store.set_meta("status", "running")
    ctl.store.set_meta("controller_pid", dead_pid())
    assert nothing_to_resume(ctl.exp, ctl.spec, ctl.store) is False
    assert ctl.store.get_meta("status") == "running"  # left for resume's new session to take over
    ctl.store.close()
