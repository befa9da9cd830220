"""The command line refuses bad arguments before anything is created (exit 2, a message naming the fix),
keeps training when its output is closed, and exits 1 when a run failed."""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine_helpers import drive, fake_experiment

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_configs"
SMOKE = str(SAMPLES / "smoke.yaml")


def rftui(*args, cwd=None, timeout=120, stdin=subprocess.DEVNULL):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "rftui", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout, env=env, stdin=stdin)


def refused(result, *needles):
    out = result.stdout + result.stderr
    assert result.returncode == 2, out
    assert "Traceback" not in out, out
    for needle in needles:
        assert needle in result.stderr, result.stderr


# ---------------------------------------------------------------------- 1. --device cuda without a GPU

def test_device_cuda_without_a_gpu_exits_2_and_creates_nothing(tmp_path):
    from rftui.engine.options import cuda_visible

    if cuda_visible():
        pytest.skip("a CUDA device is visible here")
    workdir = tmp_path / "runs"
    for command in (["run", SMOKE, "--no-ui", "--device", "cuda", "--workdir", str(workdir)],
                    ["resume", "smoke", "--no-ui", "--device", "cuda", "--workdir", str(workdir)]):
        refused(rftui(*command), "--device: no CUDA device visible", "use --device cpu or auto")
    assert not workdir.exists()


def test_device_check_does_not_import_torch_without_a_driver():
    code = ("import sys; from rftui.engine.pool import no_gpu_driver; "
            "from rftui.engine.options import device_problem; "
            "p = device_problem('cuda', cli=True); "
            "print(no_gpu_driver(), p is not None, 'torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    driverless, problem, torch_loaded = result.stdout.split()
    if driverless == "True":
        assert problem == "True" and torch_loaded == "False"


# ---------------------------------------------------------------------- 2. --name follows the YAML name rule

@pytest.mark.parametrize("name", ["a/b", "..", ".", "my exp", "", "-x", "x" * 101])
def test_bad_experiment_names_exit_2_with_the_run_usage(tmp_path, name):
    workdir = tmp_path / "runs"
    result = rftui("run", SMOKE, "--no-ui", f"--name={name}", "--workdir", str(workdir))
    refused(result, "usage: rftui run", "argument --name: experiment name", "e.g. --name chatqa-lite")
    if len(name) <= 100:
        assert f"experiment name {name!r} must be letters, digits, '.', '_' or '-'" in result.stderr
    assert not workdir.exists()


# ---------------------------------------------------------------------- 3. a closed stdout does not lose the experiment

def test_headless_keeps_training_quietly_when_stdout_is_closed(tmp_path):
    controller = fake_experiment(tmp_path, num_chunks=2, max_steps=4)

    class ClosingPipe(io.StringIO):
        """Takes one line, then behaves like a pipe whose reader (`head -1`) has exited."""

        def write(self, text):
            if self.getvalue():
                raise BrokenPipeError(32, "Broken pipe")
            return super().write(text)

        def isatty(self):
            return False

    from rftui.headless import run_headless

    stream = ClosingPipe()
    code = run_headless(controller, stream=stream, first_events=controller.start())
    assert code == 0
    assert stream.getvalue().count("\n") == 1
    statuses = {row["status"] for row in controller.store.list_runs()}
    assert statuses == {"completed"} and controller.store.get_meta("status") == "finished"


def test_run_piped_into_head_trains_to_the_end_without_a_traceback(tmp_path):
    workdir = tmp_path / "runs"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "rftui", "run", SMOKE, "--no-ui", "--no-tracking",
                             "--workdir", str(workdir)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, env=env)
    first = proc.stdout.readline()  # what `head -1` reads before it exits
    proc.stdout.close()
    _, err = proc.communicate(timeout=300)
    err = err.decode()
    assert b"experiment smoke" in first
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert "output closed; training goes on" in err
    shown = json.loads(rftui("show", "smoke", "--json", "--workdir", str(workdir)).stdout)
    assert {run["status"] for run in shown["runs"]} == {"completed"}


