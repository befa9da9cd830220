"""Numbers written as text in the Python API are read as numbers, as a config file's are; clone edits of the
run's model and hooks are refused with the reason."""
from __future__ import annotations

import json

import pytest
import yaml

from rftui import Experiment, List, Range, RFGridSearch, RFLoraConfig, RFModelConfig, RFRandomSearch, RFSFTConfig
from rftui.config.expand import expand
from rftui.config.problems import ConfigError
from rftui.config.validate import coerced_search, validate_knobs, validate_search
from rftui.config.yaml_config import parse_experiment
from rftui.engine.store import Store

ROWS = [{"instruction": f"q{i}", "response": f"a{i}"} for i in range(16)]


def _text_config(**lora):
    return RFModelConfig(
        model_name="rftui/tiny-llama",
        peft_config=RFLoraConfig(**{"r": "8", "lora_alpha": "16", "lora_dropout": "0.0", "target_modules": ["q_proj"],
                                    **lora}),
        training_args=RFSFTConfig(per_device_train_batch_size="4", max_steps="4", learning_rate="1e-3",
                                  logging_steps="1", gradient_checkpointing=False),
        generation_config={"max_new_tokens": "4"})


def test_run_fit_trains_and_stores_numbers_written_as_text(tmp_path):
    config = _text_config()
    experiment = Experiment("strnum", workdir=tmp_path)
    experiment.run_fit(RFGridSearch(config), None, ROWS, ROWS[:4], num_chunks=2, seed=1, quiet=True)
    info = experiment.get_runs_info()
    assert info[["status", "reason", "total_steps", "steps_done"]].to_dict("records") == [
        {"status": "completed", "reason": None, "total_steps": 4, "steps_done": 4}]
    assert list(experiment.get_results()["step"]) == [1, 2, 3, 4]
    knobs = info["config"][0]
    assert (knobs["max_steps"], knobs["per_device_train_batch_size"], knobs["lora.r"]) == (4, 4, 8)
    assert type(knobs["max_steps"]) is int and type(knobs["learning_rate"]) is float and knobs["learning_rate"] == 1e-3
    assert knobs["generation.max_new_tokens"] == 4 and knobs["lora.lora_dropout"] == 0.0
    # what PEFT was given: the adapter saved with rank 8 and alpha 16
    adapter = json.loads((experiment.exp.root / "adapters" / "r1" / "adapter_config.json").read_text())
    assert (adapter["r"], adapter["lora_alpha"]) == (8, 16)
    stored = yaml.safe_load((experiment.exp.root / "experiment.yaml").read_text())["runs"][0]
    assert stored["training"]["max_steps"] == 4 and type(stored["training"]["max_steps"]) is int
    assert stored["lora"]["r"] == 8 and stored["generation"]["max_new_tokens"] == 4
    store = Store.open(experiment.exp.state_db, readonly=True)
    try:
        spec = store.list_runs()[0]["spec"]
    finally:
        store.close()
    assert spec["training"]["learning_rate"] == 1e-3 and spec["lora"]["r"] == 8 and spec["knobs"]["max_steps"] == 4
    # the user's own objects are not changed
    assert config["training_args"].kwargs["max_steps"] == "4" and config["peft_config"].kwargs["r"] == "8"


def test_a_wrong_text_value_is_refused_before_the_experiment_is_created(tmp_path):
    experiment = Experiment("strbad", workdir=tmp_path / "runs")
    with pytest.raises(ConfigError) as raised:
        experiment.run_fit(RFGridSearch(_text_config(r="eight")), None, ROWS, num_chunks=2, quiet=True)
    assert [str(p) for p in raised.value.problems] == [
        "configs.peft_config.r: expected an integer, got str 'eight' — write `r` as an integer"]
    assert not (tmp_path / "runs").exists()


def test_text_numbers_in_lists_ranges_dicts_and_random_search_are_read_as_numbers():
    group = RFRandomSearch(RFModelConfig(
        model_name="m",
        training_args={"learning_rate": Range("1e-5", "1e-3", log=True), "max_steps": List(["4", "8"])},
        peft_config=[RFLoraConfig(r=List(["8", "16"]), target_modules=["q_proj"]), {"r": "4", "lora_alpha": "8"}],
        generation_config={"max_new_tokens": "4", "top_p": "0.9"}), num_runs="3", seed="7")
    coerced = coerced_search(group)
    model = coerced.configs
    assert model["training_args"]["learning_rate"] == Range(1e-5, 1e-3, dtype=float, log=True)
    assert model["training_args"]["max_steps"] == List([4, 8])
    assert model["peft_config"] == List([RFLoraConfig(r=List([8, 16]), target_modules=["q_proj"]),
                                         {"r": 4, "lora_alpha": 8}])
    assert model["generation_config"] == {"max_new_tokens": 4, "top_p": 0.9}
    assert (coerced.num_runs, coerced.seed) == (3, 7)
    assert validate_search(coerced) == []
    runs = expand(coerced, space_checked=True)
    assert len(runs) == 3
    for run in runs:
        assert run.training["max_steps"] in (4, 8) and 1e-5 <= run.training["learning_rate"] <= 1e-3
        assert run.lora["r"] in (4, 8, 16) and run.generation == {"max_new_tokens": 4, "top_p": 0.9}
    # an int Range written as text samples ints, as Range(1, 4) does
    assert coerced_search(RFModelConfig(model_name="m", peft_config=RFLoraConfig(r=Range("1", "4"))))[
        "peft_config"].kwargs["r"] == Range(1, 4)


