"""fp16 with a model loaded in float16 and float16 weights in training (full fine-tuning, LoRA modules_to_save) fails
at the first optimizer step on a GPU: the config is refused when it is read, at the fp16 setting's path and line."""
from __future__ import annotations

import pytest
import torch

from rftui import Experiment, List, RFGridSearch, RFLoraConfig, RFModelConfig, RFSFTConfig
from rftui.config.problems import ConfigError
from rftui.config.validate import validate_search
from rftui.config.yaml_config import parse_experiment

HEADER = ("name: half\nmodel:\n  name: rftui/tiny-llama\n  kwargs: {%s}\n"
          "data: {train: {path: %s}}\n")


def parse(tmp_path, body: str, kwargs: str = "torch_dtype: float16"):
    data = tmp_path / "rows.jsonl"
    data.write_text('{"instruction": "hi", "response": "hello"}\n')
    return parse_experiment(HEADER % (kwargs, data) + body, "half.yaml", tmp_path)


def refused(tmp_path, body: str, kwargs: str = "torch_dtype: float16"):
    with pytest.raises(ConfigError) as info:
        parse(tmp_path, body, kwargs)
    return info.value.problems


def test_yaml_full_fine_tuning_with_fp16_on_a_float16_model_is_refused_at_training_fp16(tmp_path):
    problems = refused(tmp_path, "training:\n  max_steps: 4\n  fp16: true\nlora: null\n")
    assert [(p.path, p.line, p.file) for p in problems] == [("training.fp16", 8, "half.yaml")]
    text = str(problems[0])
    assert text.startswith("half.yaml:8: training.fp16: fp16 cannot train a model loaded in float16 with full "
                           "fine-tuning: ")
    assert '"Attempting to unscale FP16 gradients"' in text and "first optimizer step" in text
    assert problems[0].hint == (
        "load the model in float32 (model: {kwargs: {torch_dtype: float32}}; fp16 autocast still computes in half "
        "precision and keeps float32 master weights), use bf16 instead of fp16 where the GPU supports it, or train "
        "LoRA adapters instead (a `lora:` section)")


@pytest.mark.parametrize("kwargs", ["dtype: fp16", "torch_dtype: half", "torch_dtype: torch.float16"])
def test_yaml_float16_aliases_count(tmp_path, kwargs):
    problems = refused(tmp_path, "training: {max_steps: 4, fp16: true}\nlora: null\n", kwargs)
    assert [p.path for p in problems] == ["training.fp16"]
    key = kwargs.split(":")[0]
    assert f"model: {{kwargs: {{{key}: float32}}}}" in problems[0].hint


def test_yaml_fp16_among_grid_choices_is_refused_at_the_grid_key(tmp_path):
    problems = refused(tmp_path, "training: {max_steps: 4}\nlora: null\ngrid:\n  training:\n    fp16: [false, true]\n")
    assert [(p.path, p.line) for p in problems] == [("grid.training.fp16", 10)]


def test_yaml_lora_modules_to_save_trains_float16_copies_and_is_refused(tmp_path):
    problems = refused(tmp_path, "training: {max_steps: 4, fp16: true}\n"
                                 "lora: {r: 4, target_modules: [q_proj], modules_to_save: [lm_head]}\n")
    assert [p.path for p in problems] == ["training.fp16"]
    assert "with LoRA modules_to_save:" in problems[0].message
    assert problems[0].hint.endswith("or leave out modules_to_save")


@pytest.mark.parametrize("body,kwargs", [
    ("training: {max_steps: 4, fp16: true}\nlora: {r: 4, target_modules: [q_proj]}\n", "torch_dtype: float16"),
    ("training: {max_steps: 4, fp16: true}\n", "torch_dtype: float16"),  # no `lora:` key: LoRA with defaults
    ("training: {max_steps: 4, fp16: true}\nlora: null\n", "torch_dtype: float32"),
    ("training: {max_steps: 4, fp16: true}\nlora: null\n", "torch_dtype: auto"),
    ("training: {max_steps: 4, fp16: false}\nlora: null\n", "torch_dtype: float16"),
    ("training: {max_steps: 4, bf16: true}\nlora: null\n", "torch_dtype: float16"),
])
def test_yaml_combinations_that_train_are_accepted(tmp_path, body, kwargs):
    assert len(parse(tmp_path, body, kwargs).runs) == 1


