"""The optimizer-step loop, mirroring transformers' `Trainer._run_epoch` for one process, one step at a time.

Each call of `train_one_step` does exactly what one iteration of `_run_epoch`'s outer loop does: fetch
`gradient_accumulation_steps` micro-batches (fewer for the last step of an epoch) with TRL's
`get_batch_samples`, run TRL's `training_step` on each (loss normalised by `num_items_in_batch`),
accumulate the logged loss like `_tr_loss`, clip with `max_grad_norm`, step the optimizer, read the
LR, step the scheduler, zero the grads. The data position (epoch, micro-batch in epoch) lives in the
run, so the loop can stop after any optimizer step and resume later, in memory or from a checkpoint.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from rftui.training.run_state import RunState, preserved_rng


@dataclass
class StepOutcome:
    grad_norm: Any           # tensor (or float) before clipping, as Trainer logs it
    learning_rate: float     # LR used by this step (read before the scheduler step, like Trainer)
    epoch_float: float       # epoch + fraction, like TrainerState.epoch
    epoch_end: bool          # this step consumed the last batch of the epoch, or reached total_steps
    tokens: int              # non-padding tokens in this step's micro-batches


def open_epoch_iterator(run: RunState) -> None:
    """Start iterating epoch `run.epoch` at micro-batch `run.batch_in_epoch`.

    At an epoch start this behaves exactly like `_run_epoch` (the sampler is seeded by seed + epoch;
    creating the torch iterator draws from the run's RNG, as it does in TRL). Mid-epoch (a run restored
    from a checkpoint, or warm-started) the same order is rebuilt and the consumed batches skipped under
    a preserved RNG, so the run's RNG stream is the one it had when the batches were first drawn.
    """
    dataloader = run.train_dataloader
    if hasattr(dataloader, "set_epoch"):
        dataloader.set_epoch(run.epoch)
    shard_wrapper = getattr(dataloader, "batch_sampler", None)
    inner = getattr(shard_wrapper, "batch_sampler", None)
    if hasattr(inner, "set_epoch"):
        inner.set_epoch(run.epoch)
    iterator = iter(dataloader)
    if run.batch_in_epoch:
        with preserved_rng():
            for _ in range(run.batch_in_epoch):
                next(iterator)
    run.epoch_iterator = iterator


def _count_tokens(inputs: dict, pad_token_id: int | None) -> int:
    if "attention_mask" in inputs:
        return int(inputs["attention_mask"].sum())
    ids = inputs.get("input_ids")
    if ids is None:
        return 0
    if pad_token_id is not None and "position_ids" not in inputs:
        return int((ids != pad_token_id).sum())
    return int(ids.numel())


def train_one_step(run: RunState) -> StepOutcome:
    """One optimizer step of `run` (its adapter must be active and its RNG restored)."""
    trainer, args, model = run.trainer, run.trainer.args, run.model
    accumulation = args.gradient_accumulation_steps
    if run.epoch_iterator is None or run.batch_in_epoch >= run.steps_in_epoch:
        if run.batch_in_epoch >= run.steps_in_epoch:
            run.epoch += 1
            run.batch_in_epoch = 0
        open_epoch_iterator(run)
    update_step = run.batch_in_epoch // accumulation
    remainder = run.steps_in_epoch % accumulation or accumulation
    num_batches = accumulation if update_step != run.updates_per_epoch - 1 else remainder
    batches, num_items = trainer.get_batch_samples(run.epoch_iterator, num_batches, args.device)
    if not batches:
        raise RuntimeError(f"run {run.run_id}: the training data ran out at epoch {run.epoch}, "
                           f"batch {run.batch_in_epoch} of {run.steps_in_epoch}")
    trainer.current_gradient_accumulation_steps = len(batches)
    trainer.state.global_step = run.global_step
    pad_id = getattr(trainer.processing_class, "pad_token_id", None)
    tokens = 0
    for i, inputs in enumerate(batches):
        trainer.accelerator.gradient_state._set_sync_gradients(i == len(batches) - 1)
        tokens += _count_tokens(inputs, pad_id)
        loss_step = trainer.training_step(model, inputs, num_items)  # autocast, if any, is the trainer's (host.py)
        if args.logging_nan_inf_filter and (torch.isnan(loss_step) or torch.isinf(loss_step)):
            run.tr_loss += run.tr_loss / (1 + run.global_step - run.last_logged_step)
        else:
            run.tr_loss += loss_step
    run.batch_in_epoch += len(batches)

    optimizer, scheduler = run.optimizer, run.lr_scheduler
    if run.scaler is not None:
        run.scaler.unscale_(optimizer)
    max_norm = args.max_grad_norm if args.max_grad_norm and args.max_grad_norm > 0 else float("inf")
    # Only this run's parameters hold gradients; walking model.parameters() would also visit the frozen
    # base and every other run's adapter on it, each step. Same tensors, same order: the same norm.
    params = list(run.params.values())
    grad_norm = trainer.accelerator.clip_grad_norm_(params, max_norm)
    skipped = False
    if run.scaler is not None:
        scale = run.scaler.get_scale()
        run.scaler.step(optimizer)
        run.scaler.update()
        skipped = run.scaler.get_scale() < scale
    else:
        optimizer.step()
    learning_rate = scheduler.get_last_lr()[0]
    if torch.is_tensor(learning_rate):
        learning_rate = learning_rate.item()
    if not skipped and not isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.step()
    for param in params:
        param.grad = None
    run.global_step += 1
    run.tokens_total += tokens
    run.tokens_since_log += tokens
    epoch_float = run.epoch + run.batch_in_epoch / run.steps_in_epoch
    epoch_end = run.batch_in_epoch >= run.steps_in_epoch or run.global_step >= run.total_steps
    return StepOutcome(grad_norm, learning_rate, epoch_float, epoch_end, tokens)


def wants_log(run: RunState, outcome: StepOutcome) -> bool:
    """DefaultFlowCallback's logging decision for the step just taken."""
    s, step = run.schedule, run.global_step
    due = (step == 1 and s.logging_first_step) or (
        s.logging_strategy == "steps" and s.logging_steps > 0 and step % s.logging_steps == 0)
    due = due or (outcome.epoch_end and s.logging_strategy == "epoch")
    return due and step > run.last_logged_step


