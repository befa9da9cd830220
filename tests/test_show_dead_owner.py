"""`rftui show` after the experiment's process died (kill -9): state.db still says `running`; show says the
run is interrupted and reports its metrics as of its checkpoint, which is what `rftui resume` continues from."""
from __future__ import annotations

import json
import os

import pytest

from engine_helpers import dead_pid, fake_experiment, trained_experiment

from rftui.cli import main as cli_main
from rftui.engine.fake_backend import fake_loss
from rftui.engine.liveness import start_time


@pytest.fixture
def cut_short(tmp_path):
    """As a kill -9 leaves it: r1 `running` with its checkpoint at step 2 and points logged up to step 4."""
    ctl = trained_experiment(tmp_path, "cut", num_chunks=2, max_steps=4)
    store = ctl.store
    store.update_run("r1", status="running", steps_done=2, chunks_done=1, worker_id=0)
    store.start_quantum("r1", 1, 0, 2, 4)
    store.set_meta("status", "running")
    return store


def show(tmp_path, capsys, *extra):
    assert cli_main(["show", "cut", "--workdir", str(tmp_path), *extra]) == 0
    return capsys.readouterr().out


def test_show_presents_a_run_of_a_dead_owner_as_interrupted_at_its_checkpoint(tmp_path, capsys, cut_short):
    cut_short.set_meta("controller_pid", dead_pid())
    data = json.loads(show(tmp_path, capsys, "--json"))
    assert data["status"] == "interrupted"
    r1, r2 = data["runs"]
    assert (r1["id"], r1["status"], r1["steps_done"]) == ("r1", "interrupted", 2)
    assert r1["metrics"]["loss"] == fake_loss("r1", 2)  # not step 4's, which resume redoes
    assert r1["metrics"]["eval_loss"] is not None  # the chunk-end eval at step 2
    assert (r2["status"], r2["metrics"]["loss"]) == ("completed", fake_loss("r2", 4))

    text = show(tmp_path, capsys)
    assert f"— interrupted: `rftui resume cut --workdir {tmp_path}` continues" in text.splitlines()[0]
    row = next(line for line in text.splitlines() if " r1 " in line)
    assert "interrupted" in row and "2/4" in row and f"{fake_loss('r1', 2):.4f}" in row
    assert f"{fake_loss('r1', 4):.4f}" not in row


def test_show_of_a_live_owner_shows_its_running_run_as_it_trains(tmp_path, capsys, cut_short):
    cut_short.set_meta("controller_pid", os.getpid())  # this process stands in for the live owner
    data = json.loads(show(tmp_path, capsys, "--json"))
    assert data["status"] == "running"
    assert (data["runs"][0]["status"], data["runs"][0]["metrics"]["loss"]) == ("running", fake_loss("r1", 4))
    assert "interrupted" not in show(tmp_path, capsys)
    cut_short.set_meta("controller_pid", None)


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="process start times come from /proc")
def test_a_reused_pid_does_not_make_a_dead_owner_look_alive(tmp_path, capsys, cut_short):
    # After a kill -9 the owner's pid may be handed to another process (here: this one, which started
    # at another time than the one recorded): show and resume must still see the owner as gone.
    cut_short.set_meta("controller_pid", os.getpid())
    cut_short.set_meta("controller_started", "1")
    assert json.loads(show(tmp_path, capsys, "--json"))["status"] == "interrupted"
    cut_short.set_meta("controller_started", start_time(os.getpid()))
    assert json.loads(show(tmp_path, capsys, "--json"))["status"] == "running"
    cut_short.set_meta("controller_pid", None)


def test_a_starting_controller_records_its_pid_before_it_says_running(tmp_path, monkeypatch):
    """A watcher polling while an experiment starts must never read `running` beside no live owner."""
    from rftui.control import controller_alive
    from rftui.engine.store import Store

    seen: list[bool] = []
    real_set_meta = Store.set_meta

    def spy(self, key, value):
        real_set_meta(self, key, value)
        if key == "status" and value == "running":
            seen.append(controller_alive(self))

    monkeypatch.setattr(Store, "set_meta", spy)
    trained_experiment(tmp_path, "starting", num_chunks=1, max_steps=2)
    assert seen == [True]


def test_a_closing_controller_clears_its_pid_only_after_the_workers_last_checkpoints(tmp_path, monkeypatch):
    """Runs still say running until the workers' shutdown events are stored: no owner beside them then would read
    as a killed experiment to a watcher."""
    from rftui.engine.store import Store

    running_when_owner_left: list[list[str]] = []
    real_set_meta = Store.set_meta

    def spy(self, key, value):
        if key == "controller_pid" and value is None:
            running_when_owner_left.append([r["run_id"] for r in self.list_runs() if r["status"] == "running"])
        real_set_meta(self, key, value)

    monkeypatch.setattr(Store, "set_meta", spy)
    ctl = fake_experiment(tmp_path, "closing", num_chunks=2, max_steps=400, step_seconds=0.01)
    ctl.start()
    while not ctl.busy:
        ctl.step(0.1)
    assert ctl.store.get_run(next(iter(ctl.busy.values())))["status"] == "running"
    ctl.close()  # a second Ctrl-C: no begin_shutdown, the pool's shutdown preempts the quantum
    assert running_when_owner_left == [[]]
