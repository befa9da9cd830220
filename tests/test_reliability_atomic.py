"""Atomic writes: checkpoint writers killed at random points leave a loadable, verified checkpoint and training
resumes from it bitwise; a corrupted checkpoint is named and never loaded (the run fails, the experiment goes on);
state.db writes are transactions that survive kill -9."""
from __future__ import annotations

import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from engine_helpers import drive
from reliability_helpers import (
    ENV, adapter_file, assert_same_adapter, baseline, check_store_invariants, losses, query, smoke_controller,
)
from rftui.engine.messages import QuantumDone, RunFailed
from rftui.engine.setup import open_experiment
from rftui.training import checkpoint as ckpt
from rftui.training.checkpoint import CheckpointData, CheckpointError, latest_step_dir, load_latest, save_checkpoint

PRELOAD = ["rftui.engine.worker", "torch", "transformers", "peft", "trl"]


def start(target, *args):
    """A child forked from the preloaded forkserver (starts in ~0.1 s instead of re-importing torch)."""
    from rftui.engine.pool import hidden_main

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    process = ctx.Process(target=target, args=args)
    with hidden_main():
        process.start()
    return process


# ----------------------------------------------------------------------------- a writer killed 15 times


def synthetic(step: int) -> CheckpointData:
    """A checkpoint whose every tensor and document is a function of its step (about 1.5 MB)."""
    gen = torch.Generator().manual_seed(step)
    tensor = lambda *shape: torch.randn(*shape, generator=gen)
    return CheckpointData(
        step=step, adapter={"a.lora_A": tensor(256, 256), "a.lora_B": tensor(256, 256)},
        optimizer_tensors={"a.lora_A::exp_avg": tensor(256, 256), "a.lora_A::exp_avg_sq": tensor(256, 256)},
        optimizer={"param_groups": [{"lr": 1e-3 * step}]}, scheduler={"last_epoch": step},
        rng_tensors={"cpu": torch.arange(step % 200, dtype=torch.uint8)}, rng={"python": [step]},
        state={"global_step": step, "epoch": step // 7})


def write_forever(root: str, start: int) -> None:
    torch.set_num_threads(1)
    step = start
    while True:
        step += 1
        save_checkpoint(root, "w", synthetic(step))


def test_checkpoint_writer_killed_at_random_points_always_leaves_a_verified_checkpoint(tmp_path):
    root = tmp_path / "checkpoints"
    save_checkpoint(root, "w", synthetic(1))
    rng = random.Random(6)
    steps_seen = [1]
    for kill in range(15):
        writer = start(write_forever, str(root), steps_seen[-1])
        deadline = time.monotonic() + 60
        while latest_step_dir(root, "w").name == f"step-{steps_seen[-1]}":  # wait until it is writing
            assert time.monotonic() < deadline and writer.is_alive()
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.3))
        os.kill(writer.pid, signal.SIGKILL)
        writer.join(10)
        assert writer.exitcode == -signal.SIGKILL
        data = load_latest(root, "w")  # verified against its manifest, or this raises
        expected = synthetic(data.step)
        assert data.step >= steps_seen[-1], "the latest checkpoint went backwards"
        assert all(data.adapter[k].equal(expected.adapter[k]) for k in expected.adapter)
        assert all(data.optimizer_tensors[k].equal(v) for k, v in expected.optimizer_tensors.items())
        assert data.state["global_step"] == data.step and data.scheduler == {"last_epoch": data.step}
        for step_dir in (root / "w").glob("step-*"):  # no step directory is ever half written
            ckpt.verify_checkpoint(step_dir)
        steps_seen.append(data.step)
    print(f"latest step after each kill: {steps_seen}")
    assert steps_seen[-1] > 15  # the writer made progress between kills
    save_checkpoint(root, "w", synthetic(steps_seen[-1] + 1))  # the next save clears the debris of the kills
    names = sorted(p.name for p in (root / "w").iterdir())
    assert names == ["latest", f"step-{steps_seen[-1]}", f"step-{steps_seen[-1] + 1}"], names