def full_fine_tuning(training_args, dtype=torch.float16, peft_config=None) -> RFModelConfig:
    return RFModelConfig(model_name="rftui/tiny-llama", training_args=training_args,
                         model_kwargs={"torch_dtype": dtype}, peft_config=peft_config)


def test_api_full_fine_tuning_with_fp16_on_a_float16_model_is_refused_at_its_training_args():
    problems = validate_search(RFGridSearch(full_fine_tuning(RFSFTConfig(max_steps=4, fp16=True))))
    assert [p.path for p in problems] == ["configs.training_args.fp16"]
    assert problems[0].message.startswith("fp16 cannot train a model loaded in float16 with full fine-tuning: ")
    assert "model_kwargs={'torch_dtype': 'float32'}" in problems[0].hint
    assert "peft_config=RFLoraConfig(...)" in problems[0].hint
    # the same with the dtype by name, and with only one of several training choices using fp16
    group = RFGridSearch(List([
        full_fine_tuning(RFSFTConfig(max_steps=4), dtype="float16"),
        full_fine_tuning(List([RFSFTConfig(max_steps=4), RFSFTConfig(max_steps=4, fp16=List([False, True]))]),
                         dtype="float16"),
    ]))
    assert [p.path for p in validate_search(group)] == ["configs[1].training_args[1].fp16"]


def test_api_lora_or_float32_is_accepted():
    assert validate_search(full_fine_tuning(RFSFTConfig(fp16=True), peft_config=RFLoraConfig(r=4))) == []
    assert validate_search(full_fine_tuning(RFSFTConfig(fp16=True), dtype=torch.float32)) == []
    assert validate_search(full_fine_tuning(RFSFTConfig(fp16=True), dtype=torch.bfloat16)) == []


def test_run_fit_refuses_it_before_anything_is_written(tmp_path):
    experiment = Experiment(experiment_name="half", workdir=tmp_path)
    with pytest.raises(ConfigError, match="configs.training_args.fp16: fp16 cannot train"):
        experiment.run_fit(full_fine_tuning(RFSFTConfig(max_steps=4, fp16=True)), None,
                           [{"instruction": "hi", "response": "hello"}] * 4, quiet=True)
    assert not any(tmp_path.iterdir())


def test_why_lora_is_fine_and_modules_to_save_is_not():
    """PEFT casts LoRA adapters on a float16 base to float32; a modules_to_save copy keeps float16, and float16
    gradients are what GradScaler refuses (the failure the rule prevents)."""
    from peft import LoraConfig, get_peft_model

    from rftui.training.toy import make_toy_model, make_toy_tokenizer

    model = make_toy_model(make_toy_tokenizer()).to(torch.float16)
    peft = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", r=4, target_modules=["q_proj"],
                                            modules_to_save=["lm_head"]), adapter_name="r1")
    trained = {n: p.dtype for n, p in peft.named_parameters() if p.requires_grad}
    assert {d for n, d in trained.items() if "lora_" in n} == {torch.float32}
    assert {d for n, d in trained.items() if "modules_to_save" in n} == {torch.float16}

    weight = torch.nn.Parameter(torch.ones(2, dtype=torch.float16))
    optimizer = torch.optim.AdamW([weight])
    scaler = torch.amp.GradScaler("cpu")
    scaler.scale(weight.float().sum()).backward()
    with pytest.raises(ValueError, match="Attempting to unscale FP16 gradients"):
        scaler.unscale_(optimizer)
