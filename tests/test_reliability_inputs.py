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


def hook_file(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_text(text)
    return path


def formatting(tmp: Path, ref: str) -> Path:
    """smoke.yaml with `data.formatting: ref` (on line 12)."""
    return config(tmp, **{"select: [300, 304]}": f"select: [300, 304]}}\n  formatting: {ref}"})


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
                            r"train data \(data file .*rows\.jsonl\) row 3 \(line 4\): has no field 'response' \(it has "
                            r"'instruction'\); every row needs 'instruction' and 'response'"),
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
                           r"workdir .*a-file/runs is inside .*a-file, and .*a-file is a file, not a directory"),
    "name-exists": (lambda t, w: (existing_experiment(w), config(t), run(t, "--workdir", w))[2],
                    r"experiment 'smoke' already exists .*`rftui resume smoke --workdir \S+`.*--new"),
    # null, repeated keys, non-finite numbers, keymap ids, integers and names: refused before anything is made
    "null-in-grid": (lambda t, w: (config(t, **{"[1.0e-3, 3.0e-4]": "[null, 3.0e-4]"}), run(t, "--workdir", w))[1],
                     r"experiment\.yaml:31: grid\.training\.learning_rate\[0\]: expected a number, got null"),
    "null-lora-rank": (lambda t, w: (config(t, **{"{r: 4,": "{r: null,"}), run(t, "--workdir", w))[1],
                       r"experiment\.yaml:23: lora\.r: expected an integer, got null"),
    "duplicate-key": (lambda t, w: (config(t, **{"\nseed: 0\n": "\nseed: 0\nseed: 1\n"}), run(t, "--workdir", w))[1],
                      r"experiment\.yaml:6: seed: duplicate key `seed`: given on line 5 and again on line 6"),
    "infinite-learning-rate": (lambda t, w: (config(t, **{"[1.0e-3, 3.0e-4]": "[.inf, 3.0e-4]"}),
                                             run(t, "--workdir", w))[1],
                               r"experiment\.yaml:31: grid\.training\.learning_rate\[0\]: expected a finite number"),
    "keymap-typo": (lambda t, w: (config(t, **{"eval: {num_samples: 2}": "eval: {num_samples: 2}\n"
                                               "ui: {keymap: {stopp: ctrl+s}}"}), run(t, "--workdir", w))[1],
                    r"experiment\.yaml:28: ui\.keymap\.stopp: unknown binding id `stopp` — did you mean `stop`"),
    "seed-not-an-integer": (lambda t, w: (config(t, **{"\nseed: 0\n": "\nseed: abc\n"}), run(t, "--workdir", w))[1],
                            r"experiment\.yaml:5: seed: expected an integer, got str 'abc' — write `seed` as an "
                            r"integer, e.g\. seed: 42"),
    "name-too-long": (lambda t, w: (config(t, **{"name: smoke": "name: " + "a" * 300}), run(t, "--workdir", w))[1],
                      r"experiment\.yaml:2: name: experiment name is too long: 300 characters, at most 100"),
    "num-chunks-over-batches-line": (lambda t, w: (config(t, **{"num_chunks: 2": "num_chunks: 5"}),
                                                   run(t, "--workdir", w))[1],
                                     r"experiment\.yaml:4: num_chunks: run r1 has only 4 optimizer steps"),
    # a data source that does not fit its file: placed at its key in the config
    "select-past-the-data": (lambda t, w: (config(t, **{"select: [300, 304]": "select: [300, 3000]"}),
                                           run(t, "--workdir", w))[1],
                             r"experiment\.yaml:11: data\.eval\.select: `select: \[300, 3000\]` is out of range: "
                             r"data file .*support\.jsonl has only 648 rows — use an end of at most 648"),
    "select-past-the-data-plan": (lambda t, w: (config(t, **{"select: [0, 16]": "select: [0, 1000]"}),
                                                ["plan", t / "experiment.yaml"])[1],
                                  r"experiment\.yaml:10: data\.train\.select: `select: \[0, 1000\]` is out of range"),
    "select-true": (lambda t, w: (config(t, **{"select: [0, 16]": "select: [true, 16]"}), run(t, "--workdir", w))[1],
                    r"experiment\.yaml:10: data\.train\.select: expected \[start, end\) with 0 ≤ start < end, "
                    r"got \[True, 16\]"),
    "split-of-a-file": (lambda t, w: (config(t, **{"select: [0, 16]": "split: test, select: [0, 16]"}),
                                      run(t, "--workdir", w))[1],
                        r"experiment\.yaml:10: data\.train\.split: `split` applies to `hub:` datasets only"),
    # what every run's worker would refuse when loading the model: said at its line instead
    "model-dtype-typo": (lambda t, w: (config(t, **{"model: {name: rftui/tiny-llama}":
                                                    "model: {name: rftui/tiny-llama, kwargs: {torch_dtype: float17}}"}),
                                       run(t, "--workdir", w))[1],
                         r"experiment\.yaml:7: model\.kwargs\.torch_dtype: unknown model dtype 'float17'; use one of "
                         r"auto, float32, bfloat16, float16"),
    "model-type-unknown": (lambda t, w: (config(t, **{"model: {name: rftui/tiny-llama}":
                                                      "model: {name: rftui/tiny-llama, type: seq2seq}"}),
                                         ["plan", t / "experiment.yaml"])[1],
                           r"experiment\.yaml:7: model\.type: unknown model type 'seq2seq' — use causal_lm"),
    "model-dir-not-a-model": (lambda t, w: ((t / "notes").mkdir(), (t / "notes" / "a.txt").write_text("x"),
                                            config(t, **{"{name: rftui/tiny-llama}": f"{{name: {t / 'notes'}}}"}),
                                            run(t, "--workdir", w))[3],
                              r"Cannot load model '.*/notes': that directory has no config\.json, so it holds no "
                              r"model saved with save_pretrained"),
    "tokenizer-dir-not-a-tokenizer": (lambda t, w: ((t / "tok").mkdir(), config(
        t, **{"{name: rftui/tiny-llama}": f"{{name: rftui/tiny-llama, tokenizer: {t / 'tok'}}}"}),
        run(t, "--workdir", w))[2], r"Cannot load tokenizer '.*/tok': that directory has no tokenizer_config\.json"),
    # a formatting function that cannot be loaded: refused at data.formatting, with the hint for its cause
    "formatting-function-missing": (lambda t, w: (hook_file(t, "fmt.py", "def other(row):\n    return row\n"),
                                                  formatting(t, f"{t / 'fmt.py'}:nope"), run(t, "--workdir", w))[2],
                                    r"experiment\.yaml:12: data\.formatting: hook `.*fmt\.py:nope`: `nope` is not a "
                                    r"function in .*fmt\.py — name a function that the module defines, as "
                                    r"module:function or file\.py:function; it defines `other`$"),
    "formatting-file-not-found": (lambda t, w: (formatting(t, "hooks/fmt.py:fmt"), run(t, "--workdir", w))[1],
                                  r"experiment\.yaml:12: data\.formatting: hook 'hooks/fmt\.py:fmt' file "
                                  r".*/hooks/fmt\.py does not exist \(relative to .*\)"),
    "formatting-module-not-found": (lambda t, w: (formatting(t, "no_such_hooks_module:fmt"), run(t, "--workdir", w))[1],
                                    r"data\.formatting: hook 'no_such_hooks_module:fmt' module `no_such_hooks_module` "
                                    r"cannot be found: it is not installed in this Python environment and there is no "
                                    r".*/no_such_hooks_module\.py"),
    "formatting-module-raises-on-import": (
        lambda t, w: (hook_file(t, "fmt.py", "import json\n\nLIMIT = int('ten')\n\ndef fmt(row):\n    return row\n"),
                      formatting(t, f"{t / 'fmt.py'}:fmt"), run(t, "--workdir", w))[2],
        r"experiment\.yaml:12: data\.formatting: hook `.*fmt\.py:fmt`: importing .*fmt\.py raised ValueError: "
        r"invalid literal for int\(\) with base 10: 'ten' \(.*/fmt\.py, line 3\) — fix the module so that it "
        r"imports; the function cannot be loaded until it does$"),
    "formatting-module-syntax-error": (
        lambda t, w: (hook_file(t, "fmt.py", "def fmt(row):\n    return row +\n"),
                      formatting(t, f"{t / 'fmt.py'}:fmt"), run(t, "--workdir", w))[2],
        r"data\.formatting: hook `.*fmt\.py:fmt`: importing .*fmt\.py raised SyntaxError: .*\(.*/fmt\.py, line 2\) "
        r"— fix the module so that it imports"),
    "formatting-module-missing-dependency": (  # named as module:function, found next to the config file
        lambda t, w: (hook_file(t, "fmt_needs_dep.py", "import json\nimport no_such_dependency_xyz\n"),
                      formatting(t, "fmt_needs_dep:fmt"), run(t, "--workdir", w))[2],
        r"data\.formatting: hook `fmt_needs_dep:fmt`: importing fmt_needs_dep raised ModuleNotFoundError: No module "
        r"named 'no_such_dependency_xyz' \(.*/fmt_needs_dep\.py, line 2\) — fix the module"),
    # one that loads but raises on a row fails the runs using it: in a config file that is every run, so the
    # experiment is refused, naming the row
    "formatting-function-raises-on-a-row": (
        lambda t, w: (hook_file(t, "fmt.py", "def fmt(row):\n    raise ValueError('cannot format this one')\n"),
                      formatting(t, f"{t / 'fmt.py'}:fmt"), run(t, "--workdir", w))[2],
        r"train data \(data file .*support\.jsonl\) row \d+ \(line \d+\): formatting function /\S*/fmt\.py:fmt raised "
        r"ValueError: cannot format this one"),
    "empty-dataset-plan": (lambda t, w: (config(t, data=rows_file(t, [])), ["plan", t / "experiment.yaml"])[1],
                           r"rows\.jsonl is empty"),
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


