"""The MLflow sink's pure helpers: the default tracking URI, flattened params and MLflow keys, and
redaction of secrets. Nothing here talks to MLflow."""
from __future__ import annotations

import json
from pathlib import Path

from rftui.tracking.mlflow_sink import default_tracking_uri, flatten_params, mlflow_key, redact

HF_TOKEN = "hf_" + "aBcDeFgHiJkLmNoPqRsTuVwXyZ01234567"


def test_default_tracking_uri(tmp_path, monkeypatch):
    assert default_tracking_uri(tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert default_tracking_uri(tmp_path).startswith("sqlite:////")
    monkeypatch.chdir(tmp_path)
    assert default_tracking_uri(Path("rftui-runs")) == (
        f"sqlite:///{tmp_path.resolve()}/rftui-runs/mlflow.db"
    )


def test_flatten_params_nested_lists_and_limits():
    flat = flatten_params(
        {
            "model_name": "rftui/tiny-llama",
            "lora": {"r": 8, "lora_alpha": 16.0, "target_modules": ["q_proj", "v_proj"]},
            "training": {"learning_rate": 1e-3, "bf16": False, "deep": {"x": None}},
            "generation": {},
            "shape": (1, 2),
            "long": "x" * 7000,
            "odd@key": 1,
        }
    )
    assert flat["model_name"] == "rftui/tiny-llama"
    assert flat["lora.r"] == "8"
    assert flat["lora.lora_alpha"] == "16.0"
    assert flat["lora.target_modules"] == '["q_proj","v_proj"]'
    assert flat["training.learning_rate"] == "0.001"
    assert flat["training.bf16"] == "False"
    assert flat["training.deep.x"] == "None"
    assert flat["generation"] == "{}"
    assert flat["shape"] == "[1,2]"
    assert len(flat["long"]) == 6000
    assert flat["odd_key"] == "1"
    assert all(isinstance(v, str) for v in flat.values())
    assert flatten_params({"r": 8}, prefix="lora") == {"lora.r": "8"}
    assert mlflow_key("eval/loss") == "eval/loss"
    assert len(mlflow_key("k" * 400)) == 250


def test_redact_keys_and_values():
    src = {
        "token": "abc",
        "HF_TOKEN": "abc",
        "hfToken": "abc",
        "api_key": "abc",
        "apiKey": "abc",
        "OPENAI_APIKEY": "abc",
        "db_password": "abc",
        "client_secret": "abc",
        "auth": "abc",
        "use_auth_token": True,
        "credentials": {"user": "u", "pw": "p"},
        "hub_token": "abc",
        "model_kwargs": {"token": "abc", "torch_dtype": "float32", "revision": HF_TOKEN},
        "callbacks": [{"api_key": "abc", "name": "wandb"}, "plain", f"Bearer {HF_TOKEN}"],
        "model_kwargs.token": "abc",
        # not secrets
        "max_new_tokens": 64,
        "eos_token": "<|end|>",
        "pad_token_id": 0,
        "tokenizer": "gpt2",
        "author": "me",
        "response_key": "completion",
        "no_token": None,
        "hf_model": "hf_internal_testing",
    }
    before = json.dumps(src, sort_keys=True)
    out = redact(src)
    assert json.dumps(src, sort_keys=True) == before  # input untouched
    for key in ("token", "HF_TOKEN", "hfToken", "api_key", "apiKey", "OPENAI_APIKEY",
                "db_password", "client_secret", "auth", "use_auth_token", "credentials",
                "hub_token", "model_kwargs.token"):
        assert out[key] == "***", key
    assert out["model_kwargs"] == {"token": "***", "torch_dtype": "float32", "revision": "***"}
    assert out["callbacks"] == [{"api_key": "***", "name": "wandb"}, "plain", "***"]
    assert out["max_new_tokens"] == 64
    assert out["eos_token"] == "<|end|>"
    assert out["pad_token_id"] == 0
    assert out["tokenizer"] == "gpt2"
    assert out["author"] == "me"
    assert out["response_key"] == "completion"
    assert out["no_token"] is None
    assert out["hf_model"] == "hf_internal_testing"  # too short to be an access token
    assert HF_TOKEN not in json.dumps(out)
