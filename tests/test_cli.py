"""The command line: plan output, user errors (exit 2, no traceback), show --json, ctl."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from engine_helpers import fake_experiment

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_configs"


def rftui(*args, cwd=None, timeout=120):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "rftui", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout, env=env)


def test_plan_lists_the_cookbook_runs_and_checks_the_model_in_seconds():
    code = ("import sys, time; t = time.perf_counter(); from rftui.cli import main; "
            f"rc = main(['plan', {str(SAMPLES / 'chatqa_lite.yaml')!r}]); "
            "print('SECONDS', round(time.perf_counter() - t, 3)); sys.exit(rc)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for label in ("r=8 lr=1e-3", "r=32 lr=1e-3", "r=8 lr=1e-4", "r=32 lr=1e-4"):
        assert any(label in line for line in lines)
    marker, seconds = lines[-1].split()
    assert marker == "SECONDS" and float(seconds) < 30  # torch + PEFT imports and a meta-device model
    assert "128" in result.stdout and "32" in result.stdout  # total steps, steps per chunk


def test_expanding_and_planning_a_config_imports_no_torch():
    code = ("import sys; from rftui.config.yaml_config import load_experiment_file; "
            "from rftui.config.plan import plan_rows; from rftui.engine.setup import plan_steps; "
            f"spec = load_experiment_file({str(SAMPLES / 'chatqa_lite.yaml')!r}); "
            "rows = plan_rows(spec, 512); plan_steps(spec, 512); assert len(rows) == 4; "
            "print('TORCH' if 'torch' in sys.modules or 'trl' in sys.modules else 'NO-TORCH')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["NO-TORCH"]


def test_plan_json_and_random_search():
    result = rftui("plan", str(SAMPLES / "random_search.yaml"), "--json")
    data = json.loads(result.stdout)
    assert len(data["runs"]) == 8
    assert {run["total_steps"] for run in data["runs"]} == {32}
    assert data["runs"][0]["steps_per_chunk"] == 8


def test_three_mistakes_three_messages_exit_2_no_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nmodel: {name: rftui/tiny-llama}\ndata: {train: {path: nowhere.jsonl}}\n"
                   "num_chunks: 0\ntraining:\n  learning_rat: 1.0e-3\n")
    result = rftui("plan", str(bad))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    problems = [line for line in result.stderr.splitlines() if line.startswith("  ")]
    assert len(problems) == 3
    assert problems[0].strip().startswith(f"{bad}:3: data.train.path")
    assert "num_chunks" in problems[1] and ":4:" in problems[1]
    assert "did you mean `learning_rate`" in problems[2]


def test_bad_arguments_and_unknown_experiments_exit_2(tmp_path):
    assert rftui("run", str(SAMPLES / "smoke.yaml"), "--workers", "0").returncode == 2
    for command in (["show", "nope", "--workdir", str(tmp_path)], ["ctl", "nope", "ls", "--workdir", str(tmp_path)]):
        result = rftui(*command)
        assert result.returncode == 2 and "no experiment 'nope'" in result.stderr
        assert "Traceback" not in result.stderr


def test_a_bad_ui_cpu_budget_exits_2_before_anything_is_created(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RFTUI_UI_CPU_BUDGET": "lots"}
    result = subprocess.run([sys.executable, "-m", "rftui", "run", str(SAMPLES / "smoke.yaml"), "--workdir",
                             str(tmp_path / "runs")], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2
    assert "RFTUI_UI_CPU_BUDGET='lots'" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()


def test_ctl_from_a_subprocess_acts_on_a_running_experiment(tmp_path):
    ctl = fake_experiment(tmp_path, num_chunks=2, max_steps=400, step_seconds=0.01)
    ctl.start()
    stop = threading.Event()

    def loop():
        while not stop.is_set() and not ctl.finished:
            ctl.step(0.05)

    thread = threading.Thread(target=loop)
    thread.start()
    try:
        time.sleep(0.5)
        started = time.monotonic()
        result = rftui("ctl", "exp", "stop", "r2", "--workdir", str(tmp_path))
        assert result.returncode == 0, result.stderr
        assert "applied" in result.stdout
        clone = rftui("ctl", "exp", "clone", "r1", "--set", "learning_rate=5e-4", "--workdir", str(tmp_path))
        assert clone.returncode == 0, clone.stderr
        assert "new run r3" in clone.stdout
        refused = rftui("ctl", "exp", "clone", "r1", "--set", "learning_rate=-1", "--workdir", str(tmp_path))
        assert refused.returncode == 2 and "learning_rate" in refused.stderr
        unknown = rftui("ctl", "exp", "stop", "r42", "--workdir", str(tmp_path))
        assert unknown.returncode == 2 and "no run 'r42'" in unknown.stderr
        assert time.monotonic() - started < 30
        deadline = time.monotonic() + 10
        while ctl.runs["r2"].status != "stopped" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ctl.runs["r2"].status == "stopped"
        assert ctl.runs["r3"].parent == "r1" and ctl.runs["r3"].spec.training["learning_rate"] == 5e-4
    finally:
        stop.set()
        thread.join()
        ctl.begin_shutdown()
        while not ctl.finished:
            ctl.step(0.05)
        ctl.close()
    shown = json.loads(rftui("show", "exp", "--json", "--workdir", str(tmp_path)).stdout)
    by_id = {run["id"]: run for run in shown["runs"]}
    assert by_id["r2"]["status"] == "stopped"
    assert by_id["r3"]["parent"] == "r1" and by_id["r3"]["warm_start"] is False
    assert set(shown) == {"experiment", "workdir", "status", "runs", "warnings"} and shown["status"] == "interrupted"
    assert set(by_id["r1"]) == {"id", "label", "status", "reason", "parent", "warm_start", "steps_done",
                                "total_steps", "chunks_done", "num_chunks", "metrics"}
    assert set(by_id["r1"]["metrics"]) == {"loss", "eval_loss", "rougeL", "bleu"}


def test_engine_never_imports_textual():
    code = ("import sys; import rftui.engine.controller, rftui.engine.assemble, rftui.engine.setup, "
            "rftui.config.yaml_config, rftui.config.plan, rftui.tracking.mlflow_sink, rftui.training.host, "
            "rftui.engine.pool, rftui.engine.worker, rftui.headless, rftui.api; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich', 'plotext')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
