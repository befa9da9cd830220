"""Chunking is invisible: interleaved, restored, preempted and warm-started runs versus one-chunk runs and TRL."""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(1)

from rftui.config.runspec import RunSpec
from rftui.engine.messages import EvalDone, QuantumDone, QuantumStarted, StepLogged, TrainQuantum, WorkerWarning
from rftui.errors import OpRefused
from rftui.training.checkpoint import CheckpointData, load_checkpoint, load_latest
from rftui.training.host import TrainingHost
from rftui.training.toy import make_toy_model, make_toy_tokenizer, toy_loader, write_toy_split

TOTAL = 12
CHUNKS = 4
PER_CHUNK = TOTAL // CHUNKS
NONDETERMINISTIC = {"tokens_per_second"}


@dataclass(frozen=True)
class Data:
    train: str
    eval: str
    root: Path


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Data:
    root = tmp_path_factory.mktemp("correctness")
    # 20 rows / batch 3 = 7 micro-batches per epoch: with accumulation 2 the last step of an epoch has one
    # micro-batch, and chunk boundaries (every 3 steps) fall mid-epoch.
    return Data(write_toy_split(root / "train.jsonl", 20, seed=1), write_toy_split(root / "eval.jsonl", 4, seed=2), root)


def spec(run_id: str, *, lr: float = 2e-3, r: int = 4, dropout: float = 0.0, ga: int = 1, gc: bool = False,
         evals: bool = False, sample: bool = False, **training) -> RunSpec:
    train = dict(learning_rate=lr, per_device_train_batch_size=3, gradient_accumulation_steps=ga, logging_steps=1,
                 gradient_checkpointing=gc, max_length=48, warmup_steps=2, lr_scheduler_type="cosine",
                 weight_decay=0.01, seed=11)
    train.update(training)
    if evals:
        train.update(eval_strategy="steps", eval_steps=4, per_device_eval_batch_size=3)
    generation = {"num_samples": 2, "max_new_tokens": 4}
    if sample:
        generation.update(do_sample=True, temperature=1.5, top_k=0)
    return RunSpec(run_id=run_id, label=run_id, model_name="toy", training=train,
                   lora=dict(r=r, lora_alpha=2 * r, target_modules=["q_proj", "v_proj"], lora_dropout=dropout),
                   generation=generation)


RUNS = [
    spec("r1", dropout=0.1, ga=2, evals=True, sample=True),
    spec("r2", lr=1e-3, r=8, gc=True),
    spec("r3", lr=5e-3, dropout=0.05, ga=2),
    spec("r4", lr=3e-3, r=2, evals=True),
]


def quantum(run: RunSpec, data: Data, root: str, start: int, end: int, *, chunk: int = 0, num_chunks: int = 1,
            total: int = TOTAL, checkpoint_dir: str | None = None, warm_from: str | None = None) -> TrainQuantum:
    return TrainQuantum(run=run, chunk=chunk, num_chunks=num_chunks, start_step=start, end_step=end,
                        total_steps=total, train_path=data.train, eval_path=data.eval,
                        checkpoint_root=str(Path(root) / "checkpoints"), adapters_root=str(Path(root) / "adapters"),
                        checkpoint_dir=checkpoint_dir, warm_from=warm_from)


def never() -> None:
    return None


def logged(events, run_id: str) -> list[tuple[int, dict]]:
    return [(e.step, {k: v for k, v in e.metrics.items() if k not in NONDETERMINISTIC})
            for e in events if isinstance(e, StepLogged) and e.run_id == run_id]


def evals(events, run_id: str, key: str) -> list[tuple[int, dict]]:
    return [(e.step, dict(e.metrics)) for e in events if isinstance(e, EvalDone) and e.run_id == run_id
            and key in e.metrics]


def assert_bitwise_equal(a: CheckpointData, b: CheckpointData) -> None:
    assert a.step == b.step
    assert a.adapter.keys() == b.adapter.keys()
    for name in a.adapter:
        assert torch.equal(a.adapter[name], b.adapter[name]), name
    assert a.optimizer_tensors.keys() == b.optimizer_tensors.keys()
    assert any(k.endswith("::exp_avg_sq") for k in a.optimizer_tensors)
    for name in a.optimizer_tensors:
        assert torch.equal(a.optimizer_tensors[name], b.optimizer_tensors[name]), name
    assert a.optimizer == b.optimizer
    assert a.scheduler == b.scheduler
    assert a.rng_tensors.keys() == b.rng_tensors.keys()
    for name in a.rng_tensors:
        assert torch.equal(a.rng_tensors[name], b.rng_tensors[name]), name
    assert a.rng == b.rng
    for key in ("epoch", "batch_in_epoch", "tr_loss", "last_logged_step", "trl_metrics", "tokens_total"):
        assert a.state[key] == b.state[key], key


