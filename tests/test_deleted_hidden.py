"""Delete hides a run in every text leaderboard (`rftui show`, `rftui ctl ls`, the headless and API end-of-run
summary, the TUI's exit): its row and the warnings only it gave are gone, a line counts it and says where it is
listed; `rftui show --json` (and `ctl ls --json`) keeps it, status `deleted`, with every warning."""
from __future__ import annotations

import io
import json

from engine_helpers import trained_experiment
from rftui.cli import main as cli_main
from rftui.control import submit
from rftui.headless import HeadlessView
from rftui.report import leaderboard_text, show_data

FP16 = "fp16 is ignored on cpu; training in fp32"
ONLY_R2 = "a warning only the deleted run gave"
MLFLOW = "MLflow logging stopped: the tracking server is gone"


def _deleted_r2(tmp_path):
    ctl = trained_experiment(tmp_path)
    for message, run_id in [(f"run r1: {FP16}", "r1"), (f"run r2: {FP16}", "r2"), (f"run r2: {ONLY_R2}", "r2"),
                            (MLFLOW, None)]:
        ctl.store.add_warning(message, run_id)
    submit(ctl.exp, ctl.spec, ctl.store, "delete", "r2", {})
    assert ctl.store.get_run("r2")["status"] == "deleted"
    return ctl


def _table_ids(lines: list[str]) -> list[str]:
    return [line.split()[1] for line in lines[3:] if line[:1].isdigit()]


def test_show_and_ctl_ls_hide_a_deleted_run_and_its_own_warnings_and_count_it(tmp_path, capsys):
    ctl = _deleted_r2(tmp_path)
    assert cli_main(["show", "exp", "--workdir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert _table_ids(lines) == ["r1"]  # r2 was listed, status deleted, ranked last
    assert lines[4:] == [f"(1 deleted run hidden; `rftui show exp --json --workdir {tmp_path}` lists it)",
                         f"warning r1: {FP16}",  # was (r1, r2)
                         f"warning: {MLFLOW}"]  # ONLY_R2's line is gone; one about no run stays
    assert cli_main(["ctl", "exp", "ls", "--workdir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines() == lines
    ctl.store.close()


def test_show_json_keeps_deleted_runs_and_all_their_warnings(tmp_path, capsys):
    _deleted_r2(tmp_path).store.close()
    assert cli_main(["show", "exp", "--json", "--workdir", str(tmp_path)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert list(data) == ["experiment", "workdir", "status", "runs", "warnings"]  # no key added to the contract
    assert {run["id"]: run["status"] for run in data["runs"]} == {"r1": "completed", "r2": "deleted"}
    assert [(w["message"], w["runs"]) for w in data["warnings"]] == [
        (FP16, ["r1", "r2"]), (ONLY_R2, ["r2"]), (MLFLOW, [])]


def test_the_headless_and_api_summary_says_how_many_deleted_runs_it_hides(tmp_path):
    ctl = _deleted_r2(tmp_path)
    out = io.StringIO()
    view = HeadlessView(ctl, out, json_lines=False, tty=False)
    view.finish()
    lines = out.getvalue().strip().splitlines()
    assert _table_ids(lines) == ["r1"]
    # the warnings of the hidden run were listed (`warning (r1, r2)`, `warning r2: ...`) though its row was not
    assert lines[4:] == [f"(1 deleted run hidden; `rftui show exp --json --workdir {tmp_path}` lists it)",
                         f"warning r1: {FP16}", f"warning: {MLFLOW}"]
    # the TUI's exit prints the same document (show_data without deleted runs): hiding twice counts once
    hidden = show_data(ctl.exp, ctl.store, include_deleted=False)
    assert hidden["deleted_hidden"] == 1 and leaderboard_text(hidden).splitlines() == lines
    ctl.store.close()


def test_two_hidden_runs_are_counted_in_the_plural():
    runs = [{"id": f"r{i}", "label": "x", "status": status, "parent": None, "warm_start": False, "steps_done": 4,
             "total_steps": 4, "chunks_done": 2, "num_chunks": 2, "metrics": {}}
            for i, status in enumerate(("completed", "deleted", "deleted"), start=1)]
    text = leaderboard_text({"experiment": "exp", "workdir": "/w", "status": "finished", "runs": runs})
    assert text.splitlines()[3:] == ["1  r1  x      completed  4/4    2/2     -     -          -       -",
                                     "(2 deleted runs hidden; `rftui show exp --json --workdir /w` lists them)"]
