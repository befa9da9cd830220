"""Bad inputs: one clear message naming the problem, exit code 2, no traceback, and nothing written."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from reliability_helpers import ENV, SAMPLES, cli, smoke_text, tree_digest

DATA = SAMPLES / "data" / "support.jsonl"


def config(tmp: Path, text: str | None = None, *, data: Path | None = None, **replacements: str) -> Path:
    """smoke.yaml (absolute data path) with textual replacements; `data` points both splits at another file."""
    text = text if text is not None else smoke_text(max_steps=4, num_chunks=2)
    if data is not None:
        text = text.replace(str(DATA), str(data)).replace("select: [0, 16], ", "").replace("select: [300, 304]", "")
    for old, new in replacements.items():
        assert old in text, old
        text = text.replace(old, new)
    path = tmp / "experiment.yaml"
    path.write_text(text)
    return path


def rows_file(tmp: Path, rows: list[dict]) -> Path:
    path = tmp / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def existing_experiment(workdir: Path, damage: bool = False) -> None:
    """A real experiment directory (created without training); optionally with garbage for its state.db."""
    from dataclasses import replace

    from rftui.config.yaml_config import load_experiment_file
    from rftui.data.sources import load_rows
    from rftui.engine.setup import create_experiment

    spec = load_experiment_file(SAMPLES / "smoke.yaml")
    spec = replace(spec, workdir=str(workdir))
    base = Path(spec.data.base_dir)
    _, _, store = create_experiment(spec, load_rows(spec.data.train, base), load_rows(spec.data.eval, base))
    store.close()
    if damage:
        (workdir / "smoke" / "state.db").write_bytes(bytes(range(256)) * 64)


def run(tmp, *extra):
    return ["run", tmp / "experiment.yaml", "--no-ui", "--no-tracking", *extra]


SMOKE_ROW = {"instruction": "where is my order", "response": "on its way"}

# id -> (prepare(tmp, workdir) -> argv, regex the message must match)
CASES = {
    "malformed-yaml": (lambda t, w: (config(t, "name: x\ntraining: [1, 2\n  lr: 3\n"), run(t, "--workdir", w))[1],
                       r"experiment\.yaml:3: malformed YAML"),
    "unknown-key": (lambda t, w: (config(t, max_steps="max_stepz"), run(t, "--workdir", w))[1],
                    r"training\.max_stepz: unknown training argument `max_stepz` — did you mean `max_steps`"),
    "unknown-top-level-key": (lambda t, w: (config(t, **{"\nseed: 0\n": "\nseed: 0\nnum_chunk: 2\n"}),
                                            run(t, "--workdir", w))[1], r"experiment\.yaml:6: num_chunk: unknown key `num_chunk` — did you mean `num_chunks`"),
    "wrong-type": (lambda t, w: (config(t, **{"max_steps: 4": "max_steps: four"}), run(t, "--workdir", w))[1],
                   r"training\.max_steps: expected an integer, got str 'four'"),
    "missing-data-file": (lambda t, w: (config(t, data=t / "nowhere.jsonl"), run(t, "--workdir", w))[1],
                          r"data file .*nowhere\.jsonl does not exist"),
    "rows-missing-fields": (lambda t, w: (config(t, data=rows_file(t, [SMOKE_ROW] * 3 + [{"instruction": "hi"}]
                                                                   + [SMOKE_ROW] * 12)),
                                          run(t, "--workdir", w))[1],
                            r"train data \(data file .*rows\.jsonl\) row 3: formatting function .* needs field "
                            r"'response', which the row does not have"),
    "empty-dataset": (lambda t, w: (config(t, data=rows_file(t, [])), run(t, "--workdir", w))[1],
                      r"rows\.jsonl is empty"),
    "num-chunks-over-batches": (lambda t, w: (config(t, **{"num_chunks: 2": "num_chunks: 5"}),
                                              run(t, "--workdir", w))[1],
                                r"run r1 has only 4 optimizer steps .* but num_chunks=5"),
    "unknown-model-offline": (lambda t, w: (config(t, **{"rftui/tiny-llama": "nobody/no-such-model"}),
                                            run(t, "--workdir", w))[1],
                              r"Cannot load model 'nobody/no-such-model'.*offline"),
    "unwritable-workdir": (lambda t, w: ((t / "a-file").write_text("x"), config(t),
                                         run(t, "--workdir", t / "a-file" / "runs"))[2],
                           r"workdir .*a-file/runs is not writable"),
    "name-exists": (lambda t, w: (existing_experiment(w), config(t), run(t, "--workdir", w))[2],
                    r"experiment 'smoke' already exists .*`rftui resume smoke`.*--new"),
}
for command in (["show", "smoke"], ["resume", "smoke", "--no-ui"], ["ctl", "smoke", "ls"], ["ctl", "smoke", "stop", "r1"],
                ["watch", "smoke"]):
    CASES[f"damaged-state-db-{'-'.join(command[:3 if command[0] == 'ctl' else 1])}"] = (
        lambda t, w, command=command: (existing_experiment(w, damage=True), [*command, "--workdir", w])[1],
        r"state\.db at .*smoke/state\.db is damaged")
    CASES[f"missing-experiment-{'-'.join(command[:3 if command[0] == 'ctl' else 1])}"] = (
        lambda t, w, command=command: [command[0], "nope", *command[2:], "--workdir", w],
        r"no experiment 'nope' in .*; list them")


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_gets_one_clear_message_exit_2_and_nothing_written(tmp_path, case):
    prepare, pattern = CASES[case]
    workdir = tmp_path / "runs"
    argv = prepare(tmp_path, workdir)
    before = tree_digest(tmp_path)
    result = cli(*argv, timeout=120, env={**ENV, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    message = result.stderr.strip()
    assert message.startswith("rftui: ")
    assert re.search(pattern, message, re.S), message
    assert tree_digest(tmp_path) == before  # no experiment directory, no workdir, no state.db change
    assert workdir.exists() == (case.startswith(("name-exists", "damaged")))