@pytest.fixture(scope="module")
def solo(data):
    """Each run trained alone in one quantum on a fresh host: (events, final checkpoint, QuantumDone)."""
    cache: dict[str, tuple[list, CheckpointData, QuantumDone]] = {}

    def get(run: RunSpec):
        if run.run_id not in cache:
            events: list = []
            root = data.root / f"solo-{run.run_id}"
            host = TrainingHost(0, model_loader=toy_loader)
            done = host.train_quantum(quantum(run, data, str(root), 0, TOTAL), events.append, never)
            host.close()
            cache[run.run_id] = (events, load_checkpoint(done.checkpoint_dir), done)
        return cache[run.run_id]

    return get


def test_interleaved_chunks_equal_one_chunk_alone(data, solo):
    root = str(data.root / "interleaved")
    host = TrainingHost(0, model_loader=toy_loader)
    events: list = []
    last_dir: dict[str, str | None] = {r.run_id: None for r in RUNS}
    identity: dict[str, int] = {}
    for chunk in range(CHUNKS):
        for run in RUNS:
            start = chunk * PER_CHUNK
            if chunk:
                assert host.holds(run.run_id) == start  # in-memory fast path, not a restore
            done = host.train_quantum(quantum(run, data, root, start, start + PER_CHUNK, chunk=chunk,
                                              num_chunks=CHUNKS, checkpoint_dir=last_dir[run.run_id]),
                                      events.append, never)
            assert done.completed and done.preempted is None and done.steps_done == start + PER_CHUNK
            assert done.train_seconds > 0 and done.switch_seconds >= 0 and done.tokens > 0
            assert (done.adapter_dir is not None) == (chunk == CHUNKS - 1)
            last_dir[run.run_id] = done.checkpoint_dir
            identity.setdefault(run.run_id, id(host._runs[run.run_id]))
            assert identity[run.run_id] == id(host._runs[run.run_id])
    assert len(host._bases) == 1  # one resident base shared by the four adapters
    started = [e for e in events if isinstance(e, QuantumStarted)]
    assert len(started) == CHUNKS * len(RUNS)

    for run in RUNS:
        ref_events, ref_ckpt, _ = solo(run)
        assert logged(events, run.run_id) == logged(ref_events, run.run_id)
        assert len(logged(events, run.run_id)) == TOTAL
        assert evals(events, run.run_id, "eval_loss") == evals(ref_events, run.run_id, "eval_loss")
        # generation metrics at the last chunk boundary match the solo run's (sampling is seeded, RNG preserved)
        assert evals(events, run.run_id, "rougeL")[-1] == evals(ref_events, run.run_id, "rougeL")[-1]
        assert_bitwise_equal(load_latest(Path(root) / "checkpoints", run.run_id), ref_ckpt)
    # chunk-end generation metrics were produced at every chunk boundary
    assert [s for s, _ in evals(events, "r1", "rougeL")] == [3, 6, 9, 12]
    host.close()


def test_restored_from_disk_equals_one_chunk(data, solo):
    run = RUNS[0]  # dropout + accumulation + eval + sampled generation
    root = str(data.root / "restored")
    events: list = []
    checkpoint_dir = None
    host = TrainingHost(0, model_loader=toy_loader)
    for chunk in range(CHUNKS):
        if chunk % 2:  # fresh worker (e.g. after a crash or a move)
            host.close()
            host = TrainingHost(1, model_loader=toy_loader)
        elif chunk:
            host.drop_run(run.run_id)  # same worker, state evicted
        assert host.holds(run.run_id) is None
        start = chunk * PER_CHUNK
        done = host.train_quantum(quantum(run, data, root, start, start + PER_CHUNK, chunk=chunk,
                                          num_chunks=CHUNKS, checkpoint_dir=checkpoint_dir), events.append, never)
        checkpoint_dir = done.checkpoint_dir
    host.close()
    ref_events, ref_ckpt, _ = solo(run)
    assert logged(events, run.run_id) == logged(ref_events, run.run_id)
    assert evals(events, run.run_id, "eval_loss") == evals(ref_events, run.run_id, "eval_loss")
    assert_bitwise_equal(load_checkpoint(checkpoint_dir), ref_ckpt)