def test_pruning_keeps_the_checkpoint_the_store_still_points_at(tmp_path):
    """state.db says step 3. A worker orphaned by a killed controller saved step 5; the resumed quantum saves
    step 6 and the controller is killed again before recording it: step 3 must still be there to resume from."""
    root = tmp_path / "checkpoints"
    recorded = save_checkpoint(root, "r", synthetic(3))
    save_checkpoint(root, "r", synthetic(5), protect=recorded)
    save_checkpoint(root, "r", synthetic(6), protect=recorded)
    assert ckpt.load_checkpoint(recorded).step == 3
    assert sorted(p.name for p in (root / "r").glob("step-*")) == ["step-3", "step-5", "step-6"]
    save_checkpoint(root, "r", synthetic(9), protect=str(root / "r" / "step-6"))
    assert sorted(p.name for p in (root / "r").glob("step-*")) == ["step-6", "step-9"]


# ----------------------------------------------------------------------------- the real host, killed and resumed


def train_step_by_step(command_fields: dict, until_step: int | None = None) -> None:
    """Train run r1 one optimizer step per quantum (a checkpoint each), always resuming from `latest`; after
    `until_step` (when given) wait to be killed."""
    from rftui.engine.messages import TrainQuantum
    from rftui.training.host import TrainingHost

    torch.set_num_threads(1)
    host = TrainingHost(0, device="cpu")
    root, total = command_fields["checkpoint_root"], command_fields["total_steps"]
    while True:
        latest = latest_step_dir(root, "r1")
        start = int(latest.name[len("step-"):]) if latest is not None else 0
        if start >= total:
            return
        if until_step is not None and start >= until_step:
            time.sleep(3600)
        cmd = TrainQuantum(**command_fields, chunk=0, num_chunks=1, start_step=start, end_step=start + 1,
                           checkpoint_dir=str(latest) if latest is not None else None)
        host.train_quantum(cmd, lambda event: None, lambda: None)


def test_training_killed_at_random_points_resumes_from_its_checkpoint_bitwise(tmp_path):
    ctl = smoke_controller(tmp_path, "host", 12, 4)
    ctl.store.close()
    rec = ctl.runs["r1"]
    train_path, eval_path = ctl.data_files[next(iter(ctl.data_files))]
    fields = dict(run=rec.spec, total_steps=rec.total_steps, train_path=train_path, eval_path=eval_path,
                  checkpoint_root=str(ctl.exp.checkpoints), adapters_root=str(ctl.exp.adapters),
                  seed=int(rec.spec.training["seed"]))
    rng = random.Random(3)
    progress = [0]
    for kill in range(5):
        trainer = start(train_step_by_step, fields, progress[-1] + 2)  # so that 5 kills cannot reach the end
        deadline = time.monotonic() + 120
        while True:  # let it write at least one new checkpoint, then kill it at a random point
            latest = latest_step_dir(ctl.exp.checkpoints, "r1")
            if latest is not None and int(latest.name[5:]) > progress[-1]:
                break
            assert time.monotonic() < deadline and trainer.is_alive()
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.2))  # a step (train, eval, generate, checkpoint) takes longer than that
        os.kill(trainer.pid, signal.SIGKILL)
        trainer.join(10)
        progress.append(load_latest(ctl.exp.checkpoints, "r1").step)
        assert progress[-1] > progress[-2]
    print(f"checkpoint step after each kill: {progress}")
    finisher = start(train_step_by_step, fields)
    finisher.join(300)
    assert finisher.exitcode == 0
    base = baseline(tmp_path / "baseline", 12, 4)
    assert_same_adapter(adapter_file(ctl.exp.root, "r1"), adapter_file(base["root"], "r1"))


# ----------------------------------------------------------------------------- corrupted checkpoints


