"""Warm start (clone with warm start): a new run begins from another run's checkpoint."""
from __future__ import annotations

import warnings

from rftui.config.runspec import RunSpec
from rftui.errors import OpRefused
from rftui.training.checkpoint import CheckpointData, CheckpointError
from rftui.training.run_state import RunState, load_optimizer_state, load_weights, lora_signature, rng_from_files


def check_warm_compatible(spec: RunSpec, parent: CheckpointData) -> None:
    """Refuse (OpRefused) when the source's trainable tensors cannot be this run's: other base model, LoRA vs
    full fine-tuning, or another LoRA r / target_modules / modules_to_save."""
    mine, theirs = lora_signature(spec), parent.state.get("lora")
    source = parent.path
    if parent.state.get("model_name") not in (None, spec.model_name):
        raise OpRefused(f"run {spec.run_id}: cannot warm-start from {source}: it trained "
                        f"{parent.state.get('model_name')!r}, this run uses {spec.model_name!r}")
    if (mine is None) != (theirs is None):
        kinds = ("full fine-tuning", "LoRA")
        raise OpRefused(f"run {spec.run_id}: cannot warm-start {kinds[mine is not None]} from a "
                        f"{kinds[theirs is not None]} checkpoint ({source})")
    if mine is not None:
        for key in ("r", "target_modules", "modules_to_save"):
            if mine.get(key) != theirs.get(key):
                raise OpRefused(f"run {spec.run_id}: cannot warm-start from {source}: LoRA {key} is "
                                f"{mine.get(key)!r} here but {theirs.get(key)!r} in the source; keep r and "
                                "target_modules, or clone without warm start")


def apply_warm_start(run: RunState, parent: CheckpointData, start_step: int) -> None:
    """Start `run` from another run's checkpoint: adapter weights, optimizer moments (exp_avg, exp_avg_sq, step)
    and data position (epoch, rows consumed in it) are copied; the step counter is `start_step`; logging
    accumulators are the new run's own. The RNG (dropout) is the source's too unless the clone has another
    seed, so a clone with nothing edited continues exactly like its source.

    LR rule: the new run keeps its own learning rate and schedule (type, warmup, total_steps); the schedule is
    positioned at `start_step`, so the first warm step uses `new_learning_rate * schedule(start_step)`. With an
    unchanged learning rate and schedule this is exactly the source's LR at that step (the clone continues like
    the source); with a new learning rate the optimizer groups' lr and the scheduler's base_lrs are the new
    one, i.e. the source's schedule rescaled by new_lr / old_lr from that step on.
    """
    try:
        load_weights(run, parent.adapter, str(parent.path))
        load_optimizer_state(run, parent, keep_hyperparameters=True)
    except CheckpointError as exc:
        raise OpRefused(f"run {run.run_id}: cannot warm-start from {parent.path}: {exc}") from exc
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "lr_scheduler.step() before optimizer.step()"
        for _ in range(start_step):
            run.lr_scheduler.step()
    if parent.state.get("seed") == run.seed:
        run.rng = rng_from_files(parent.rng_tensors, parent.rng)
    accumulation = run.trainer.args.gradient_accumulation_steps
    batch = position_in_epoch(parent.state, run.steps_in_epoch, int(run.trainer.args.per_device_train_batch_size))
    batch = min(batch - batch % accumulation, run.steps_in_epoch)  # an optimizer-step boundary of this run
    run.epoch, run.batch_in_epoch = int(parent.state.get("epoch", 0)), batch
    run.epoch_iterator = None
    run.global_step = run.last_logged_step = start_step


def position_in_epoch(state: dict, steps_in_epoch: int, batch_size: int) -> int:
    """The source's position in its epoch as this run's micro-batches: the same rows consumed, also when the
    clone has another batch size (the epoch's row order depends on the seed, not on the batch size)."""
    batch, source_steps = int(state.get("batch_in_epoch", 0)), state.get("steps_in_epoch")
    if source_steps and batch >= source_steps:
        return steps_in_epoch  # the epoch is used up
    source_size = state.get("train_batch_size")
    if source_size:
        return batch * int(source_size) // batch_size
    if source_steps and source_steps != steps_in_epoch:  # older checkpoints: the same fraction of the epoch
        return batch * steps_in_epoch // int(source_steps)
    return batch
