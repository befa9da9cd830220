"""User code that raises (compute_metrics, formatting_func, create_model_fn): only the runs using it fail, with a
one-line reason naming the function (and the row when known); the traceback stays in the log; the others train."""
from __future__ import annotations

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from rftui import Experiment, List, RFGridSearch, RFLoraConfig, RFModelConfig, RFSFTConfig
from rftui.data.sources import load_rows
from rftui.errors import DataError
from rftui.resources import sample_data_file

TRAIN = load_rows({"path": str(sample_data_file()), "select": [0, 16]}, sample_data_file().parent)
EVALS = load_rows({"path": str(sample_data_file()), "select": [300, 302]}, sample_data_file().parent)
BAD_ROW = 5


def create_model(model_config):
    if model_config["model_kwargs"].get("revision") == "broken":
        raise OSError("this revision cannot be loaded")
    model = AutoModelForCausalLM.from_pretrained(model_config["model_name"])
    return model, AutoTokenizer.from_pretrained(model_config["model_name"])


def good_metrics(eval_preds):
    predictions, references = eval_preds
    return {"pairs": float(len(predictions))}


def raising_metrics(eval_preds):
    raise ValueError("metric blew up")


def chat(row):
    return {"prompt": [{"role": "user", "content": row["instruction"]}],
            "completion": [{"role": "assistant", "content": row["response"]}]}


def chat_failing_on_one_row(row):
    if row["instruction"] == TRAIN[BAD_ROW]["instruction"]:
        raise ValueError("cannot format this one")
    return chat(row)


def config(**fields):
    base = dict(model_name="rftui/tiny-llama",
                peft_config=RFLoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"]),
                training_args=RFSFTConfig(learning_rate=1e-3, per_device_train_batch_size=4, max_steps=4,
                                          logging_steps=1, max_length=128),
                formatting_func=chat, compute_metrics=good_metrics,
                generation_config={"max_new_tokens": 4, "num_samples": 2})
    return RFModelConfig(**{**base, **fields})


def test_raising_user_hooks_fail_only_their_runs_with_a_one_line_reason(tmp_path, capsys):
    configs = List([
        config(),                                                   # r1: fine
        config(compute_metrics=raising_metrics),                    # r2: compute_metrics raises
        config(formatting_func=chat_failing_on_one_row),            # r3: formatter raises on one row
        config(model_kwargs={"revision": "broken"}),                # r4: create_model_fn raises
    ])
    experiment = Experiment("hooks", workdir=tmp_path)
    experiment.run_fit(RFGridSearch(configs=configs, trainer_type="SFT"), create_model, TRAIN, EVALS,
                       num_chunks=2, seed=1, device="cpu", tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    shown = capsys.readouterr().out
    info = experiment.get_runs_info().set_index("run_id")
    assert dict(info["status"]) == {"r1": "completed", "r2": "failed", "r3": "failed", "r4": "failed"}
    from rftui.engine.store import Store

    store = Store.open(experiment.exp.state_db, readonly=True)
    reasons = {row["run_id"]: row["reason"] for row in store.list_runs()}
    store.close()
    assert all("\n" not in reasons[r] for r in ("r2", "r3", "r4"))
    assert "compute_metrics hook" in reasons["r2"] and "raising_metrics" in reasons["r2"], reasons["r2"]
    assert "ValueError: metric blew up" in reasons["r2"]
    assert f"row {BAD_ROW}" in reasons["r3"] and "chat_failing_on_one_row" in reasons["r3"], reasons["r3"]
    assert "cannot format this one" in reasons["r3"]
    assert "create_model hook" in reasons["r4"] and "create_model" in reasons["r4"], reasons["r4"]
    assert "OSError: this revision cannot be loaded" in reasons["r4"]
    for run_id in ("r2", "r3", "r4"):  # the headless output shows each reason on the run's line
        assert f"{run_id} failed: {reasons[run_id]}" in shown or f"{run_id}: {reasons[run_id]}" in shown
    # The tracebacks are kept in the experiment's logs.
    logs = "\n".join(p.read_text() for p in experiment.exp.logs.glob("*.log"))
    for needle in ("in raising_metrics", "in chat_failing_on_one_row", "in create_model"):
        assert needle in logs, needle
    assert logs.count("Traceback (most recent call last)") >= 3


def test_every_formatter_failing_raises_a_data_error_naming_the_row_and_leaves_nothing(tmp_path):
    configs = List([config(formatting_func=chat_failing_on_one_row, training_args=RFSFTConfig(
        learning_rate=lr, per_device_train_batch_size=4, max_steps=4)) for lr in (1e-3, 1e-4)])
    experiment = Experiment("allbad", workdir=tmp_path)
    with pytest.raises(DataError, match=rf"train_dataset row {BAD_ROW}: formatting function .*chat_failing_on_one_row"):
        experiment.run_fit(RFGridSearch(configs=configs, trainer_type="SFT"), create_model, TRAIN, EVALS,
                           num_chunks=2, seed=1, device="cpu", quiet=True)
    assert [p.name for p in tmp_path.iterdir()] == []  # no experiment directory, no staging leftovers