def test_corrupted_checkpoint_is_detected_named_and_never_loaded(tmp_path, monkeypatch):
    root = tmp_path / "checkpoints"
    save_checkpoint(root, "w", synthetic(3))
    good = save_checkpoint(root, "w", synthetic(4))
    target = Path(good) / "optimizer.safetensors"
    blob = bytearray(target.read_bytes())
    blob[len(blob) // 2] ^= 0x01  # one flipped bit in the middle of a tensor
    target.write_bytes(bytes(blob))
    loaded = []
    monkeypatch.setattr(ckpt, "load_file", lambda *a, **k: loaded.append(a) or {})
    with pytest.raises(CheckpointError) as info:
        load_latest(root, "w")
    message = str(info.value)
    assert str(target) in message and "corrupted" in message and "not loaded" in message
    assert loaded == []  # verification comes first: no byte of the damaged checkpoint was deserialized
    (Path(good) / "manifest.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="manifest.json is damaged"):
        ckpt.load_checkpoint(good)
    assert loaded == []


def test_controller_fails_the_run_whose_checkpoint_is_corrupted_and_the_others_go_on(tmp_path):
    ctl = smoke_controller(tmp_path, "corrupt", 12, 4)

    def stop_after_chunk_0(controller, events):
        if sum(isinstance(e, QuantumDone) for e in events) and all(
                r.chunks_done >= 1 for r in controller.runs.values()):
            controller.begin_shutdown()

    try:
        drive(ctl, limit=300, on_events=stop_after_chunk_0)
    finally:
        ctl.close()
    row = ctl.store.get_run("r1")
    assert row["steps_done"] == 3 and row["status"] == "waiting"
    damaged = Path(row["checkpoint_dir"]) / "adapter.safetensors"
    blob = bytearray(damaged.read_bytes())
    blob[-5] ^= 0xFF
    damaged.write_bytes(bytes(blob))

    from rftui.engine.assemble import make_controller

    exp, spec, store = open_experiment(str(ctl.exp.root))
    resumed = make_controller(exp, spec, store, workers=1, device="cpu", tracking=False,
                              backend_options={"num_threads": 1})
    try:
        seen = drive(resumed, limit=300)
    finally:
        resumed.close()
    failed = [e for e in seen if isinstance(e, RunFailed)]
    assert [e.run_id for e in failed] == ["r1"]
    assert failed[0].reason.startswith("CheckpointError: checkpoint file ") and str(damaged) in failed[0].reason
    runs = {r["run_id"]: r for r in store.list_runs()}
    assert runs["r1"]["status"] == "failed" and "corrupted" in runs["r1"]["reason"]
    assert runs["r2"]["status"] == "completed"
    base = baseline(tmp_path / "baseline", 12, 4)
    assert losses(exp.state_db, "r2") == base["losses"]["r2"]
    check_store_invariants(exp.state_db)


# ----------------------------------------------------------------------------- state.db transactions

METRICS_WRITER = """
import sys
from rftui.engine.store import Store
store = Store.open(sys.argv[1])
step = int(sys.argv[2])
print("ready", flush=True)
while True:
    step += 1
    store.add_metrics_batch([("r1", step, f"m{i}", float(i), "train", 0.0) for i in range(200)])
"""


def test_state_db_survives_kill_9_in_the_middle_of_metric_writes(tmp_path):
    from rftui.engine.store import Store

    db = tmp_path / "state.db"
    Store.create(db).close()
    rng = random.Random(9)
    for kill in range(5):
        top = query(db, "select coalesce(max(step), 0) from metrics")[0][0]
        writer = subprocess.Popen([sys.executable, "-c", METRICS_WRITER, str(db), str(top)], env=ENV,
                                  stdout=subprocess.PIPE, text=True)
        assert writer.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.4))
        writer.send_signal(signal.SIGKILL)
        writer.wait(10)
    store = Store.open(db)  # a damaged file would raise here (quick_check)
    conn = store._conn()
    assert [tuple(r) for r in conn.execute("PRAGMA integrity_check")] == [("ok",)]
    per_step = [tuple(r) for r in conn.execute("select step, count(*) from metrics group by step")]
    store.close()
    assert len(per_step) > 5
    assert {count for _, count in per_step} == {200}  # each batch is all or nothing
    steps = [s for s, _ in per_step]
    assert steps == list(range(1, len(steps) + 1))  # and none is lost before a later one
