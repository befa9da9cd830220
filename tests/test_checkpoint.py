"""Run checkpoints: atomic, checksummed, pickle-free, and restorable by a fresh TrainingHost."""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import json
import pickle
import re
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

import rftui.training as training_pkg
from rftui.config.runspec import RunSpec
from rftui.engine.messages import TrainQuantum
from rftui.errors import ExperimentError
from rftui.training.checkpoint import (
    CheckpointData, CheckpointError, latest_step_dir, load_checkpoint, load_latest, save_checkpoint,
)

EXPECTED_FILES = {"adapter.safetensors", "optimizer.safetensors", "optimizer.json", "scheduler.json",
                  "rng.safetensors", "rng.json", "state.json", "manifest.json"}


def sample(step: int) -> CheckpointData:
    g = torch.Generator().manual_seed(step)
    weight = torch.randn(4, 3, generator=g)
    return CheckpointData(
        step=step,
        adapter={"layers.0.q_proj.lora_A.weight": weight, "layers.0.q_proj.lora_B.weight": torch.zeros(3, 2)},
        optimizer_tensors={"layers.0.q_proj.lora_A.weight::exp_avg": weight * 0.1,
                           "layers.0.q_proj.lora_A.weight::step": torch.tensor(float(step))},
        optimizer={"param_groups": [{"lr": 1e-3 / 3, "betas": [0.9, 0.999], "params": ["layers.0.q_proj.lora_A.weight"]}],
                   "scalars": {}},
        scheduler={"last_epoch": step, "_last_lr": [float(torch.tensor(1e-3 / 7, dtype=torch.float32))],
                   "best": float("inf")},
        rng_tensors={"torch": torch.random.get_rng_state()},
        rng={"python": [3, list(range(625)), None]},
        state={"epoch": 1, "batch_in_epoch": 5, "tr_loss": float(torch.tensor(3.1234567, dtype=torch.float32))},
    )


def assert_same(a: CheckpointData, b: CheckpointData) -> None:
    assert a.step == b.step
    for field in ("adapter", "optimizer_tensors", "rng_tensors"):
        x, y = getattr(a, field), getattr(b, field)
        assert x.keys() == y.keys()
        for key in x:
            assert x[key].dtype == y[key].dtype and torch.equal(x[key], y[key]), key
    assert (a.optimizer, a.scheduler, a.rng) == (b.optimizer, b.scheduler, b.rng)
    for key, value in a.state.items():
        assert b.state[key] == value


def test_round_trip_is_exact(tmp_path):
    data = sample(7)
    path = Path(save_checkpoint(tmp_path, "run-a", data))
    assert path == tmp_path / "run-a" / "step-7"
    assert {p.name for p in path.iterdir()} == EXPECTED_FILES
    loaded = load_checkpoint(path)
    assert_same(data, loaded)
    assert loaded.path == str(path)
    assert_same(data, load_latest(tmp_path, "run-a"))
    assert load_checkpoint(path.parent).step == 7  # a run directory resolves through `latest`
    assert load_latest(tmp_path, "never-trained") is None


def test_latest_pointer_and_pruning(tmp_path):
    for step in (3, 6, 9):
        save_checkpoint(tmp_path, "r", sample(step))
    run_dir = tmp_path / "r"
    assert sorted(p.name for p in run_dir.iterdir() if p.is_dir()) == ["step-6", "step-9"]
    assert json.loads((run_dir / "latest").read_text()) == {"step": 9, "dir": "step-9"}
    assert latest_step_dir(tmp_path, "r") == run_dir / "step-9"
    # a leftover of a crash mid-write is ignored, then cleaned up by the next save
    (run_dir / ".tmp-step-12-deadbeef").mkdir()
    assert load_latest(tmp_path, "r").step == 9
    # the same step written again replaces it; a retry from an older step abandons the later ones
    save_checkpoint(tmp_path, "r", sample(9))
    save_checkpoint(tmp_path, "r", sample(4))
    assert sorted(p.name for p in run_dir.iterdir()) == ["latest", "step-4"]
    assert load_latest(tmp_path, "r").step == 4


def test_flipped_byte_is_detected_and_names_the_file(tmp_path):
    path = Path(save_checkpoint(tmp_path, "r", sample(2)))
    target = path / "adapter.safetensors"
    blob = bytearray(target.read_bytes())
    blob[-3] ^= 0x01  # a bit flip inside the tensor data: safetensors itself would load it silently
    target.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match=r"adapter\.safetensors.*corrupted") as info:
        load_checkpoint(path)
    assert isinstance(info.value, ExperimentError)
    assert "not loaded" in str(info.value)
    with pytest.raises(CheckpointError, match=r"adapter\.safetensors"):
        load_latest(tmp_path, "r")


