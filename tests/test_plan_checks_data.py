"""`rftui plan` loads and formats the data as `rftui run` does: a config that run refuses (exit 2, nothing
created) is refused by plan with the same words, and plan's row count is the rows run would train on."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from rftui.cli import main

SAMPLES = Path(__file__).resolve().parent.parent / "sample_configs"
ROWS = [{"instruction": f"question {i}", "response": f"answer {i}"} for i in range(16)]


def config_for(tmp_path, lines: list[str], data: str = "", train: str | None = None) -> str:
    """smoke.yaml training on `lines` (a JSONL file), with `data` lines added to its data section."""
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(line + "\n" for line in lines))
    text = (SAMPLES / "smoke.yaml").read_text()
    old_train = "  train: {path: data/support.jsonl, select: [0, 16], shuffle_seed: 0}\n"
    assert old_train in text
    text = text.replace(old_train, f"  train: {train or '{path: ' + str(rows) + '}'}\n" + data)
    text = text.replace("path: data/", f"path: {SAMPLES}/data/")
    config = tmp_path / "exp.yaml"
    config.write_text(text)
    return str(config)


def good_lines() -> list[str]:
    return [json.dumps(row) for row in ROWS]


def with_line(number: int, line: str) -> list[str]:
    lines = good_lines()
    lines[number - 1] = line
    return lines


CASES = {
    "malformed JSONL line": (dict(lines=with_line(3, '{{"instruction": "hi", "response": "ho"}')),
                             "line 3: not valid JSON"),
    "response null": (dict(lines=with_line(5, '{"instruction": "hi", "response": null}')),
                      "row 4 (line 5): field 'response' is empty (null)"),
    "row missing a field": (dict(lines=with_line(2, '{"instruction": "hi", "resp": "ho"}')),
                            "has no field 'response'"),
    "a list for a row": (dict(lines=with_line(16, "[1, 2, 3]")),
                         "line 16: expected a JSON object {...} but found a list"),
    "formatting function typo": (dict(lines=good_lines(), data="  formatting: rftui.data.formatting:support_chatt\n"),
                                 "`support_chatt` is not a function in rftui.data.formatting"),
    "prompt field the rows lack": (dict(lines=good_lines(), data="  prompt_field: question\n"),
                                   "has no field 'question'"),
    "hub dataset not cached, offline": (dict(lines=good_lines(), train="{hub: org/nothing}"),
                                        "Hub dataset 'org/nothing' is not cached on this machine and offline mode"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_plan_refuses_what_run_refuses_with_the_same_message(tmp_path, capsys, monkeypatch, case):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    arguments, complaint = CASES[case]
    config = config_for(tmp_path, **arguments)
    assert main(["plan", config]) == 2
    planned = capsys.readouterr()
    assert complaint in planned.err and planned.out == ""
    workdir = tmp_path / "runs"
    assert main(["run", config, "--no-ui", "--no-tracking", "--workdir", str(workdir)]) == 2
    assert capsys.readouterr().err == planned.err
    assert not workdir.exists()


def test_plan_says_too_few_steps_in_run_s_words(tmp_path, capsys):
    config = config_for(tmp_path, good_lines()[:4], data="")  # 4 rows, batch 4: max_steps 4 still gives 4 steps
    text = Path(config).read_text().replace("max_steps: 4", "num_train_epochs: 1")
    Path(config).write_text(text)
    assert main(["plan", config]) == 2
    planned = capsys.readouterr().err
    assert main(["run", config, "--no-ui", "--no-tracking", "--workdir", str(tmp_path / "runs")]) == 2
    assert capsys.readouterr().err == planned
    assert "run r1 has only 1 optimizer step (4 training rows) but num_chunks=2" in planned
