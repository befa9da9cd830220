"""Config values the argument rules must refuse (or keep accepting): nulls, non-finite numbers, repeated
keys, keymap binding ids, over-long names, clone edits without a value."""
from __future__ import annotations

import math
from pathlib import Path

import pytest

from rftui import List, Range, RFGridSearch, RFLoraConfig, RFModelConfig, RFRandomSearch, RFSFTConfig
from rftui.config.expand import expand, format_value
from rftui.config.keymap import BINDING_IDS
from rftui.config.problems import ConfigError
from rftui.config.validate import validate_knobs, validate_search
from rftui.config.yaml_config import load_experiment_file, parse_experiment
from rftui.config.yaml_lines import DuplicateKey, duplicate_keys
from rftui.engine.ops import parse_edits
from rftui.engine.setup import plan_steps

HEADER = "name: ok\nmodel: {name: rftui/tiny-llama}\ndata: {train: {path: %s}}\n"


def parse(tmp_path: Path, body: str, header: str = HEADER):
    data = tmp_path / "rows.jsonl"
    data.write_text('{"instruction": "hi", "response": "hello"}\n')
    return parse_experiment(header % data + body, "exp.yaml", tmp_path)


def problems_of(tmp_path: Path, body: str, header: str = HEADER) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(tmp_path, body, header)
    return [str(p) for p in info.value.problems]


# ---------------------------------------------------------------------------- null


def test_null_is_kept_where_the_library_default_is_null(tmp_path):
    spec = parse(tmp_path, "training: {max_length: null, eval_steps: null, report_to: null}\n"
                           "lora: {r: 8, target_modules: null}\n"
                           "generation: {temperature: null, top_k: null}\n")
    run = spec.runs[0]
    assert run.training["max_length"] is None and run.training["eval_steps"] is None
    assert run.lora["target_modules"] is None and run.generation["temperature"] is None
    assert validate_knobs({"max_length": None, "generation.top_p": None, "lora.target_modules": None}) == []


def test_null_is_refused_where_the_argument_needs_a_value(tmp_path):
    found = problems_of(tmp_path, "training: {learning_rate: null, seed: null, num_train_epochs: ~}\n"
                                  "lora: {r: null, lora_alpha: null, lora_dropout: null}\n"
                                  "generation: {max_new_tokens: null, do_sample: null, num_samples: null}\n")
    assert found == [
        "exp.yaml:4: training.learning_rate: expected a number, got null — write `learning_rate` as a number, "
        "or leave it out to use the default",
        "exp.yaml:4: training.seed: expected an integer, got null — write `seed` as an integer, "
        "or leave it out to use the default",
        "exp.yaml:4: training.num_train_epochs: expected a number, got null — write `num_train_epochs` as a number, "
        "or leave it out to use the default",
        "exp.yaml:5: lora.r: expected an integer, got null — write `r` as an integer, or leave it out to use the default",
        "exp.yaml:5: lora.lora_alpha: expected an integer, got null — write `lora_alpha` as an integer, "
        "or leave it out to use the default",
        "exp.yaml:5: lora.lora_dropout: expected a number, got null — write `lora_dropout` as a number, "
        "or leave it out to use the default",
        "exp.yaml:6: generation.max_new_tokens: expected an integer, got null — write `max_new_tokens` as an integer, "
        "or leave it out to use the default",
        "exp.yaml:6: generation.do_sample: expected true or false, got null — write `do_sample` as true or false, "
        "or leave it out to use the default",
        "exp.yaml:6: generation.num_samples: expected an integer, got null — write `num_samples` as an integer, "
        "or leave it out to use the default",
    ]


def test_null_in_a_lora_list_and_the_python_api_is_refused(tmp_path):
    found = problems_of(tmp_path, "grid:\n  lora:\n    - {r: 8}\n    - {r: null}\n")
    assert found == ["exp.yaml:7: grid.lora[1].r: expected an integer, got null — write `r` as an integer, "
                     "or leave it out to use the default"]
    group = RFGridSearch(RFModelConfig(model_name="m", training_args=RFSFTConfig(learning_rate=List([None, 1e-3])),
                                       peft_config=RFLoraConfig(r=None)))
    assert [(p.path, p.message) for p in validate_search(group)] == [
        ("configs.training_args.learning_rate[0]", "expected a number, got null"),
        ("configs.peft_config.r", "expected an integer, got null")]