def test_incomplete_checkpoint_is_refused(tmp_path):
    path = Path(save_checkpoint(tmp_path, "r", sample(2)))
    (path / "manifest.json").unlink()
    with pytest.raises(CheckpointError, match="manifest"):
        load_checkpoint(path)
    (tmp_path / "r" / "latest").write_text("{not json")
    with pytest.raises(CheckpointError, match="latest"):
        load_latest(tmp_path, "r")


def test_training_modules_never_pickle():
    here = Path(training_pkg.__file__).parent
    owned = ("checkpoint", "run_state", "host", "warm_start", "export", "loop", "sft_setup", "evaluation", "bases",
             "metrics")
    sources = [here / f"{name}.py" for name in owned]
    assert all(p.is_file() for p in sources)
    pattern = re.compile(r"torch\.(load|save)\s*\(|import (c?pickle|cloudpickle|dill|joblib)\b|\bc?pickle\.|"
                         r"from (c?pickle|cloudpickle|dill|joblib) import|allow_pickle\s*=\s*True")
    offenders = [f"{p.name}:{i}" for p in sources for i, line in enumerate(p.read_text().splitlines(), 1)
                 if pattern.search(line) and not line.lstrip().startswith("#")]
    assert offenders == []


@pytest.fixture
def tiny_run(tmp_path):
    from rftui.training.toy import write_toy_split

    train = write_toy_split(tmp_path / "train.jsonl", 12, seed=3)
    run = RunSpec(run_id="ck", label="ck", model_name="toy",
                  training=dict(learning_rate=1e-3, per_device_train_batch_size=4, logging_steps=1, max_length=48,
                                gradient_checkpointing=False, seed=5),
                  lora=dict(r=2, target_modules=["q_proj"], lora_dropout=0.1))

    def cmd(start, end, checkpoint_dir=None):
        return TrainQuantum(run=run, chunk=0, num_chunks=2, start_step=start, end_step=end, total_steps=4,
                            train_path=train, eval_path=None, checkpoint_root=str(tmp_path / "checkpoints"),
                            adapters_root=str(tmp_path / "adapters"), checkpoint_dir=checkpoint_dir)
    return cmd


def test_host_checkpoints_restore_without_unpickling(tiny_run, monkeypatch):
    from rftui.training.host import TrainingHost
    from rftui.training.toy import toy_loader

    host = TrainingHost(0, model_loader=toy_loader)
    done = host.train_quantum(tiny_run(0, 2), lambda e: None, lambda: None)
    host.close()
    ckpt_dir = Path(done.checkpoint_dir)
    assert {p.name for p in ckpt_dir.iterdir()} == EXPECTED_FILES
    state = json.loads((ckpt_dir / "state.json").read_text())
    assert (state["step"], state["epoch"], state["batch_in_epoch"]) == (2, 0, 2)

    def forbidden(*args, **kwargs):
        raise AssertionError("a checkpoint was unpickled")

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    host = TrainingHost(1, model_loader=toy_loader)
    done = host.train_quantum(tiny_run(2, 4, checkpoint_dir=str(ckpt_dir)), lambda e: None, lambda: None)
    host.close()
    assert done.steps_done == 4 and done.adapter_dir


def test_host_refuses_a_corrupted_checkpoint(tiny_run):
    from rftui.training.host import TrainingHost
    from rftui.training.toy import toy_loader

    host = TrainingHost(0, model_loader=toy_loader)
    done = host.train_quantum(tiny_run(0, 2), lambda e: None, lambda: None)
    host.drop_run("ck")
    optimizer_file = Path(done.checkpoint_dir) / "optimizer.json"
    optimizer_file.write_text(optimizer_file.read_text().replace("0.", "1.", 1))
    with pytest.raises(CheckpointError, match=r"optimizer\.json"):
        host.train_quantum(tiny_run(2, 4, checkpoint_dir=done.checkpoint_dir), lambda e: None, lambda: None)
    assert host.holds("ck") is None
    with pytest.raises(CheckpointError, match="step 2"):  # no checkpoint and not in memory: refuse to guess
        host.train_quantum(tiny_run(2, 4), lambda e: None, lambda: None)
    host.close()
