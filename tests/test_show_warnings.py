"""`rftui show` lists the warnings state.db kept (a headless run under nohup is read back with it): one line per
warning naming its runs in the text, a `warnings` list in `--json`."""
from __future__ import annotations

import json
import sqlite3

from engine_helpers import trained_experiment
from rftui.cli import main as cli_main
from rftui.report import leaderboard_text

FP16 = "fp16 is ignored on cpu; training in fp32"
MLFLOW = "MLflow logging stopped: the tracking server is gone"


def show(tmp_path, capsys, *extra) -> str:
    assert cli_main(["show", "exp", "--workdir", str(tmp_path), *extra]) == 0
    return capsys.readouterr().out


def test_show_lists_each_warning_once_with_its_runs_in_text_and_json(tmp_path, capsys):
    ctl = trained_experiment(tmp_path)
    for message, run_id in [(f"run r1: {FP16}", "r1"), (MLFLOW, None), (f"run r2: {FP16}", "r2")]:
        ctl.store.add_warning(message, run_id)
    created = {w["run_id"]: w["created_at"] for w in ctl.store.warnings()}

    lines = show(tmp_path, capsys).splitlines()
    assert sorted(line.split()[1] for line in lines[3:5]) == ["r1", "r2"]  # the leaderboard, then the warnings
    assert lines[5:] == [f"warning (r1, r2): {FP16}", f"warning: {MLFLOW}"]
    data = json.loads(show(tmp_path, capsys, "--json"))
    assert list(data) == ["experiment", "workdir", "status", "runs", "warnings"]  # a key added, none changed
    assert data["warnings"] == [
        {"message": FP16, "runs": ["r1", "r2"], "first_at": created["r1"]},
        {"message": MLFLOW, "runs": [], "first_at": created[None]},
    ]
    assert cli_main(["ctl", "exp", "ls", "--json", "--workdir", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out)["warnings"] == data["warnings"]  # `ctl ls` is `show`


def test_warnings_come_after_the_failure_reasons():
    run = {"id": "r1", "label": "lr=1e-3", "status": "failed", "parent": None, "warm_start": False,
           "steps_done": 2, "total_steps": 4, "chunks_done": 1, "num_chunks": 2, "metrics": {}}
    data = {"experiment": "exp", "workdir": "/w", "status": "finished", "runs": [run],
            "warnings": [{"message": FP16, "runs": ["r1"], "first_at": 1.0}]}
    assert leaderboard_text(data, {"r1": "out of memory"}).splitlines()[-2:] == [
        "  r1: out of memory", f"warning r1: {FP16}"]


def test_an_experiment_without_warnings_or_without_the_table_shows_nothing_more(tmp_path, capsys):
    ctl = trained_experiment(tmp_path)
    lines = show(tmp_path, capsys).splitlines()
    assert len(lines) == 5 and not any("warning" in line for line in lines)  # title, header, rule, 2 runs
    assert json.loads(show(tmp_path, capsys, "--json"))["warnings"] == []
    ctl.store.close()
    conn = sqlite3.connect(ctl.exp.state_db)
    conn.execute("DROP TABLE warnings")  # a state.db from before the table
    conn.commit()
    conn.close()
    assert show(tmp_path, capsys).splitlines() == lines
    assert json.loads(show(tmp_path, capsys, "--json"))["warnings"] == []