def test_null_clone_edits_are_refused_by_knob():
    assert [str(p) for p in validate_knobs({"learning_rate": None, "lora.r": None})] == [
        "learning_rate: expected a number, got null — write `learning_rate` as a number, or leave it out to use the default",
        "lora.r: expected an integer, got null — write `r` as an integer, or leave it out to use the default"]


@pytest.mark.parametrize("item,problem", [
    ("learning_rate", "--set learning_rate needs a value: KNOB=VALUE"),
    ("learning_rate=", "--set learning_rate= needs a value: KNOB=VALUE"),
    ("learning_rate=  ", "--set learning_rate= needs a value: KNOB=VALUE"),
])
def test_clone_edit_text_without_a_value_is_refused(item, problem):
    assert parse_edits([item]) == ({}, [problem])


@pytest.mark.parametrize("item", ["learning_rate=null", "learning_rate=~", "learning_rate=Null"])
def test_clone_edit_text_with_null_reaches_validation_as_null(item):
    edits, problems = parse_edits([item])
    assert edits == {"learning_rate": None} and problems == []
    assert [p.message for p in validate_knobs(edits)] == ["expected a number, got null"]


def test_clone_edits_with_values_still_parse():
    assert parse_edits(["learning_rate=5e-4", "lora.r=16", "training.max_length=null"]) == (
        {"learning_rate": "5e-4", "lora.r": 16, "max_length": None}, [])
    assert parse_edits({"learning_rate": 5e-4, "max_length": None}) == ({"learning_rate": 5e-4, "max_length": None}, [])
    assert parse_edits({"lr_scheduler_type": " "}) == ({}, ["lr_scheduler_type: needs a value"])


# ---------------------------------------------------------------------------- non-finite numbers


def test_non_finite_numbers_are_refused_everywhere(tmp_path):
    found = problems_of(tmp_path, "training: {max_grad_norm: .inf}\ngeneration: {temperature: .nan}\n"
                                  "grid:\n  training:\n    learning_rate: [.inf, 3.0e-4]\n")
    assert found == [
        "exp.yaml:4: training.max_grad_norm: expected a finite number, got inf — write `max_grad_norm` as a finite number",
        "exp.yaml:5: generation.temperature: expected a finite number, got nan — write `temperature` as a finite number",
        "exp.yaml:8: grid.training.learning_rate[0]: expected a finite number, got inf — "
        "write `learning_rate` as a finite number",
    ]
    assert [p.message for p in validate_knobs({"learning_rate": "1e999"})] == ["expected a finite number, got inf"]
    group = RFRandomSearch(RFModelConfig(model_name="m", training_args=RFSFTConfig(
        learning_rate=Range(1e-5, math.inf, log=True))), num_runs=2)
    assert [p.message for p in validate_search(group)] == ["Range bounds must be finite numbers, got 1e-05 and inf"]


def test_labels_of_non_finite_values_do_not_crash():
    assert [format_value(v) for v in (math.inf, -math.inf, math.nan)] == ["inf", "-inf", "nan"]
    config = RFModelConfig(model_name="m", training_args=RFSFTConfig(learning_rate=List([math.inf, 1e-3])))
    assert [r.label for r in expand(RFGridSearch(config))] == ["lr=inf", "lr=1e-3"]


# ---------------------------------------------------------------------------- repeated keys


def test_duplicate_keys_name_the_key_and_both_lines(tmp_path):
    found = problems_of(tmp_path, "seed: 0\nseed: 1\ntraining: {max_steps: 4, max_steps: 8}\n")
    assert found == [
        "exp.yaml:5: seed: duplicate key `seed`: given on line 4 and again on line 5 — "
        "keep one of them (YAML would silently use the last)",
        "exp.yaml:6: training.max_steps: duplicate key `max_steps`: given on line 6 and again on line 6 — "
        "keep one of them (YAML would silently use the last)",
    ]


