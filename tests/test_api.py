"""The Python API: the cookbook's calls on the built-in model and bundled data."""
from __future__ import annotations

import pytest
from datasets import load_dataset
from transformers import AutoModelForCausalLM, AutoTokenizer

from rftui import Experiment, List, RFGridSearch, RFLoraConfig, RFModelConfig, RFSFTConfig
from rftui.config.problems import ConfigError
from rftui.errors import OpRefused
from rftui.resources import sample_data_file

created_with = []


def create_model(model_config):
    created_with.append(model_config["model_name"])
    model = AutoModelForCausalLM.from_pretrained(model_config["model_name"], **model_config["model_kwargs"])
    tokenizer = AutoTokenizer.from_pretrained(model_config["model_name"])
    return model, tokenizer


def compute_metrics(eval_preds):
    predictions, references = eval_preds
    return {"pred_count": float(len(predictions)), "ref_count": float(len(references))}


def formatting(row):
    return {"prompt": [{"role": "user", "content": row["instruction"]}],
            "completion": [{"role": "assistant", "content": row["response"]}]}


def test_cookbook_style_run_fit_then_clone_and_continue(tmp_path):
    dataset = load_dataset("json", data_files=str(sample_data_file()))
    train = dataset["train"].select(range(16)).shuffle(seed=42)
    evals = dataset["train"].select(range(300, 304))
    config = RFModelConfig(
        model_name="rftui/tiny-llama",
        peft_config=RFLoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"]),
        training_args=RFSFTConfig(learning_rate=List([1e-3, 1e-4]), per_device_train_batch_size=4, max_steps=4,
                                  logging_steps=1, eval_strategy="steps", eval_steps=2, fp16=True),
        model_kwargs={"device_map": "auto", "torch_dtype": "auto"},
        formatting_func=formatting, compute_metrics=compute_metrics,
        generation_config={"max_new_tokens": 4, "num_samples": 2},
    )
    experiment = Experiment(experiment_name="api-exp", mode="fit", workdir=tmp_path)
    experiment.run_fit(RFGridSearch(configs=config, trainer_type="SFT"), create_model, train, evals,
                       num_chunks=2, seed=42, quiet=True)
    info = experiment.get_runs_info()
    assert list(info["run_id"]) == ["r1", "r2"] and set(info["status"]) == {"completed"}
    results = experiment.get_results()
    r1 = results[results["run_id"] == "r1"]
    assert list(r1["step"]) == [1, 2, 3, 4]
    assert r1["loss"].notna().all() and r1["eval_loss"].notna().sum() >= 2
    assert set(results.columns) >= {"run_id", "label", "step", "loss", "eval_loss", "rougeL", "bleu", "pred_count"}
    assert results["pred_count"].dropna().eq(2.0).all()

    with pytest.raises(OpRefused, match="completed"):
        experiment.resume_run("r1")
    new_id = experiment.clone_run("r1", {"learning_rate": 5e-4})
    assert new_id == "r3"
    experiment.resume(create_model, quiet=True)
    info = experiment.get_runs_info().set_index("run_id")
    assert info.loc["r3", "status"] == "completed" and info.loc["r3", "parent"] == "r1"
    experiment.end()


def _tiny_group():
    config = RFModelConfig(model_name="rftui/tiny-llama",
                           peft_config=RFLoraConfig(r=4, lora_alpha=8, target_modules=["q_proj"]),
                           training_args=RFSFTConfig(learning_rate=1e-3, per_device_train_batch_size=4, max_steps=4))
    return RFGridSearch(configs=config, trainer_type="SFT")


ROWS = [{"instruction": f"q{i}", "response": f"a{i}"} for i in range(16)]


@pytest.mark.parametrize("name", ["a/b", "..", ".", "", "my exp", None, 5])
def test_bad_experiment_names_raise_config_error_before_anything_is_written(tmp_path, name):
    workdir = tmp_path / "runs"
    with pytest.raises(ConfigError, match="experiment_name: experiment name") as caught:
        Experiment(name, workdir=workdir)
    assert "letters, digits" in str(caught.value) or "must be a string" in str(caught.value)
    assert 'Experiment(experiment_name="chatqa-lite")' in str(caught.value)
    assert not workdir.exists()


