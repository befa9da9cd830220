"""The Python config API behaves as RapidFire AI users expect: distinct random-search runs, plain lists,
Range(start, end, dtype), RFRandomSearch's argument order and trainer_type spelling."""
from __future__ import annotations

import random
from pathlib import Path

import pytest

from rftui import List, Range, RFGridSearch, RFLoraConfig, RFModelConfig, RFRandomSearch, RFSFTConfig
from rftui.config.expand import expand
from rftui.config.problems import ConfigError
from rftui.config.validate import validate_search
from rftui.config.yaml_config import parse_experiment


def model(**training) -> RFModelConfig:
    return RFModelConfig(model_name="m", training_args=RFSFTConfig(**training),
                         peft_config=RFLoraConfig(r=8, target_modules=["q_proj", "v_proj"]))


# --------------------------------------------------------------- distinct random-search runs

def test_random_search_runs_are_distinct():
    group = RFRandomSearch(model(learning_rate=List([1e-3, 1e-4, 5e-4])), num_runs=3, seed=0)
    rng = random.Random(0)  # seed 0 draws a repeat among its first three choices
    assert len({rng.choice([1e-3, 1e-4, 5e-4]) for _ in range(3)}) < 3
    rates = [r.training["learning_rate"] for r in expand(group)]
    assert sorted(rates) == [1e-4, 5e-4, 1e-3]
    assert rates == [r.training["learning_rate"] for r in expand(group)]  # still reproducible


def test_random_search_keeps_draw_order_when_nothing_repeats():
    group = RFRandomSearch(model(learning_rate=Range(1e-5, 1e-3, log=True)), num_runs=4, seed=7)
    rng = random.Random(7)
    knob = Range(1e-5, 1e-3, log=True)
    assert [r.training["learning_rate"] for r in expand(group)] == [knob.sample(rng) for _ in range(4)]


def test_asking_for_more_runs_than_distinct_configs_is_an_error():
    group = RFRandomSearch(RFModelConfig(
        model_name="m", training_args=RFSFTConfig(learning_rate=List([1e-3, 1e-4])),
        peft_config=RFLoraConfig(r=Range(1, 3, dtype=int))), num_runs=7)
    expected = ("num_runs: random search asks for 7 distinct configs, but the search space has only 6 — "
                "use num_runs=6 or fewer, RFGridSearch to run all 6, or add choices")
    assert [str(p) for p in validate_search(group)] == [expected]
    with pytest.raises(ConfigError) as info:
        expand(group)
    assert [str(p) for p in info.value.problems] == [expected]
    group.num_runs = 6
    assert validate_search(group) == []
    assert sorted((r.training["learning_rate"], r.lora["r"]) for r in expand(group)) == [
        (1e-4, 1), (1e-4, 2), (1e-4, 3), (1e-3, 1), (1e-3, 2), (1e-3, 3)]


def test_repeated_choices_count_once():
    group = RFRandomSearch(model(learning_rate=List([1e-3, 1e-3, 1e-4])), num_runs=3)
    assert "has only 2" in str(validate_search(group)[0])


def test_a_space_too_big_to_count_gives_up_after_bounded_draws():
    group = RFRandomSearch(model(learning_rate=List([1e-3] * 20_000)), num_runs=2)
    with pytest.raises(ConfigError) as info:
        expand(group)
    assert str(info.value.problems[0]) == ("num_runs: random search found only 1 distinct configs in 1000 draws, "
                                           "2 asked — lower num_runs, or widen the Lists and Ranges")


def test_float_ranges_are_never_too_few():
    group = RFRandomSearch(model(learning_rate=Range(1e-5, 1e-3)), num_runs=50)
    assert validate_search(group) == []
    assert len({r.training["learning_rate"] for r in expand(group)}) == 50