def test_same_key_in_different_mappings_and_aliases_are_not_duplicates():
    text = ("base: &b {r: 8, lora_alpha: 16}\nlora: *b\ngrid:\n  lora:\n    - {r: 4}\n    - {r: 8}\n"
            "other:\n  <<: *b\n  r: 32\n")
    assert duplicate_keys(text) == []
    assert duplicate_keys("a:\n  x: 1\na:\n  x: 2\n") == [DuplicateKey("a", 1, 3)]
    assert duplicate_keys("a: [1, 2\n") == []  # malformed YAML is reported by the loader


# ---------------------------------------------------------------------------- ui.keymap


def test_keymap_binding_ids_are_the_uis():
    from textual.binding import Binding

    from rftui.ui.app import RftuiApp
    from rftui.ui.clone_dialog import CloneDialog
    from rftui.ui.confirm import ConfirmDialog
    from rftui.ui.details import DetailsScreen
    from rftui.ui.help import HelpScreen
    from rftui.ui.main_screen import MainScreen
    from rftui.ui.quit_dialog import QuitDialog

    ui_ids = {b.id for cls in (RftuiApp, MainScreen, CloneDialog, ConfirmDialog, DetailsScreen, HelpScreen, QuitDialog)
              for b in cls.BINDINGS if isinstance(b, Binding) and b.id}
    assert ui_ids == set(BINDING_IDS)


def test_keymap_accepts_known_ids_and_refuses_misspelled_ones(tmp_path):
    spec = parse(tmp_path, "ui: {keymap: {stop: ctrl+x, help: 'f1,question_mark'}}\n")
    assert spec.ui["keymap"] == {"stop": "ctrl+x", "help": "f1,question_mark"}
    found = problems_of(tmp_path, "ui:\n  keymap:\n    stopp: ctrl+s\n    zzz: x\n    delete: ''\n")
    assert found[0] == "exp.yaml:6: ui.keymap.stopp: unknown binding id `stopp` — did you mean `stop`?"
    assert found[1].startswith("exp.yaml:7: ui.keymap.zzz: unknown binding id `zzz` — known binding ids: stop, resume,")
    assert found[2] == "exp.yaml:8: ui.keymap.delete: expected keys such as ctrl+x, got '' — " \
                       "write a key or comma-separated keys, e.g. delete: ctrl+x"
    assert problems_of(tmp_path, "ui: {keymap: [stop]}\n") == [
        "exp.yaml:4: ui.keymap: expected a mapping of binding ids to keys, got list — e.g. keymap: {stop: ctrl+x}"]


# ---------------------------------------------------------------------------- names, integers, num_chunks


def test_an_over_long_name_says_it_is_too_long(tmp_path):
    name = "a" * 300
    found = problems_of(tmp_path, "", header=f"name: {name}\n" + HEADER.split("\n", 1)[1])
    assert found == ["exp.yaml:1: name: experiment name is too long: 300 characters, at most 100 — "
                     "use a shorter name, e.g. name: chatqa-lite"]
    assert parse(tmp_path, "", header="name: " + "a" * 100 + "\n" + HEADER.split("\n", 1)[1]).name == "a" * 100
    assert "must be letters, digits" in problems_of(tmp_path, "", header="name: a/b\n" + HEADER.split("\n", 1)[1])[0]


def test_num_chunks_over_the_step_count_names_its_line(tmp_path):
    data = tmp_path / "rows.jsonl"
    data.write_text('{"instruction": "hi", "response": "hello"}\n')
    config = tmp_path / "exp.yaml"
    config.write_text(HEADER % data + "num_chunks: 8\ntraining: {max_steps: 4}\n")
    spec = load_experiment_file(config)
    with pytest.raises(ConfigError) as info:
        plan_steps(spec, 1)  # what `rftui plan`, `rftui run` and run_fit check
    assert str(info.value.problems[0]) == (f"{config}:4: num_chunks: run r1 has only 4 optimizer steps (1 training "
                                           "row) but num_chunks=8 — lower num_chunks, add data, or raise max_steps")