def wants_eval(run: RunState, outcome: StepOutcome) -> bool:
    """DefaultFlowCallback's evaluation decision (including the extra evaluation at the last step)."""
    s, step = run.schedule, run.global_step
    if s.eval_strategy == "steps":
        return s.eval_delay <= step and (step % s.eval_steps == 0 or step >= run.total_steps)
    if s.eval_strategy == "epoch":
        return outcome.epoch_end and s.eval_delay <= outcome.epoch_float
    return False


def log_metrics(run: RunState, outcome: StepOutcome) -> dict[str, float]:
    """The metrics Trainer/SFTTrainer log at this step; resets the logging accumulators like
    `_maybe_log_save_evaluate`: loss = summed micro-batch losses since the last log / steps since."""
    tr_loss_scalar = run.tr_loss.item()
    run.tr_loss -= run.tr_loss
    metrics: dict[str, float] = {"loss": tr_loss_scalar / (run.global_step - run.last_logged_step)}
    if outcome.grad_norm is not None:
        gn = outcome.grad_norm
        metrics["grad_norm"] = gn.item() if torch.is_tensor(gn) else float(gn)
    metrics["learning_rate"] = float(outcome.learning_rate)
    trl_metrics = run.trainer._metrics["train"]
    for key, values in trl_metrics.items():
        if values:
            metrics[key] = float(sum(values) / len(values))
    trl_metrics.clear()
    metrics["epoch"] = outcome.epoch_float
    if run.train_seconds_since_log > 0:
        metrics["tokens_per_second"] = run.tokens_since_log / run.train_seconds_since_log
    run.tokens_since_log = 0
    run.train_seconds_since_log = 0.0
    run.last_logged_step = run.global_step
    return {k: v for k, v in metrics.items() if not (isinstance(v, float) and math.isnan(v) and k != "loss")}