def test_preemption_then_continuation_equals_no_preemption(data, solo):
    run = RUNS[2]
    root = str(data.root / "preempted")
    events: list = []
    host = TrainingHost(0, model_loader=toy_loader)
    polls = iter([None, "stop"])
    done = host.train_quantum(quantum(run, data, root, 0, 6, num_chunks=2), events.append,
                              lambda: next(polls, None))
    assert (done.preempted, done.completed, done.steps_done) == ("stop", False, 2)
    assert Path(done.checkpoint_dir).name == "step-2"
    assert not evals(events, run.run_id, "rougeL")  # no chunk-end metrics for a preempted quantum
    done = host.train_quantum(quantum(run, data, root, 2, 6, num_chunks=2, checkpoint_dir=done.checkpoint_dir),
                              events.append, never)
    assert done.completed and done.steps_done == 6
    # preempted again in the second chunk, then continued on another worker from the checkpoint
    polls = iter([None, None, "shutdown"])
    done = host.train_quantum(quantum(run, data, root, 6, 12, chunk=1, num_chunks=2), events.append,
                              lambda: next(polls, None))
    assert (done.preempted, done.steps_done) == ("shutdown", 9)
    host.close()
    other = TrainingHost(1, model_loader=toy_loader)
    done = other.train_quantum(quantum(run, data, root, 9, 12, chunk=1, num_chunks=2,
                                       checkpoint_dir=done.checkpoint_dir), events.append, never)
    other.close()
    ref_events, ref_ckpt, _ = solo(run)
    assert logged(events, run.run_id) == logged(ref_events, run.run_id)
    assert_bitwise_equal(load_checkpoint(done.checkpoint_dir), ref_ckpt)


@pytest.mark.parametrize("ga,logging_steps,dropout,gc", [(1, 1, 0.0, False), (2, 2, 0.1, True), (2, 1, 0.0, False)])
def test_logged_losses_equal_trl(data, ga, logging_steps, dropout, gc):
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import set_seed
    from trl import SFTConfig, SFTTrainer

    from rftui.training.sft_setup import read_jsonl

    steps = 10
    run = spec("trl", lr=3e-3, dropout=dropout, ga=ga, gc=gc, logging_steps=logging_steps)
    tok = make_toy_tokenizer()
    set_seed(run.training["seed"])
    peft_model = get_peft_model(make_toy_model(tok), LoraConfig(task_type="CAUSAL_LM", **run.lora))
    args = SFTConfig(output_dir=str(data.root / "trl-out"), report_to="none", bf16=False, use_cpu=True,
                     max_steps=steps, save_strategy="no", disable_tqdm=True, **run.training)
    trainer = SFTTrainer(model=peft_model, args=args, train_dataset=Dataset.from_list(read_jsonl(data.train)),
                         processing_class=tok)
    trainer.train()
    reference = [h for h in trainer.state.log_history if "loss" in h]

    events: list = []
    host = TrainingHost(0, model_loader=toy_loader)
    host.train_quantum(quantum(run, data, str(data.root / f"trl-{ga}-{logging_steps}"), 0, steps, total=steps),
                       events.append, never)
    host.close()
    mine = logged(events, "trl")
    assert [h["step"] for h in reference] == [step for step, _ in mine]
    assert len(mine) == math.ceil(steps / logging_steps) - (steps % logging_steps != 0)
    for ref, (_, got) in zip(reference, mine):
        for key in ("loss", "grad_norm", "learning_rate", "epoch", "mean_token_accuracy", "num_tokens"):
            assert got[key] == pytest.approx(ref[key], rel=1e-5), key


