"""Building a run for the training host: its SFTConfig, its LoRA adapter on a resident base (or its own model
copy for full fine-tuning), its trainer, optimizer, scheduler and dataloader, and TRL's logging schedule."""
from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import Any, Callable

import torch

from rftui.config.runspec import RunSpec
from rftui.engine.messages import TrainQuantum
from rftui.errors import RftuiError
from rftui.training.bases import ResidentBases, place_model
from rftui.training.evaluation import autocast_for
from rftui.training.export import safe_name
from rftui.training.lora_check import missing_targets
from rftui.training.run_state import LogSchedule, RunState, capture_rng
from rftui.training.sft_setup import (
    PreparedDataCache, build_sft_config, build_trainer, dropped_rows, seed_train_sampler,
)


def build_run(cmd: TrainQuantum, bases: ResidentBases, load: Callable[[RunSpec], tuple[Any, Any]], device: str,
              workdir: str, data: PreparedDataCache, warn: Callable[[str], None]) -> RunState:
    """A fresh run at step 0 (the caller restores or warm-starts it). `warn` reports a warning about the run;
    a LoRA run is in its base's `runs` before anything can fail, so the host's clean-up finds its adapter."""
    from peft import LoraConfig, get_peft_model
    from transformers import set_seed

    spec = cmd.run
    run_id = spec.run_id
    seed = int(spec.training.get("seed", cmd.seed))
    out_dir = str(Path(workdir) / safe_name(run_id))
    run_args = build_sft_config(run_id, spec.training, output_dir=out_dir, total_steps=cmd.total_steps,
                                seed=seed, device=device, has_eval=bool(cmd.eval_path))
    for note in run_args.warnings:
        warn(note)
    base = bases.get(spec)
    set_seed(seed)  # adapter init draws from it, as in TRL (SFTTrainer seeds before get_peft_model)
    adapter = None
    if spec.lora is not None:
        adapter = safe_name(run_id)
        base.runs.add(run_id)  # from here on, a failure is cleaned up by the host's _forget
        try:
            config = LoraConfig(**{"task_type": "CAUSAL_LM", **dict(spec.lora)})
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # PEFT reads a deprecated transformers property
                if base.peft is None:
                    base.peft = get_peft_model(base.model, config, adapter_name=adapter)
                else:
                    base.peft.add_adapter(adapter, config)
        except (TypeError, ValueError, KeyError) as exc:
            raise RftuiError(f"run {run_id}: LoRA settings {dict(spec.lora)} do not fit {spec.model_name!r}: "
                             f"{type(exc).__name__}: {exc}") from exc
        missing = missing_targets([n for n, _ in base.model.named_modules()], spec.lora.get("target_modules"))
        if missing:
            raise RftuiError(f"run {run_id}: lora.target_modules {', '.join(missing)} match no module of "
                             f"{spec.model_name!r}; fix the name (see `rftui plan`, which lists the model's layers)")
        base.peft.set_adapter(adapter)
        model = base.peft
        marker = f".{adapter}."
        params = {n.replace(marker, "."): p for n, p in model.named_parameters() if p.requires_grad}
    else:
        warn(f"run {run_id}: full fine-tuning (no LoRA): the run holds its own copy of "
             "the whole model and optimizer; switching it in and out moves all of it")
        model, _ = load(spec)
        place_model(model, device)
        params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    base.runs.add(run_id)
    tokenizer_key = base.key
    eval_for_loss = cmd.eval_path if run_args.eval_strategy != "no" else None  # generation reads raw rows
    trainer = build_trainer(model, base.tokenizer, run_args, train_path=cmd.train_path, eval_path=eval_for_loss,
                            tokenizer_key=tokenizer_key, cache=data)
    dropped, given = dropped_rows(trainer, data, cmd.train_path)
    if dropped:
        warn(f"run {run_id}: {dropped} of {given} training rows dropped: their prompt "
             f"fills max_length={trainer.args.max_length}, leaving no completion token "
             "(raise training.max_length to keep them)")
    if adapter is not None:  # TRL patches the base's forward in every SFTTrainer; keep exactly one patch
        if base.fused_forward is None:
            base.fused_forward = base.model.__dict__.get("forward")
        else:
            base.model.forward = base.fused_forward
    if run_args.amp_dtype is not None:
        # Mixed precision as TRL has it: the forward and the loss under autocast, the backward outside it.
        amp = (device, run_args.amp_dtype)
        trainer.autocast_smart_context_manager = lambda cache_enabled=True: autocast_for(*amp)
    args = trainer.args
    trainer.create_optimizer()
    optimizer = trainer.optimizer
    scheduler = trainer.create_scheduler(num_training_steps=cmd.total_steps, optimizer=optimizer)
    dataloader = trainer.get_train_dataloader()
    seed_train_sampler(dataloader, args.data_seed if args.data_seed is not None else seed)
    steps_in_epoch = len(dataloader)
    accumulation = args.gradient_accumulation_steps
    updates = max(steps_in_epoch // accumulation + int(steps_in_epoch % accumulation > 0), 1)
    scaler = None
    if run_args.amp_dtype == torch.float16:
        scaler = torch.amp.GradScaler("cuda")
        trainer.accelerator.scaler = scaler  # TRL's training_step backpropagates through it
    schedule = LogSchedule(
        logging_strategy=str(getattr(args.logging_strategy, "value", args.logging_strategy)),
        logging_steps=_absolute(args.logging_steps, cmd.total_steps),
        logging_first_step=bool(args.logging_first_step),
        eval_strategy=run_args.eval_strategy, eval_steps=run_args.eval_steps, eval_delay=float(args.eval_delay or 0),
        logging_nan_inf_filter=bool(args.logging_nan_inf_filter),
    )
    run = RunState(
        spec=spec, base_key=base.key, adapter_name=adapter, model=model, trainer=trainer, optimizer=optimizer,
        lr_scheduler=scheduler, train_dataloader=dataloader, params=params, total_steps=cmd.total_steps,
        seed=seed, schedule=schedule, steps_in_epoch=steps_in_epoch, updates_per_epoch=updates,
        eval_rows=data.rows(cmd.eval_path) if cmd.eval_path else [], amp_dtype=run_args.amp_dtype,
        scaler=scaler, train_path=cmd.train_path, eval_path=cmd.eval_path,
    )
    run.tr_loss = torch.tensor(0.0, device=args.device)
    run.rng = capture_rng()  # = set_seed(seed) state, as at the start of TRL's train()
    return run


@contextlib.contextmanager
def accelerate_state_kept():
    """Building a run's SFTConfig resets accelerate's process-wide AcceleratorState, which only the new Trainer's
    Accelerator sets up again: when building the run fails in between (its create_model hook raises, say), put the
    previous state back, or every run still resident in this worker fails at its next step."""
    from accelerate.state import AcceleratorState, PartialState

    saved = [(cls, dict(cls._shared_state)) for cls in (PartialState, AcceleratorState)]
    try:
        yield
    except BaseException:
        if saved[1][1]:
            for cls, state in saved:
                cls._shared_state.clear()
                cls._shared_state.update(state)
        raise


def _absolute(value: float, total_steps: int) -> int:
    import math

    value = float(value)
    return max(1, math.ceil(total_steps * value)) if 0 < value < 1 else int(value)
