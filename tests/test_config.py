"""Config language: expansion, labels, random search, YAML = Python API, validation messages."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from rftui import List, Range, RFGridSearch, RFLoraConfig, RFModelConfig, RFRandomSearch, RFSFTConfig
from rftui.config.expand import expand, format_value
from rftui.config.problems import ConfigError
from rftui.config.validate import validate_knobs, validate_search
from rftui.config.yaml_config import load_experiment_file, parse_experiment

SAMPLES = Path(__file__).resolve().parent.parent / "sample_configs"


def cookbook_group():
    peft = List([
        RFLoraConfig(r=8, lora_alpha=16, lora_dropout=0.1, target_modules=["q_proj", "v_proj"], bias="none"),
        RFLoraConfig(r=32, lora_alpha=64, lora_dropout=0.1,
                     target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], bias="none"),
    ])

    def config(lr):
        return RFModelConfig(model_name="rftui/tiny-llama", peft_config=peft,
                             training_args=RFSFTConfig(learning_rate=lr, max_steps=128, per_device_train_batch_size=4))

    return RFGridSearch(configs=List([config(1e-3), config(1e-4)]), trainer_type="SFT")


def test_cookbook_grid_gives_four_runs_in_cookbook_order():
    runs = expand(cookbook_group())
    assert [r.run_id for r in runs] == ["r1", "r2", "r3", "r4"]
    assert [r.label for r in runs] == ["r=8 lr=1e-3", "r=32 lr=1e-3", "r=8 lr=1e-4", "r=32 lr=1e-4"]
    assert [(r.lora["r"], r.training["learning_rate"]) for r in runs] == [
        (8, 1e-3), (32, 1e-3), (8, 1e-4), (32, 1e-4)]
    assert runs[1].lora["target_modules"] == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert runs[0].knobs["lora.lora_alpha"] == 16 and runs[0].knobs["learning_rate"] == 1e-3


def test_valid_searches_have_no_problems():
    assert validate_search(cookbook_group()) == []
    assert validate_search(random_group(1)) == []
    assert [p.path for p in validate_search(RFGridSearch(configs=List([])))] == ["configs"]


def test_single_config_with_list_knobs_expands_in_the_same_order():
    config = RFModelConfig(
        model_name="m", training_args=RFSFTConfig(learning_rate=List([1e-3, 1e-4])),
        peft_config=List([RFLoraConfig(r=8), RFLoraConfig(r=32)]))
    assert [r.label for r in expand(RFGridSearch(config))] == [
        "r=8 lr=1e-3", "r=32 lr=1e-3", "r=8 lr=1e-4", "r=32 lr=1e-4"]


def test_grid_product_of_three_axes():
    config = RFModelConfig(model_name="m", training_args=RFSFTConfig(
        learning_rate=List([1e-3, 1e-4]), weight_decay=List([0.0, 0.1, 0.01])),
        peft_config=RFLoraConfig(r=List([4, 8])))
    runs = expand(RFGridSearch(config))
    assert len(runs) == 12
    assert len({r.label for r in runs}) == 12
    assert runs[0].label == "r=4 lr=1e-3 wd=0" and runs[-1].label == "r=8 lr=1e-4 wd=0.01"


def random_group(seed):
    config = RFModelConfig(model_name="m", training_args=RFSFTConfig(
        learning_rate=Range(1e-5, 1e-3, log=True), per_device_train_batch_size=List([2, 4, 8])),
        peft_config=RFLoraConfig(r=Range(4, 64, dtype=int), lora_alpha=List([16, 32])))
    return RFRandomSearch(configs=config, num_runs=6, seed=seed, trainer_type="SFT")


def test_random_search_is_reproducible_by_seed():
    first = [(r.training, r.lora) for r in expand(random_group(3))]
    again = [(r.training, r.lora) for r in expand(random_group(3))]
    other = [(r.training, r.lora) for r in expand(random_group(4))]
    assert first == again
    assert first != other
    assert len(first) == 6
    for training, lora in first:
        assert 1e-5 <= training["learning_rate"] <= 1e-3
        assert isinstance(lora["r"], int) and 4 <= lora["r"] <= 64
        assert training["per_device_train_batch_size"] in (2, 4, 8)


def test_format_value_is_compact():
    assert [format_value(v) for v in (1e-3, 5e-4, 3.2e-4, 0.1, 32, ["q_proj", "v_proj"], "org/model")] == [
        "1e-3", "5e-4", "3.2e-4", "0.1", "32", "q,v", "model"]


def test_sample_configs_expand():
    lite = load_experiment_file(SAMPLES / "chatqa_lite.yaml")
    assert [r.label for r in lite.runs] == ["r=8 lr=1e-3", "r=32 lr=1e-3", "r=8 lr=1e-4", "r=32 lr=1e-4"]
    assert lite.num_chunks == 4 and lite.data.train["select"] == [0, 128]
    assert len(load_experiment_file(SAMPLES / "random_search.yaml").runs) == 8
    assert len(load_experiment_file(SAMPLES / "smoke.yaml").runs) == 2


def test_yaml_and_python_api_expand_to_identical_runs():
    spec = importlib.util.spec_from_file_location("chatqa_lite_sample", SAMPLES / "chatqa_lite.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # defines config_group; training runs only under __main__
    api_runs = expand(module.config_group)
    yaml_runs = load_experiment_file(SAMPLES / "chatqa_lite.yaml").runs
    assert [r.run_id for r in api_runs] == [r.run_id for r in yaml_runs]
    assert [r.label for r in api_runs] == [r.label for r in yaml_runs]
    for api, from_yaml in zip(api_runs, yaml_runs):
        assert api.lora == from_yaml.lora
        assert api.training == from_yaml.training
        assert api.generation == from_yaml.generation
        assert api.model_name == from_yaml.model_name


BAD_CONFIGS = [
    # (yaml body after the common header, expected path, expected line, words in the message)
    ("training:\n  learning_rat: 1.0e-3\n", "training.learning_rat", 5, "did you mean `learning_rate`"),
    ("training:\n  learning_rate: 0\n", "training.learning_rate", 5, "must be > 0"),
    ("training:\n  max_steps: 0\n", "training.max_steps", 5, "must be ≥ 1"),
    ("training:\n  per_device_train_batch_size: four\n", "training.per_device_train_batch_size", 5, "expected an integer"),
    ("num_chunks: 0\n", "num_chunks", 4, "must be ≥ 1"),
    ("trainer: PPO\n", "trainer", 4, "unknown trainer type"),
    ("grid:\n  lora:\n    - {r: 8}\n    - {r: 0}\n", "grid.lora[1].r", 7, "must be ≥ 1"),
    ("random:\n  num_runs: 2\n  training:\n    learning_rate: {low: 1.0e-3, high: 1.0e-5}\n",
     "random.training.learning_rate", 7, "low"),
    ("grid:\n  training:\n    learning_rate: {low: 1.0e-5, high: 1.0e-3}\n",
     "grid.training.learning_rate", 6, "needs random search"),
    ("lora:\n  lora_dropout: 1.5\n", "lora.lora_dropout", 5, "[0, 1)"),
    ("modle: {name: x}\n", "modle", 4, "did you mean `model`"),
    # null where the argument has no null default: the run would crash later
    ("grid:\n  training:\n    learning_rate: [null, 3.0e-4]\n", "grid.training.learning_rate[0]", 6,
     "expected a number, got null"),
    ("training:\n  learning_rate: null\n", "training.learning_rate", 5, "expected a number, got null — "),
    ("lora: {r: null}\n", "lora.r", 4, "expected an integer, got null"),
    ("training:\n  max_steps: ~\n", "training.max_steps", 5, "leave it out to use the default"),
    ("generation: {num_samples: null}\n", "generation.num_samples", 4, "expected an integer, got null"),
    # repeated keys: YAML would keep the last one without a word
    ("seed: 0\nseed: 1\n", "seed", 5, "duplicate key `seed`: given on line 4 and again on line 5"),
    ("training:\n  max_steps: 4\n  learning_rate: 1.0e-3\n  max_steps: 8\n", "training.max_steps", 7,
     "given on line 5 and again on line 7"),
    # non-finite numbers
    ("grid:\n  training:\n    learning_rate: [.inf, 3.0e-4]\n", "grid.training.learning_rate[0]", 6,
     "expected a finite number, got inf"),
    ("grid:\n  training:\n    learning_rate: [.nan]\n", "grid.training.learning_rate[0]", 6,
     "expected a finite number, got nan"),
    ("training:\n  weight_decay: -.inf\n", "training.weight_decay", 5, "expected a finite number, got -inf"),
    ("random:\n  num_runs: 2\n  training:\n    learning_rate: {low: 1.0e-5, high: .inf}\n",
     "random.training.learning_rate", 7, "Range bounds must be finite numbers"),
    # ui.keymap binding ids are checked like every other key
    ("ui: {keymap: {stopp: ctrl+s}}\n", "ui.keymap.stopp", 4, "unknown binding id `stopp` — did you mean `stop`?"),
    ("ui:\n  keymap:\n    stop: 5\n", "ui.keymap.stop", 6, 'quote it: stop: "5"'),
    # integers of the experiment itself get a fix hint like arguments do
    ("seed: abc\n", "seed", 4, "expected an integer, got str 'abc' — write `seed` as an integer, e.g. seed: 42"),
    ("num_chunks: two\n", "num_chunks", 4, "— write `num_chunks` as an integer, e.g. num_chunks: 4"),
    ("random:\n  num_runs: many\n  training: {learning_rate: [1.0e-3]}\n", "random.num_runs", 5,
     "— write `num_runs` as an integer, e.g. num_runs: 8"),
    # more runs than the space holds, placed at the YAML key, with the YAML word for a grid
    ("random:\n  num_runs: 3\n  training: {learning_rate: [1.0e-3, 2.0e-3]}\n", "random.num_runs", 5,
     "space has only 2 — use num_runs=2 or fewer, a `grid:` section to run all 2"),
    ("random:\n  num_runs: 2\n  seed: abc\n  training: {learning_rate: [1.0e-3]}\n", "random.seed", 6,
     "— write `seed` as an integer, e.g. seed: 42"),
]
HEADER = "name: bad\nmodel: {name: rftui/tiny-llama}\ndata: {train: {path: %s}}\n"


@pytest.mark.parametrize("body,path,line,words", BAD_CONFIGS)
def test_bad_config_names_path_and_line(tmp_path, body, path, line, words):
    data = tmp_path / "rows.jsonl"
    data.write_text('{"instruction": "hi", "response": "hello"}\n')
    with pytest.raises(ConfigError) as info:
        parse_experiment(HEADER % data + body, "bad.yaml", tmp_path)
    matching = [p for p in info.value.problems if p.path == path]
    assert matching, [str(p) for p in info.value.problems]
    assert matching[0].line == line
    assert words in str(matching[0])
    assert str(matching[0]).startswith(f"bad.yaml:{line}: {path}: ")


def test_every_problem_is_reported_in_one_pass(tmp_path):
    text = ("name: bad\nmodel: {name: m}\ndata: {train: {path: missing.jsonl}}\n"
            "training:\n  learning_rate: -1\n  max_stepz: 4\n")
    with pytest.raises(ConfigError) as info:
        parse_experiment(text, "bad.yaml", tmp_path)
    assert [(p.path, p.line) for p in info.value.problems] == [
        ("data.train.path", 3), ("training.learning_rate", 5), ("training.max_stepz", 6)]
    assert "missing.jsonl does not exist" in str(info.value.problems[0])


def test_trainer_is_case_insensitive_in_yaml(tmp_path):
    data = tmp_path / "rows.jsonl"
    data.write_text('{"instruction": "hi", "response": "hello"}\n')
    spec = parse_experiment(HEADER % data + "trainer: sft\n", "ok.yaml", tmp_path)
    assert spec.trainer_type == "SFT"
    # read as the Python API reads RFGridSearch(..., trainer_type=" sft "): one rule for both
    spec = parse_experiment(HEADER % data + "trainer: ' sft '\n", "ok.yaml", tmp_path)
    assert spec.trainer_type == "SFT" == RFGridSearch(configs=[], trainer_type=" sft ").trainer_type


def test_malformed_yaml_names_the_line(tmp_path):
    with pytest.raises(ConfigError) as info:
        parse_experiment("name: x\nmodel: [unclosed\n", "broken.yaml", tmp_path)
    assert info.value.problems[0].line is not None and "malformed YAML" in str(info.value)


def test_api_validation_paths():
    group = RFGridSearch(configs=List([RFModelConfig(
        model_name="m", training_args=RFSFTConfig(learning_rate=List([1e-3, 0.0])),
        peft_config=List([RFLoraConfig(r=8), RFLoraConfig(r=0, lora_alhpa=4)]))]), trainer_type="XYZ")
    problems = {(p.path, p.message.split(",")[0]) for p in validate_search(group)}
    assert ("trainer_type", "unknown trainer type 'XYZ'") in problems
    assert ("configs[0].training_args.learning_rate[1]", "must be > 0") in problems
    assert ("configs[0].peft_config[1].r", "must be ≥ 1") in problems
    assert ("configs[0].peft_config[1].lora_alhpa", "unknown lora argument `lora_alhpa`") in problems


def test_single_run_knobs_validate_like_config_files():
    assert validate_knobs({"learning_rate": 5e-4, "lora.r": 16}) == []
    problems = validate_knobs({"learning_rate": "fast", "lora.r": 0, "lora.lora_alph": 4, "model_kwargs.token": "x"})
    assert [p.path for p in problems] == ["learning_rate", "lora.r", "lora.lora_alph", "model_kwargs.token"]
    assert "did you mean `lora_alpha`" in str(problems[2])
    assert "cannot be changed" in str(problems[3])