def test_yaml_random_search_with_too_few_configs_is_a_config_error(tmp_path: Path):
    data = tmp_path / "rows.jsonl"
    data.write_text('{"instruction": "hi", "response": "hello"}\n')
    text = (f"name: ok\nmodel: {{name: rftui/tiny-llama}}\ndata: {{train: {{path: {data}}}}}\n"
            "random:\n  num_runs: 3\n  lora: {r: [8, 16]}\n")
    with pytest.raises(ConfigError) as info:
        parse_experiment(text, "exp.yaml", tmp_path)
    assert "asks for 3 distinct configs, but the search space has only 2" in str(info.value)


# --------------------------------------------------------------- plain lists

def test_plain_list_inside_a_config_is_one_literal_value():
    runs = expand(RFGridSearch(model(learning_rate=1e-3)))
    assert [r.lora["target_modules"] for r in runs] == [["q_proj", "v_proj"]]
    runs = expand(RFRandomSearch(model(learning_rate=Range(1e-5, 1e-3)), num_runs=2))
    assert [r.lora["target_modules"] for r in runs] == [["q_proj", "v_proj"]] * 2
    knob = RFModelConfig(model_name="m", peft_config=RFLoraConfig(
        r=8, target_modules=List([["q_proj"], ["q_proj", "v_proj"]])))
    assert [r.lora["target_modules"] for r in expand(RFGridSearch(knob))] == [["q_proj"], ["q_proj", "v_proj"]]


def test_plain_list_of_lora_configs_is_a_choice_like_list():
    loras = [RFLoraConfig(r=8, lora_alpha=16), RFLoraConfig(r=32, lora_alpha=64)]
    plain = RFGridSearch(RFModelConfig(model_name="m", peft_config=loras))
    wrapped = RFGridSearch(RFModelConfig(model_name="m", peft_config=List(loras)))
    assert validate_search(plain) == []
    assert [(r.label, r.lora) for r in expand(plain)] == [(r.label, r.lora) for r in expand(wrapped)] == [
        ("r=8", {"r": 8, "lora_alpha": 16}), ("r=32", {"r": 32, "lora_alpha": 64})]


def test_plain_list_of_model_configs_is_a_choice_like_list():
    configs = [model(learning_rate=1e-3), model(learning_rate=1e-4)]
    for group in (RFGridSearch(configs), configs):
        assert validate_search(group) == []
        assert [r.training["learning_rate"] for r in expand(group)] == [1e-3, 1e-4]
    runs = expand(RFRandomSearch(configs, num_runs=2, seed=1))
    assert sorted(r.training["learning_rate"] for r in runs) == [1e-4, 1e-3]


def test_plain_list_where_a_number_belongs_suggests_list():
    problems = validate_search(RFGridSearch(model(learning_rate=[1e-3, 1e-4], learning_rat=[1, 2])))
    assert [str(p) for p in problems] == [
        "configs.training_args.learning_rate: expected a number, got list [0.001, 0.0001] — "
        "a plain list is one value; to try each, write List([0.001, 0.0001])",
        "configs.training_args.learning_rat: unknown training argument `learning_rat` — "
        "did you mean `learning_rate`?"]
    problems = validate_search(RFGridSearch(RFModelConfig(model_name="m", training_args=[RFSFTConfig()])))
    assert [str(p) for p in problems] == ["configs.training_args: expected RFSFTConfig or a dict, got list — "
                                          "to try several, write List([RFSFTConfig(...), ...])"]


# --------------------------------------------------------------- Range(start, end, dtype)

def test_range_takes_rapidfire_keyword_names():
    knob = Range(start=1e-5, end=1e-3, dtype="float", log=True)
    assert (knob.start, knob.end, knob.low, knob.high, knob.dtype, knob.log) == (1e-5, 1e-3, 1e-5, 1e-3, float, True)
    assert Range(1, 8, "int").dtype is int and Range(1, 8, "int").log is False  # third positional is dtype


