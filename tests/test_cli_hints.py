"""The command line's own hints: a command's usage for arguments it does not take, commands in hints that work
from any directory (--workdir), "did you mean" for a mistyped experiment name."""
from __future__ import annotations

from pathlib import Path

import pytest

from engine_helpers import drive, fake_experiment
from rftui.cli import main

SMOKE = str(Path(__file__).resolve().parent.parent / "sample_configs" / "smoke.yaml")


@pytest.mark.parametrize("argv, complaint", [
    (["run", SMOKE, "--resume"], "unrecognized arguments: --resume (`resume` is a command of its own: "
                                 "rftui resume EXPERIMENT)"),
    (["run", SMOKE, "--no-tracing"], "unrecognized arguments: --no-tracing (did you mean --no-tracking?)"),
    (["show", "exp", "--jsn"], "unrecognized arguments: --jsn (did you mean --json?)"),
    (["plan", SMOKE, "extra"], "unrecognized arguments: extra"),
])
def test_an_argument_a_command_does_not_take_shows_that_command_s_usage(capsys, argv, complaint):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: rftui {argv[0]} [-h]")
    assert err.endswith(f"rftui {argv[0]}: error: {complaint}\n")


def test_a_far_off_flag_gets_no_guess(capsys):
    with pytest.raises(SystemExit):
        main(["run", SMOKE, "--resme"])  # closer to --theme than to anything meant, and not close enough
    assert capsys.readouterr().err.endswith("rftui run: error: unrecognized arguments: --resme\n")


@pytest.fixture
def finished(tmp_path):
    controller = fake_experiment(tmp_path, name="intr", num_chunks=2, max_steps=4)
    drive(controller)
    controller.close()
    controller.store.close()
    return tmp_path


def test_hints_name_the_workdir(finished, capsys):
    where = ("--workdir", str(finished))
    assert main(["resume", "intr", *where]) == 0
    assert capsys.readouterr().out == (f"experiment intr already finished; nothing to resume (see "
                                       f"`rftui show intr --workdir {finished}`)\n")
    assert main(["ctl", "intr", "stop", *where]) == 2
    assert capsys.readouterr().err == (f"rftui: `rftui ctl intr stop` needs a run id (see "
                                       f"`rftui ctl intr ls --workdir {finished}`)\n")
    assert main(["watch", "intr", *where]) == 2  # pytest's stdout is no terminal
    assert capsys.readouterr().err == (
        "rftui: `rftui watch` needs a terminal (stdin and stdout are not both one); without one, use "
        f"`rftui show intr --workdir {finished}` for the leaderboard or `rftui ctl intr ls --workdir {finished}`\n")


@pytest.mark.parametrize("command", [["show", "intt"], ["ctl", "intt", "ls"], ["resume", "intt"]])
def test_a_mistyped_experiment_name_gets_the_closest_one(finished, capsys, command):
    assert main([*command, "--workdir", str(finished)]) == 2
    assert capsys.readouterr().err == (f"rftui: no experiment 'intt' in {finished} (did you mean 'intr'?); "
                                       f"list them with `ls {finished}`, or pass --workdir where it was created\n")
    assert main(["show", "zzzz", "--workdir", str(finished)]) == 2
    assert "did you mean" not in capsys.readouterr().err


def test_open_experiment_itself_names_the_closest_experiment(finished):
    """The did-you-mean is open_experiment's own: every caller (each command, the API) gets it."""
    from rftui.engine.setup import open_experiment
    from rftui.errors import ExperimentError

    with pytest.raises(ExperimentError) as caught:
        open_experiment("intt", finished)
    assert str(caught.value) == (f"no experiment 'intt' in {finished} (did you mean 'intr'?); list them with "
                                 f"`ls {finished}`, or pass --workdir where it was created")