def test_warm_start_copies_state_and_refuses_other_shapes(data):
    lora = dict(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj"])
    base = spec("parent", lr=1e-2)
    parent = replace(base, lora=lora)
    root = str(data.root / "warm")
    host = TrainingHost(0, model_loader=toy_loader)
    events: list = []
    mid = host.train_quantum(quantum(parent, data, root, 0, 10, total=20), events.append, never)
    end = host.train_quantum(quantum(parent, data, root, 10, 20, total=20), events.append, never)
    parent_losses = [m["loss"] for _, m in logged(events, "parent")]

    # Same config, warm-started from the parent's step-10 checkpoint at step 10: continues exactly like the parent
    # (no dropout, same seed, same LR schedule position, same data position).
    twin = replace(parent, run_id="twin", label="twin")
    host.train_quantum(quantum(twin, data, root, 10, 20, total=20, warm_from=mid.checkpoint_dir), events.append, never)
    assert [m["loss"] for _, m in logged(events, "twin")] == parent_losses[10:]

    # A clone with a new learning rate starting at step 0: parent's adapter and moments, its own LR.
    child = replace(parent, run_id="child", label="child",
                    training={**parent.training, "learning_rate": 5e-3, "lr_scheduler_type": "constant"})
    start = host.train_quantum(quantum(child, data, root, 0, 0, total=4, warm_from=end.checkpoint_dir),
                               events.append, never)
    snapshot, parent_ckpt = load_checkpoint(start.checkpoint_dir), load_checkpoint(end.checkpoint_dir)
    for name, tensor in parent_ckpt.adapter.items():
        assert torch.equal(snapshot.adapter[name], tensor)
    for name, tensor in parent_ckpt.optimizer_tensors.items():
        assert torch.equal(snapshot.optimizer_tensors[name], tensor)
    assert {g["lr"] for g in snapshot.optimizer["param_groups"]} == {5e-3}
    assert (snapshot.state["epoch"], snapshot.state["batch_in_epoch"]) == (
        parent_ckpt.state["epoch"], parent_ckpt.state["batch_in_epoch"])
    host.train_quantum(quantum(child, data, root, 0, 4, total=4, checkpoint_dir=start.checkpoint_dir),
                       events.append, never)
    fresh = replace(child, run_id="fresh", label="fresh")
    host.train_quantum(quantum(fresh, data, root, 0, 4, total=4), events.append, never)
    child_first = logged(events, "child")[0][1]["loss"]
    fresh_first = logged(events, "fresh")[0][1]["loss"]
    assert abs(child_first - parent_losses[-1]) < 0.15
    assert child_first < fresh_first - 0.25

    for bad_lora in (dict(lora, r=4), dict(lora, target_modules=["q_proj", "v_proj"])):
        bad = replace(parent, run_id="bad", label="bad", lora=bad_lora)
        with pytest.raises(OpRefused, match="warm-start"):
            host.train_quantum(quantum(bad, data, root, 0, 2, total=2, warm_from=end.checkpoint_dir),
                               events.append, never)
        assert host.holds("bad") is None
    host.close()


def test_mixed_precision_on_cpu_warns_once_and_trains_fp32(data):
    run = spec("amp", bf16=True)
    host = TrainingHost(0, model_loader=toy_loader)
    events: list = []
    root = str(data.root / "amp")
    done = host.train_quantum(quantum(run, data, root, 0, 2, total=4), events.append, never)
    host.drop_run("amp")
    host.train_quantum(quantum(run, data, root, 2, 4, total=4, checkpoint_dir=done.checkpoint_dir),
                       events.append, never)
    host.close()
    warnings = [e for e in events if isinstance(e, WorkerWarning)]
    assert len(warnings) == 1 and "bf16" in warnings[0].message and warnings[0].run_id == "amp"
    assert all(t.dtype == torch.float32 for t in load_latest(Path(root) / "checkpoints", "amp").adapter.values())
    assert len(logged(events, "amp")) == 4


def test_final_adapter_loads_with_peft(data, solo):
    from peft import PeftModel

    run = RUNS[1]
    _, ckpt, done = solo(run)
    adapter_dir = Path(done.adapter_dir)
    assert adapter_dir.name == run.run_id and (adapter_dir / "adapter_config.json").exists()
    assert not list(adapter_dir.parent.glob(".tmp-*"))
    tok = make_toy_tokenizer()
    loaded = PeftModel.from_pretrained(make_toy_model(tok), str(adapter_dir))
    weights = {n.replace(".default.", "."): p for n, p in loaded.named_parameters() if "lora_" in n}
    assert weights.keys() == ckpt.adapter.keys()
    for name, tensor in ckpt.adapter.items():
        assert torch.equal(weights[name], tensor)


def test_full_fine_tuning_run(data):
    run = replace(spec("full"), lora=None)
    host = TrainingHost(0, model_loader=toy_loader)
    events: list = []
    root = str(data.root / "full")
    done = host.train_quantum(quantum(run, data, root, 0, 2, total=2), events.append, never)
    host.close()
    assert sum(isinstance(e, WorkerWarning) and "full fine-tuning" in e.message for e in events) == 1
    ckpt = load_checkpoint(done.checkpoint_dir)
    assert "lm_head.weight" in ckpt.adapter
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(done.adapter_dir)
    assert torch.equal(model.lm_head.weight, ckpt.adapter["lm_head.weight"])
    assert np.isfinite([m["loss"] for _, m in logged(events, "full")]).all()


def test_building_a_run_leaves_the_shared_model_where_the_host_put_it(data, monkeypatch):
    """A Trainer moves its whole model to the device when built; the model is the base every run shares, so on a
    GPU each new run would pull all offloaded adapters back on. The host places models itself."""
    from transformers import Trainer

    moves: list = []
    monkeypatch.setattr(Trainer, "_move_model_to_device", lambda self, model, device: moves.append(device))
    host = TrainingHost(0, model_loader=toy_loader)
    events: list = []
    for run in (spec("p1"), spec("p2", r=8), replace(spec("p3"), lora=None)):
        host.train_quantum(quantum(run, data, str(data.root / "placed"), 0, 1, total=1), events.append, never)
        assert not host._runs[run.run_id].trainer.place_model_on_device
    host.close()
    assert moves == []


@pytest.fixture
def deterministic_cuda():
    """Bitwise comparisons on a GPU need kernels without atomics: math attention, deterministic algorithms."""
    flash, efficient = torch.backends.cuda.flash_sdp_enabled(), torch.backends.cuda.mem_efficient_sdp_enabled()
    torch.backends.cuda.enable_flash_sdp(False)
    torch.backends.cuda.enable_mem_efficient_sdp(False)
    torch.use_deterministic_algorithms(True, warn_only=True)
    yield
    torch.use_deterministic_algorithms(False)
    torch.backends.cuda.enable_flash_sdp(flash)
    torch.backends.cuda.enable_mem_efficient_sdp(efficient)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_offloaded_and_restored_runs_match_solo(data, deterministic_cuda):
    """fp32 on the GPU, adapters offloaded to host memory between quanta (1-byte budget), one run restored from
    disk: the same result as each run trained alone."""
    runs = [spec("c1", dropout=0.1, ga=2, evals=True), spec("c2", lr=1e-3, r=8)]
    root = data.root / "cuda"
    host = TrainingHost(0, device="cuda", model_loader=toy_loader, adapter_budget_bytes=1)
    events: list = []
    last: dict[str, str] = {}
    for chunk in range(2):
        for run in runs:
            if chunk == 1 and run.run_id == "c2":
                host.drop_run("c2")
            start = chunk * 6
            done = host.train_quantum(quantum(run, data, str(root), start, start + 6, chunk=chunk, num_chunks=2,
                                              checkpoint_dir=last.get(run.run_id)), events.append, never)
            last[run.run_id] = done.checkpoint_dir
    assert host._runs["c1"].offloaded and not host._runs["c2"].offloaded
    assert all(p.device.type == "cpu" for p in host._runs["c1"].params.values())
    host.close()
    for run in runs:
        solo_events: list = []
        solo_host = TrainingHost(0, device="cuda", model_loader=toy_loader)
        done = solo_host.train_quantum(quantum(run, data, str(root / f"solo-{run.run_id}"), 0, TOTAL),
                                       solo_events.append, never)
        solo_host.close()
        assert logged(events, run.run_id) == logged(solo_events, run.run_id)
        assert_bitwise_equal(load_checkpoint(last[run.run_id]), load_checkpoint(done.checkpoint_dir))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_cuda_mixed_precision_trains_and_resumes(data, precision):
    run = spec(f"amp-{precision}", dropout=0.1, **{precision: True})
    root = str(data.root / f"cuda-{precision}")
    host = TrainingHost(0, device="cuda", model_loader=toy_loader)
    events: list = []
    done = host.train_quantum(quantum(run, data, root, 0, 3, total=6), events.append, never)
    host.drop_run(run.run_id)
    done = host.train_quantum(quantum(run, data, root, 3, 6, total=6, checkpoint_dir=done.checkpoint_dir),
                              events.append, never)
    host.close()
    assert not [e for e in events if isinstance(e, WorkerWarning)]
    losses = [m["loss"] for _, m in logged(events, run.run_id)]
    assert len(losses) == 6 and np.isfinite(losses).all()
    assert done.adapter_dir
    scaler = load_checkpoint(done.checkpoint_dir).state["scaler"]
    assert (scaler is None) == (precision == "bf16")  # fp16 keeps a per-run GradScaler, checkpointed