def test_range_dtype_is_inferred_from_the_bounds():
    assert Range(1, 8).dtype is int
    assert Range(1, 8.0).dtype is float and Range(1e-5, 1e-3).dtype is float
    assert Range(1, 8, dtype="float").dtype is float and Range(0.0, 3.0, dtype=int).dtype is int
    ints = RFRandomSearch(RFModelConfig(model_name="m", peft_config=RFLoraConfig(r=Range(4, 64))), num_runs=5)
    assert all(type(r.lora["r"]) is int and 4 <= r.lora["r"] <= 64 for r in expand(ints))
    floats = RFRandomSearch(model(num_train_epochs=Range(1, 3.0)), num_runs=5)
    values = [r.training["num_train_epochs"] for r in expand(floats)]
    assert all(type(v) is float and 1 <= v <= 3 for v in values) and any(not v.is_integer() for v in values)


def test_int_range_of_zero_and_one_on_a_float_argument_is_refused():
    group = RFRandomSearch(RFModelConfig(model_name="m", peft_config=RFLoraConfig(lora_dropout=Range(0, 1))),
                           num_runs=2)
    assert [str(p) for p in validate_search(group)] == [
        "configs.peft_config.lora_dropout: Range(0, 1) has two int bounds, so it samples only 0 or 1, but "
        '`lora_dropout` takes a float — write the bounds as floats (0.0, not 0), or dtype="int" if whole '
        "numbers are meant"]
    group.configs.fields["peft_config"] = RFLoraConfig(lora_dropout=Range(0, 0.3))
    assert validate_search(group) == []
    for fine in (Range(0, 1, dtype="float"), Range(0, 1, dtype="int")):
        assert validate_search(RFRandomSearch(model(weight_decay=fine), num_runs=2)) == []
    assert validate_search(RFRandomSearch(model(logging_steps=Range(2, 8)), num_runs=2)) == []


# --------------------------------------------------------------- RFRandomSearch's arguments

def test_random_search_arguments_in_rapidfire_order():
    config = model(learning_rate=Range(1e-5, 1e-3))
    group = RFRandomSearch(config, "SFT", 3, 7)
    assert (group.trainer_type, group.num_runs, group.seed) == ("SFT", 3, 7)
    assert len(expand(group)) == 3
    default = RFRandomSearch(configs=config)
    assert (default.trainer_type, default.num_runs, default.seed) == ("SFT", 1, 42)
    assert validate_search(default) == [] and len(expand(default)) == 1


def test_num_runs_in_trainer_type_place_names_the_order():
    problems = validate_search(RFRandomSearch(model(learning_rate=Range(1e-5, 1e-3)), 8))
    assert [str(p) for p in problems] == [
        "trainer_type: got 8: the second argument of RFRandomSearch is trainer_type (RapidFire AI's order) — "
        'name it: RFRandomSearch(configs, trainer_type="SFT", num_runs=8)']


def test_trainer_type_is_case_insensitive():
    config = model(learning_rate=Range(1e-5, 1e-3))
    for group in (RFGridSearch(model(), trainer_type="sft"), RFRandomSearch(config, trainer_type=" Sft ")):
        assert group.trainer_type == "SFT"
        assert validate_search(group) == []
    assert [str(p) for p in validate_search(RFGridSearch(model(), trainer_type="ppo"))] == [
        "trainer_type: unknown trainer type 'PPO' — use one of: SFT"]


def test_searches_show_what_they_hold():
    lora = RFLoraConfig(r=8)
    grid = RFGridSearch(configs=[RFModelConfig(model_name="m", peft_config=lora)], trainer_type="sft")
    assert repr(grid).startswith("RFGridSearch(configs=List([RFModelConfig({'model_name': 'm', ")
    assert repr(grid).endswith("'peft_config': RFLoraConfig(r=8)})]), trainer_type='SFT')")
    assert repr(RFRandomSearch(List([1, 2]), "SFT", 3, 7)) == (
        "RFRandomSearch(configs=List([1, 2]), trainer_type='SFT', num_runs=3, seed=7)")