# ---------------------------------------------------------------------- 5. failed runs make exit code 1

def test_run_exits_1_and_names_the_failed_runs(tmp_path):
    config = tmp_path / "no_model.yaml"  # every run fails when its worker asks the hook for its model
    (tmp_path / "no_model.py").write_text("def make(config):\n    raise RuntimeError('no model for q_prj')\n")
    text = (SAMPLES / "smoke.yaml").read_text().replace("model: {name: rftui/tiny-llama}",
                                                        "model: {name: rftui/tiny-llama, create: no_model.py:make}")
    text = text.replace("path: data/support.jsonl", f"path: {SAMPLES / 'data' / 'support.jsonl'}")
    config.write_text(text)
    workdir = tmp_path / "runs"
    result = rftui("run", str(config), "--no-ui", "--no-tracking", "--workdir", str(workdir), timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert f"rftui: 2 of 2 runs failed (r1, r2); see why with `rftui show smoke --workdir {workdir}`" in result.stderr
    assert "q_prj" in result.stdout  # the leaderboard's failure reasons


def test_failed_runs_turn_a_clean_exit_of_either_front_end_into_1(tmp_path, capsys):
    from rftui.cli import _failed_runs_code

    controller = fake_experiment(tmp_path, num_chunks=2, max_steps=4)
    drive(controller)
    controller.close()
    assert _failed_runs_code(controller, 0) == 0  # every run completed
    controller.store.update_run("r2", status="failed", reason="boom")
    assert _failed_runs_code(controller, 130) == 130  # an interrupt keeps its code
    assert _failed_runs_code(controller, 0) == 1
    err = capsys.readouterr().err
    assert "1 of 2 runs failed (r2)" in err and "rftui show exp" in err


# ---------------------------------------------------------------------- 6. conflicting and invalid engine options

def test_no_tracking_with_a_tracking_uri_is_refused(tmp_path):
    result = rftui("run", SMOKE, "--no-tracking", "--tracking-uri", "sqlite:///x.db", "--workdir", str(tmp_path / "r"))
    refused(result, "usage: rftui run", "--no-tracking and --tracking-uri contradict each other; choose one")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("command", ["run", "show", "ctl", "watch"])
def test_an_empty_workdir_is_refused(tmp_path, command):
    args = {"run": [SMOKE], "show": ["smoke"], "ctl": ["smoke", "ls"], "watch": ["smoke"]}[command]
    result = rftui(command, *args, "--workdir", "", cwd=tmp_path)
    refused(result, f"usage: rftui {command}", "argument --workdir: the experiments directory is empty")
    assert not (tmp_path / "rftui-runs").exists()


def test_an_unknown_tracking_uri_scheme_is_refused_from_the_flag_and_the_config(tmp_path):
    result = rftui("run", SMOKE, "--tracking-uri", "bogus://x", "--workdir", str(tmp_path / "r"))
    refused(result, "argument --tracking-uri: unknown tracking URI scheme 'bogus:'", "sqlite:///")
    config = tmp_path / "tracking.yaml"
    text = (SAMPLES / "smoke.yaml").read_text().replace("path: data/support.jsonl",
                                                        f"path: {SAMPLES / 'data' / 'support.jsonl'}")
    config.write_text(text + "tracking_uri: 'bogus://x'\n")
    line = len(text.splitlines()) + 1
    result = rftui("run", str(config), "--no-ui", "--workdir", str(tmp_path / "r"))
    refused(result, f"{config}:{line}: tracking_uri: unknown tracking URI scheme 'bogus:'")
    assert not (tmp_path / "r").exists()


def test_known_tracking_uris_pass_the_check():
    from rftui.engine.options import tracking_uri_problem

    for uri in ("sqlite:///tmp/mlflow.db", "file:///tmp/mlruns", "file:mlruns", "http://localhost:5000",
                "https://mlflow.example.com", "databricks", "databricks://profile", "databricks-uc",
                "postgresql+psycopg2://u:p@host/db", "mysql://u@host/db", "mlruns", "/tmp/mlruns", "./mlruns"):
        assert tracking_uri_problem(uri) is None, uri
    for uri in ("bogus://x", "htp://host", ""):
        assert tracking_uri_problem(uri) is not None, uri


# ---------------------------------------------------------------------- 7. small ones

def test_config_paths_that_are_no_files_say_what_they_are(tmp_path):
    refused(rftui("plan", os.devnull), f"config file {os.devnull} is empty or not a regular file")
    refused(rftui("run", str(tmp_path), "--workdir", str(tmp_path / "r")), f"config file {tmp_path} is a directory")
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    refused(rftui("plan", str(empty)), f"config file {empty} is empty")
    assert not (tmp_path / "r").exists()


def test_workers_0_prints_the_run_usage(tmp_path):
    result = rftui("run", SMOKE, "--workers", "0", "--workdir", str(tmp_path / "r"))
    refused(result, "usage: rftui run", "argument --workers: must be ≥ 1, got 0")
    assert not result.stderr.startswith("usage: rftui [-h] COMMAND")
    refused(rftui("run", SMOKE, "--workers", "two"), "argument --workers: expected an integer, got 'two'")


def test_ctl_ls_refuses_a_run_id(tmp_path):
    refused(rftui("ctl", "X", "ls", "r1", "--workdir", str(tmp_path)), "`rftui ctl X ls` takes no run id", "(got r1)")


def test_resume_of_a_finished_experiment_with_json_prints_json(tmp_path):
    controller = fake_experiment(tmp_path, num_chunks=2, max_steps=4)
    drive(controller)
    controller.close()
    controller.store.close()
    result = rftui("resume", "exp", "--json", "--workdir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    event = json.loads(lines[0])
    assert event["event"] == "ExperimentFinished" and event["name"] == "exp" and event["counts"] == {"completed": 2}
    assert "already finished" in result.stderr
    plain = rftui("resume", "exp", "--workdir", str(tmp_path))
    assert plain.returncode == 0 and "already finished; nothing to resume" in plain.stdout


def test_ctrl_c_while_starting_names_the_resume_command(tmp_path, monkeypatch, capsys):
    import rftui.engine.assemble
    from rftui.cli import main

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(rftui.engine.assemble, "make_controller", interrupted)
    code = main(["run", SMOKE, "--no-ui", "--no-tracking", "--workdir", str(tmp_path)])
    assert code == 130
    err = capsys.readouterr().err
    assert f"rftui: interrupted; continue with `rftui resume smoke --workdir {tmp_path}`" in err


def test_ctrl_c_while_the_workers_start_checkpoints_and_hints(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "rftui", "run", SMOKE, "--no-ui", "--no-tracking",
                             "--workdir", str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True, env=env)
    deadline = time.monotonic() + 120
    started = tmp_path / "smoke" / "logs" / "worker-0.log"  # the pool is starting: past experiment creation
    while not started.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the experiment finished before the interrupt arrived")
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert f"resume smoke --workdir {tmp_path}`" in out + err  # stdout once the progress lines run


def test_watch_without_a_terminal_is_refused(tmp_path):
    controller = fake_experiment(tmp_path, num_chunks=2, max_steps=4)
    controller.store.close()
    result = rftui("watch", "exp", "--workdir", str(tmp_path))
    refused(result, "`rftui watch` needs a terminal", "rftui show exp")


def test_show_into_a_closed_pipe_exits_quietly(tmp_path):
    controller = fake_experiment(tmp_path, num_chunks=2, max_steps=4)
    controller.store.close()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "rftui", "show", "exp", "--workdir", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env)
    proc.stdout.close()  # the reader (`| head`, `| true`) is gone before rftui writes
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 141, err
    assert err.decode() == ""
