"""A checkpoint saved in float16 loads in float16 when model_kwargs give no dtype (or "auto"), so fp16 with full
fine-tuning (or modules_to_save) on it fails at the first optimizer step on a GPU, as the explicit
`dtype: float16` does: check_models_available reads the saved dtype and refuses it before anything is created."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from rftui import Experiment, RFModelConfig, RFSFTConfig
from rftui.config.problems import ConfigError
from rftui.config.yaml_config import parse_experiment
from rftui.training.model_loading import check_models_available, saved_dtype_name

ROWS = '{"instruction": "hi", "response": "hello"}\n'


def model_dir(tmp_path, dtype="float16", key="dtype"):
    """A directory with only a config.json (what check_models_available reads), saved in `dtype`."""
    from transformers import LlamaConfig

    config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2).to_dict()
    config.pop("dtype", None)
    config.pop("torch_dtype", None)
    config[key] = dtype
    path = tmp_path / f"model-{dtype}-{key}"
    path.mkdir()
    (path / "config.json").write_text(json.dumps(config))
    return str(path)


def config_text(tmp_path, model: str, body: str, kwargs: str = "") -> str:
    data = tmp_path / "rows.jsonl"
    data.write_text(ROWS)
    return (f"name: half\nmodel:\n  name: {model}\n  kwargs: {{{kwargs}}}\ndata: {{train: {{path: {data}}}}}\n"
            + body)


def runs(tmp_path, model: str, body: str, kwargs: str = ""):
    return parse_experiment(config_text(tmp_path, model, body, kwargs), "half.yaml", tmp_path).runs


FULL_FP16 = "training: {max_steps: 4, fp16: true}\nlora: null\n"


@pytest.mark.parametrize("kwargs", ["", "dtype: auto", "torch_dtype: auto"])
def test_full_fine_tuning_with_fp16_on_a_float16_checkpoint_is_refused(tmp_path, kwargs):
    model = model_dir(tmp_path)
    with pytest.raises(ConfigError) as info:
        check_models_available(runs(tmp_path, model, FULL_FP16, kwargs))
    [problem] = info.value.problems
    assert problem.path == "training.fp16"
    assert problem.message.startswith(
        f"model {model!r} is saved in float16 (its config.json) and is loaded in that dtype when model_kwargs give "
        "no dtype; fp16 cannot train a model loaded in float16 with full fine-tuning: ")
    assert '"Attempting to unscale FP16 gradients"' in problem.message
    assert problem.hint == (
        "load the model in float32 (model: {kwargs: {dtype: float32}} in a config file, "
        "model_kwargs={'dtype': 'float32'} from Python; fp16 autocast still computes in half precision and keeps "
        "float32 master weights), use bf16 instead of fp16 where the GPU supports it, or train LoRA adapters "
        "instead (a `lora:` section, or peft_config=RFLoraConfig(...))")


def test_an_older_config_json_with_torch_dtype_counts(tmp_path):
    model = model_dir(tmp_path, key="torch_dtype")
    assert saved_dtype_name(model) == "float16"
    with pytest.raises(ConfigError, match="is saved in float16"):
        check_models_available(runs(tmp_path, model, FULL_FP16))


def test_lora_modules_to_save_on_a_float16_checkpoint_is_refused(tmp_path):
    model = model_dir(tmp_path)
    body = "training: {max_steps: 4, fp16: true}\nlora: {r: 4, target_modules: [q_proj], modules_to_save: [lm_head]}\n"
    with pytest.raises(ConfigError) as info:
        check_models_available(runs(tmp_path, model, body))
    assert "with LoRA modules_to_save:" in info.value.problems[0].message


def test_one_problem_per_model_across_a_grid(tmp_path):
    model = model_dir(tmp_path)
    body = FULL_FP16 + "grid:\n  training:\n    learning_rate: [1.0e-3, 3.0e-4]\n"
    with pytest.raises(ConfigError) as info:
        check_models_available(runs(tmp_path, model, body))
    assert len(info.value.problems) == 1


@pytest.mark.parametrize("body,kwargs", [
    (FULL_FP16, "dtype: float32"),  # the dtype given wins over the saved one
    (FULL_FP16, "torch_dtype: bfloat16"),
    ("training: {max_steps: 4, fp16: true}\nlora: {r: 4, target_modules: [q_proj]}\n", ""),  # LoRA: float32 adapters
    ("training: {max_steps: 4, fp16: false}\nlora: null\n", ""),
    ("training: {max_steps: 4, bf16: true}\nlora: null\n", ""),
])
def test_combinations_that_train_on_a_float16_checkpoint_are_accepted(tmp_path, body, kwargs):
    check_models_available(runs(tmp_path, model_dir(tmp_path), body, kwargs))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_a_float32_or_bfloat16_checkpoint_is_accepted(tmp_path, dtype):
    model = model_dir(tmp_path, dtype)
    assert saved_dtype_name(model) == dtype
    check_models_available(runs(tmp_path, model, FULL_FP16))


def test_the_builtin_model_is_float32_and_accepted(tmp_path):
    assert saved_dtype_name("rftui/tiny-llama") == "float32"
    check_models_available(runs(tmp_path, "rftui/tiny-llama", FULL_FP16))


@pytest.mark.parametrize("content", ["{not json", '{"model_type": "llama"}', '["a list"]', '{"dtype": 16}'])
def test_an_unreadable_or_dtype_less_config_json_says_nothing(tmp_path, content):
    model = model_dir(tmp_path)
    with open(os.path.join(model, "config.json"), "w") as f:
        f.write(content)
    assert saved_dtype_name(model) is None
    check_models_available(runs(tmp_path, model, FULL_FP16))


def test_a_hub_id_is_read_from_the_local_cache_without_network(tmp_path, monkeypatch):
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    snapshot = cache / "models--org--half" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (cache / "models--org--half" / "refs").mkdir()
    (cache / "models--org--half" / "refs" / "main").write_text("abc123")
    (snapshot / "config.json").write_text(json.dumps({"model_type": "llama", "torch_dtype": "float16"}))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert saved_dtype_name("org/half") == "float16"
    assert saved_dtype_name("org/absent") is None  # not cached: nothing to tell, no network
    with pytest.raises(ConfigError, match="model 'org/half' is saved in float16"):
        check_models_available(runs(tmp_path, "org/half", FULL_FP16))


def test_run_fit_refuses_it_before_anything_is_written(tmp_path):
    model = model_dir(tmp_path)
    workdir = tmp_path / "runs"
    config = RFModelConfig(model_name=model, training_args=RFSFTConfig(max_steps=4, fp16=True), peft_config=None)
    with pytest.raises(ConfigError, match=r"training\.fp16: model .* is saved in float16"):
        Experiment(experiment_name="half", workdir=workdir).run_fit(config, None, [json.loads(ROWS)] * 4, quiet=True)
    assert not workdir.exists() or not any(workdir.iterdir())


@pytest.mark.parametrize("command", [["run", "--no-ui"], ["plan"]])
def test_cli_run_and_plan_exit_2_with_the_message_and_create_nothing(tmp_path, command):
    model = model_dir(tmp_path)
    cfg = tmp_path / "half.yaml"
    cfg.write_text(config_text(tmp_path, model, FULL_FP16))
    workdir = tmp_path / "runs"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    where = ["--workdir", str(workdir)] if command[0] == "run" else []
    result = subprocess.run([sys.executable, "-m", "rftui", command[0], str(cfg), *command[1:], *where],
                            capture_output=True, text=True, timeout=120, env=env, stdin=subprocess.DEVNULL)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert f"training.fp16: model {model!r} is saved in float16" in result.stderr
    assert "model: {kwargs: {dtype: float32}}" in result.stderr
    assert not workdir.exists()