@pytest.mark.parametrize("edit,message", [
    ("learning_rate", "--set learning_rate needs a value: KNOB=VALUE"),
    ("learning_rate=", "--set learning_rate= needs a value: KNOB=VALUE"),
    ("learning_rate=null", "learning_rate: expected a number, got null"),
    ("learning_rate=~", "learning_rate: expected a number, got null"),
    ("lora.r=null", "lora.r: expected an integer, got null"),
])
def test_clone_edit_without_a_value_is_refused_and_adds_no_run(tmp_path, edit, message):
    from rftui.engine.setup import open_experiment

    workdir = tmp_path / "runs"
    existing_experiment(workdir)
    result = cli("ctl", "smoke", "clone", "r1", "--set", edit, "--workdir", workdir, timeout=120)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr.startswith("rftui: clone r1: refused: bad edit: ")
    assert message in result.stderr
    _, _, store = open_experiment("smoke", str(workdir), readonly=True)
    try:
        assert [row["run_id"] for row in store.list_runs()] == ["r1", "r2"]
    finally:
        store.close()


def test_api_clone_with_a_null_value_is_refused(tmp_path):
    from rftui import Experiment
    from rftui.errors import OpRefused

    workdir = tmp_path / "runs"
    existing_experiment(workdir)
    experiment = Experiment("smoke", workdir=workdir)
    with pytest.raises(OpRefused, match=r"learning_rate: expected a number, got null"):
        experiment.clone_run("r1", {"learning_rate": None})
    assert experiment.clone_run("r1", {"max_length": None}) == "r3"  # null is SFTConfig's own default here
