"""LoRA target modules checked against the model: `rftui plan` before anything exists, the worker when a run starts
(PEFT alone accepts a list in which one name matches, and would silently train fewer layers)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from rftui.cli import main
from rftui.errors import RftuiError
from rftui.training.lora_check import missing_targets

SAMPLES = Path(__file__).resolve().parent.parent / "sample_configs"
LAYERS = "down_proj, gate_proj, k_proj, lm_head, o_proj, q_proj, up_proj, v_proj"


def smoke_with(tmp_path, targets: str) -> str:
    text = (SAMPLES / "smoke.yaml").read_text().replace("path: data/", f"path: {SAMPLES}/data/")
    text = text.replace("target_modules: [q_proj, v_proj]", f"target_modules: {targets}")
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("targets, complaint", [
    ("[q_prj, v_proj]", "target_modules q_prj match no module of the model"),
    ("[q_prj]", "NoMatchingPeftModuleError: Target modules {'q_prj'} not found"),
])
def test_plan_refuses_target_modules_the_model_does_not_have(tmp_path, capsys, targets, complaint):
    config = smoke_with(tmp_path, targets)
    assert main(["plan", config]) == 2
    err = capsys.readouterr().err
    assert f"{config}:23: lora: LoRA settings of runs r1 (lr=1e-3), r2 (lr=3e-4) do not fit rftui/tiny-llama" in err
    assert complaint in err
    assert f"rftui/tiny-llama's linear layers are named: {LAYERS}" in err


@pytest.mark.parametrize("targets", ["[q_proj, v_proj]", "all-linear", "'.*self_attn\\.(q|v)_proj'"])
def test_plan_accepts_targets_that_match(tmp_path, capsys, targets):
    assert main(["plan", smoke_with(tmp_path, targets)]) == 0
    assert "r1" in capsys.readouterr().out


def test_missing_targets_matches_like_peft():
    names = ["model.layers.0.self_attn.q_proj", "model.layers.0.mlp.up_proj", "lm_head"]
    assert missing_targets(names, ["q_proj", "up_proj", "lm_head"]) == []
    assert missing_targets(names, ["q_proj", "proj", "self_attn.q_proj", "v_proj"]) == ["proj", "v_proj"]
    assert missing_targets(names, ".*q_proj") == []  # a regex is PEFT's to check


def test_a_run_whose_target_list_half_matches_fails_when_it_starts(tmp_path):
    from test_training_correctness import Data, never, quantum, spec
    from rftui.training.host import TrainingHost
    from rftui.training.toy import toy_loader, write_toy_split

    data = Data(write_toy_split(tmp_path / "train.jsonl", 8, seed=1), None, tmp_path)
    run = spec("bad")
    run = replace(run, lora={**run.lora, "target_modules": ["q_proj", "v_prj"]})
    host = TrainingHost(0, model_loader=toy_loader)
    with pytest.raises(RftuiError, match=r"run bad: lora.target_modules v_prj match no module of 'toy'"):
        host.train_quantum(quantum(run, data, str(tmp_path / "ck"), 0, 1, total=1), lambda e: None, never)
    assert host.holds("bad") is None
    host.close()