def test_a_random_search_counts_a_value_written_as_text_and_as_a_number_once():
    group = RFRandomSearch(RFModelConfig(model_name="m", training_args=RFSFTConfig(max_steps=List(["4", 4]))),
                           num_runs=2)
    assert [p.message for p in validate_search(coerced_search(group))] == [
        "random search asks for 2 distinct configs, but the search space has only 1"]


def test_text_numbers_in_the_api_and_in_a_config_file_give_the_same_runs(tmp_path):
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    file_spec = parse_experiment(
        "name: x\nmodel: rftui/tiny-llama\ndata: {train: train.jsonl}\n"
        "training: {per_device_train_batch_size: '4', max_steps: '4', learning_rate: 1e-3, logging_steps: '1',"
        " gradient_checkpointing: false}\n"
        "lora: {r: '8', lora_alpha: '16', lora_dropout: '0.0', target_modules: [q_proj]}\n"
        "generation: {max_new_tokens: '4'}\n", base_dir=tmp_path)
    api_run = expand(coerced_search(RFGridSearch(_text_config())))[0]
    file_run = file_spec.runs[0]
    assert (api_run.training, api_run.lora, api_run.generation) == (file_run.training, file_run.lora,
                                                                      file_run.generation)
    assert api_run.training["max_steps"] == 4 and api_run.lora["r"] == 8


# ---------------------------------------------------------------- clone edits of the run's model and hooks

@pytest.mark.parametrize("knob", ["model_name", "tokenizer", "model_kwargs.torch_dtype", "tokenizer_kwargs.use_fast"])
def test_a_clone_edit_of_the_model_says_a_clone_keeps_its_sources_model(knob):
    [problem] = validate_knobs({knob: "gpt2"})
    assert problem.path == knob
    assert problem.message == (f"`{knob}` cannot be changed by a clone: a clone trains its source run's model and "
                               "tokenizer, loaded as the source's were; only training arguments, lora.* and "
                               "generation.* can change")
    assert "RFModelConfig(model_name=List([...]))" in problem.hint


@pytest.mark.parametrize("knob,what", [("formatting_func", "formatting function"),
                                       ("compute_metrics", "metrics function")])
def test_a_clone_edit_of_a_hook_says_a_clone_keeps_its_sources_function(knob, what):
    assert [str(p) for p in validate_knobs({knob: "mod:fn"})] == [
        f"{knob}: `{knob}` cannot be changed by a clone: a clone keeps its source run's {what}; only training "
        "arguments, lora.* and generation.* can change — to use another function, start a new experiment with it"]


def test_a_bare_lora_or_generation_name_in_a_clone_edit_names_the_knob():
    assert [p.hint for p in validate_knobs({"lora_alpha": 16, "top_p": 0.9})] == [
        "`lora_alpha` is a lora knob: write lora.lora_alpha", "`top_p` is a generation knob: write generation.top_p"]


def test_ctl_clone_and_the_clone_dialog_refuse_model_name_with_the_reason(tmp_path, capsys):
    from engine_helpers import fake_experiment

    from rftui.cli import main
    from rftui.ui.clone_dialog import check_edits

    fake_experiment(tmp_path).store.close()
    assert main(["ctl", "exp", "clone", "r2", "--set", "model_name=gpt2", "--workdir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rftui: clone r2: refused: bad edit: model_name: `model_name` cannot be changed by a "
                          "clone: a clone trains its source run's model")
    assert "did you mean" not in err
    edits, problems = check_edits("model_name: gpt2\nlearning_rate: 0.001\n", {"learning_rate": 0.001}, False,
                                  {"lora": {"r": 8}, "training": {}})
    assert edits == {"model_name": "gpt2"}
    assert [p.split(":")[0] for p in problems] == ["model_name"]
    assert "cannot be changed by a clone" in problems[0]
