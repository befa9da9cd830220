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
    assert (f"{config}:23: lora.target_modules: LoRA settings of runs r1 (lr=1e-3), r2 (lr=3e-4) do not fit "
            "rftui/tiny-llama") in err
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


# ---------------------------------------------------------------------- run and run_fit check as plan does

def chatqa_with(tmp_path, old: str, new: str) -> tuple[str, int]:
    """The cookbook config with one edit, and the line of the edit."""
    text = (SAMPLES / "chatqa_lite.yaml").read_text().replace("path: data/", f"path: {SAMPLES}/data/")
    assert old in text
    text = text.replace(old, new, 1)
    path = tmp_path / "grid.yaml"
    path.write_text(text)
    return str(path), next(i for i, line in enumerate(text.splitlines(), start=1) if new in line)


def test_run_refuses_a_grid_item_the_model_cannot_take_as_plan_does_and_creates_nothing(tmp_path, capsys):
    config, line = chatqa_with(tmp_path, "target_modules: [q_proj, v_proj]", "target_modules: [q_prj, v_proj]")
    assert main(["plan", config]) == 2
    planned = capsys.readouterr().err
    workdir = tmp_path / "runs"
    assert main(["run", config, "--no-ui", "--no-tracking", "--workdir", str(workdir)]) == 2
    assert capsys.readouterr().err == planned
    assert planned == (
        f"rftui: 1 problem in the config:\n  {config}:{line}: grid.lora[0].target_modules: LoRA settings of runs "
        "r1 (r=8 lr=1e-3), r3 (r=8 lr=1e-4) do not fit rftui/tiny-llama: target_modules q_prj match no module of "
        f"the model — rftui/tiny-llama's linear layers are named: {LAYERS}\n")
    assert not workdir.exists()


def test_run_fit_refuses_targets_the_model_lacks_before_creating_anything(tmp_path):
    from rftui import Experiment, List, RFGridSearch, RFLoraConfig, RFModelConfig, RFSFTConfig
    from rftui.config.problems import ConfigError

    config = RFModelConfig(model_name="rftui/tiny-llama",
                           peft_config=List([RFLoraConfig(r=4, lora_alpha=8, target_modules=["q_proj"]),
                                             RFLoraConfig(r=8, lora_alpha=8, target_modules=["q_proj", "v_prj"])]),
                           training_args=RFSFTConfig(learning_rate=1e-3, per_device_train_batch_size=4, max_steps=4))
    rows = [{"instruction": f"q{i}", "response": f"a{i}"} for i in range(16)]
    workdir = tmp_path / "runs"
    with pytest.raises(ConfigError) as info:
        Experiment("typo", workdir=workdir).run_fit(RFGridSearch(configs=config, trainer_type="SFT"), None, rows,
                                                    num_chunks=2, quiet=True)
    assert [str(p) for p in info.value.problems] == [
        "peft_config: LoRA settings of run r2 (r=8) do not fit rftui/tiny-llama: target_modules v_prj match no "
        f"module of the model — rftui/tiny-llama's linear layers are named: {LAYERS}"]
    assert not workdir.exists()


# ---------------------------------------------------------------------- verdicts kept, and where settings are written

def test_a_grid_checked_once_is_checked_again_without_importing_torch(tmp_path):
    import os
    import subprocess
    import sys

    config = smoke_with(tmp_path, "[q_prj, v_proj]")
    code = ("import sys; from rftui.config.yaml_config import load_experiment_file; "
            "from rftui.training.lora_check import lora_problems; "
            f"print([str(p) for p in lora_problems(load_experiment_file({config!r}))]); "
            "print('torch' in sys.modules)")
    env = {**os.environ, "RFTUI_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    first, again = (subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                                   timeout=120) for _ in range(2))
    assert first.returncode == 0 and again.returncode == 0, first.stderr + again.stderr
    problems, imported = first.stdout.splitlines()
    assert "target_modules q_prj match no module of the model" in problems and imported == "True"
    assert again.stdout.splitlines() == [problems, "False"]  # the same verdict, from the cache


def test_verdict_keys_follow_the_model_architecture_and_the_settings(tmp_path, monkeypatch):
    from rftui.training import lora_memo

    monkeypatch.setenv("RFTUI_CACHE", str(tmp_path / "cache"))
    key = lora_memo.memo_key("rftui/tiny-llama", {}, {"r": 8, "target_modules": ["q_proj"]})
    assert key != lora_memo.memo_key("rftui/tiny-llama", {}, {"r": 16, "target_modules": ["q_proj"]})
    model = tmp_path / "model"
    model.mkdir()
    assert lora_memo.memo_key(str(model), {}, {"r": 8}) is None  # no config.json: nothing to key on
    (model / "config.json").write_text('{"model_type": "llama", "num_hidden_layers": 2}')
    local = lora_memo.memo_key(str(model), {}, {"r": 8})
    assert local is not None and lora_memo.memo_key(str(model), {"trust_remote_code": True}, {"r": 8}) is None
    (model / "config.json").write_text('{"model_type": "llama", "num_hidden_layers": 3}')
    assert lora_memo.memo_key(str(model), {}, {"r": 8}) not in (None, local)
    assert lora_memo.recall(key) is None
    lora_memo.remember(key, ("ValueError: no", ["q_proj"]))
    assert lora_memo.recall(key) == ("ValueError: no", ["q_proj"])
    (tmp_path / "cache" / "lora-checks" / f"{key}.json").write_text('{"error": 3}')
    assert lora_memo.recall(key) is None  # unreadable: judged again


@pytest.mark.parametrize("text, lora, key, path", [
    ("lora: {r: 4, target_modules: [q_prj]}\ngrid:\n  training: {learning_rate: [1.0e-3]}\n",
     {"r": 4, "target_modules": ["q_prj"]}, "target_modules", "lora.target_modules"),
    ("lora: {target_modules: [q_prj]}\ngrid:\n  lora:\n    - {r: 8}\n    - {r: 16}\n",
     {"r": 16, "target_modules": ["q_prj"]}, "target_modules", "lora.target_modules"),
    ("lora: {lora_dropout: 0.1}\ngrid:\n  lora:\n    - {r: 8, target_modules: [q_prj]}\n"
     "    - {r: 16, target_modules: [q_prj]}\n",
     {"r": 16, "lora_dropout": 0.1, "target_modules": ["q_prj"]}, "target_modules", "grid.lora[1].target_modules"),
    ("grid:\n  lora:\n    - {r: 8}\n    - {r: 16, bias: wrong}\n", {"r": 16, "bias": "wrong"}, None, "grid.lora[1]"),
    ("random:\n  num_runs: 2\n  lora:\n    target_modules: [[q_proj], [q_prj]]\n",
     {"target_modules": ["q_prj"]}, "target_modules", "random.lora.target_modules"),
])
def test_lora_problems_point_at_where_the_settings_are_written(tmp_path, text, lora, key, path):
    from rftui.training.lora_check import lora_path

    config = tmp_path / "exp.yaml"
    config.write_text("name: x\n" + text)
    assert lora_path(str(config), lora, key) == path