@pytest.mark.parametrize("kwargs, message", [
    ({"num_chunks": 0}, "num_chunks: must be ≥ 1, got 0 — use num_chunks ≥ 1"),
    ({"num_chunks": "abc"}, "num_chunks: expected an integer, got 'abc'"),
    ({"seed": -1}, "seed: must be ≥ 0, got -1"),
    ({"workers": 0}, "workers: must be ≥ 1, got 0"),
    ({"workers": 1.5}, "workers: expected an integer, got 1.5"),
    ({"device": "gpu"}, "device: must be one of auto, cpu, cuda, got 'gpu'"),
    ({"tracking_uri": "bogus://x"}, "tracking_uri: unknown tracking URI scheme 'bogus:'"),
])
def test_bad_run_fit_arguments_raise_config_error_before_anything_is_written(tmp_path, kwargs, message):
    workdir = tmp_path / "runs"
    experiment = Experiment("args", workdir=workdir)
    with pytest.raises(ConfigError) as caught:
        experiment.run_fit(_tiny_group(), None, ROWS, **{"num_chunks": 2, **kwargs}, quiet=True)
    assert message in str(caught.value)
    assert not workdir.exists()


def test_run_fit_on_cuda_without_a_gpu_raises_config_error(tmp_path):
    from rftui.engine.options import cuda_visible

    if cuda_visible():
        pytest.skip("a CUDA device is visible here")
    experiment = Experiment("cuda", workdir=tmp_path / "runs")
    with pytest.raises(ConfigError, match="device: no CUDA device visible — use device='cpu' or 'auto'"):
        experiment.run_fit(_tiny_group(), None, ROWS, num_chunks=2, device="cuda", quiet=True)
    assert not (tmp_path / "runs").exists()


def test_run_fit_refuses_a_model_directory_that_holds_no_model_before_anything_is_written(tmp_path):
    from rftui.errors import ModelLoadError

    not_a_model = tmp_path / "weights"
    not_a_model.mkdir()
    group = _tiny_group()
    group.configs.fields["model_name"] = str(not_a_model)
    experiment = Experiment("nomodel", workdir=tmp_path / "runs")
    with pytest.raises(ModelLoadError, match="that directory has no config.json"):
        experiment.run_fit(group, None, ROWS, num_chunks=2, quiet=True)
    assert not (tmp_path / "runs").exists()


def test_every_bad_run_fit_argument_is_reported_at_once(tmp_path):
    experiment = Experiment("many", workdir=tmp_path)
    with pytest.raises(ConfigError, match="3 problems") as caught:
        experiment.run_fit(_tiny_group(), None, ROWS, num_chunks=0, workers=0, device="gpu", quiet=True)
    assert [p.path for p in caught.value.problems] == ["num_chunks", "workers", "device"]


def test_run_fit_counts_a_random_search_space_once(tmp_path, monkeypatch):
    import rftui.config.expand as expand_module
    from rftui import RFRandomSearch
    from rftui.errors import DataError

    counted = []
    count = expand_module.distinct_count
    monkeypatch.setattr(expand_module, "distinct_count", lambda configs: counted.append(1) or count(configs))
    group = RFRandomSearch(RFModelConfig(
        model_name="rftui/tiny-llama", peft_config=RFLoraConfig(r=4, lora_alpha=8, target_modules=["q_proj"]),
        training_args=RFSFTConfig(learning_rate=List([1e-3, 1e-4]), max_steps=4)), num_runs=2)
    experiment = Experiment("space", workdir=tmp_path / "runs")
    with pytest.raises(DataError, match="train_dataset is missing"):  # past the check: the runs were drawn
        experiment.run_fit(group, create_model, None, num_chunks=2, quiet=True)
    assert counted == [1]
    group.num_runs, counted[:] = 3, []
    with pytest.raises(ConfigError, match="random search asks for 3 distinct configs, but the search space has only 2"):
        experiment.run_fit(group, create_model, None, num_chunks=2, quiet=True)
    assert counted == [1] and not (tmp_path / "runs").exists()


def test_ctrl_c_in_run_fit_checkpoints_says_how_to_continue_and_raises(tmp_path, monkeypatch, capsys):
    from rftui.engine.controller import Controller

    step, calls = Controller.step, []

    def interrupted_step(self, timeout):
        calls.append(timeout)
        if len(calls) == 3:  # Ctrl-C while run_fit waits on the worker, long before 200 steps are done
            raise KeyboardInterrupt
        return step(self, timeout)

    monkeypatch.setattr(Controller, "step", interrupted_step)
    group = _tiny_group()
    group.configs.fields["training_args"].kwargs["max_steps"] = 200
    experiment = Experiment("ctrl-c", workdir=tmp_path)
    with pytest.raises(KeyboardInterrupt):
        experiment.run_fit(group, create_model, ROWS, num_chunks=2)
    out = capsys.readouterr().out
    assert "experiment ctrl-c (" in out and "— interrupted: continue with experiment.resume(create_model)\n" in out
    assert out.rstrip().endswith("interrupted: checkpointed; continue with experiment.resume(create_model)")
    info = experiment.get_runs_info()
    assert info["status"].item() in ("waiting", "pending") and info["steps_done"].item() < 200
    assert experiment.controller is None
