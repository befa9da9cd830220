"""TrainingHost: lives inside a worker process and trains many runs, one quantum at a time, as LoRA adapters on
shared resident base models (full fine-tuning runs get their own model copy)."""
from __future__ import annotations

import gc
import logging
import shutil
import tempfile
import time
import warnings
from collections import OrderedDict
from typing import Any, Callable

import torch

from rftui.config.generation import greedy_note, ignored_sampling_keys
from rftui.config.runspec import RunSpec
from rftui.engine.messages import EvalDone, QuantumDone, QuantumStarted, StepLogged, TrainQuantum, WorkerWarning
from rftui.errors import RftuiError
from rftui.training.bases import ModelLoader, ResidentBase, ResidentBases, default_loader, load_model
from rftui.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from rftui.training.evaluation import can_generate, eval_loss, generate_predictions
from rftui.training.export import export_final, safe_name
from rftui.training.loop import log_metrics, train_one_step, wants_eval, wants_log
from rftui.training.metrics import generation_metrics
from rftui.training.offload import bring_to_device, offload_to_host
from rftui.training.run_builder import accelerate_state_kept, build_run
from rftui.training.run_state import (
    RunState, capture_checkpoint, capture_rng, preserved_rng, restore_rng, restore_run,
)
from rftui.training.sft_setup import PreparedDataCache
from rftui.training.warm_start import apply_warm_start, check_warm_compatible


class TrainingHost:
    """Trains runs quantum by quantum; a run's state stays in memory between its quanta (fast path) and is
    checkpointed at every quantum boundary, so any worker can continue it bitwise from disk."""

    def __init__(self, worker_id: int, device: str = "cpu", model_loader: ModelLoader | None = None,
                 log: logging.Logger | None = None, adapter_budget_bytes: int | None = None,
                 hooks: dict[str, Callable] | None = None, max_bases: int = 2, *,
                 create_model: Callable[[dict], tuple] | str | None = None,
                 hooks_base_dir: str | None = None, num_threads: int | None = None,
                 fail_at: dict | list[dict] | None = None, **options: Any):
        """`model_loader(name, model_kwargs=None, tokenizer_name=None) -> (model, tokenizer)` loads bases
        (default: rftui's loader, which knows the built-in models). `create_model`, when given, is the
        user's RapidFire-style hook `create_model(model_config: dict) -> (model, tokenizer)` and wins over
        `model_loader`; string hooks resolve relative to `hooks_base_dir`. `hooks` maps hook names used in
        RunSpecs (e.g. compute_metrics) to callables. `adapter_budget_bytes` caps adapter + optimizer bytes
        kept on the accelerator (least recently used runs are moved to host memory).

        `fail_at` is a test hook (fault injection): {"run_id": "r1" or "*", "step": N, "error": "oom" | "cuda" |
        "raise"}, or a list of them, raises before optimizer step N of that run; "oom" raises
        torch.OutOfMemoryError, as CUDA does when a batch does not fit, and "cuda" the RuntimeError of a
        device-side assert, so those paths can be tested on a CPU."""
        self.worker_id = worker_id
        if device.startswith("cuda") and torch.cuda.is_available() and torch.cuda.device_count() > 1:
            # transformers puts a non-distributed Trainer on cuda:0 and TRL refuses several visible GPUs.
            raise RftuiError(f"worker {worker_id}: {torch.cuda.device_count()} GPUs are visible, but a worker trains "
                             f"on one: start it with CUDA_VISIBLE_DEVICES=<its GPU index> and device='cuda'")
        self.device = "cuda:0" if device.startswith("cuda") else device  # the one visible GPU, where TRL puts data
        self._loader = model_loader or default_loader
        self._log = log or logging.getLogger(f"rftui.training.worker{worker_id}")
        self._create_model = create_model
        self._hooks_base_dir = hooks_base_dir
        if num_threads:
            torch.set_num_threads(int(num_threads))
        if options:
            self._log.warning("TrainingHost: ignoring unknown options %s", sorted(options))
        self._fail_at = [fail_at] if isinstance(fail_at, dict) else list(fail_at or [])
        self._budget = adapter_budget_bytes
        self._hooks = dict(hooks or {})
        self._bases = ResidentBases(self.device, max_bases, self._load, self._evict_base)
        self._runs: dict[str, RunState] = {}
        self._recency: OrderedDict[str, None] = OrderedDict()
        self._data = PreparedDataCache()
        self._warned: set[tuple[str | None, str]] = set()
        self._workdir = tempfile.mkdtemp(prefix=f"rftui-worker{worker_id}-")
        _quiet_libraries()

    # ------------------------------------------------------------------ public API

    def train_quantum(self, cmd: TrainQuantum, emit: Callable[[Any], None],
                      poll_preempt: Callable[[], str | None]) -> QuantumDone:
        """Train `cmd.run` from `cmd.start_step` to `cmd.end_step` (or until preempted), checkpoint, and report.

        Emits QuantumStarted, StepLogged at logging steps, EvalDone for eval loss / generation metrics and
        WorkerWarning; returns the QuantumDone (the caller sends it). Exceptions propagate (the run's
        in-memory state is dropped first, so a retry restores it from its checkpoint).
        """
        t_start = time.perf_counter()
        run_id = cmd.run.run_id
        end_step = min(cmd.end_step, cmd.total_steps)
        train_s = eval_s = 0.0
        preempted: str | None = None
        try:
            run = self._runs.get(run_id)
            if run is None or not self._holds_at(run, cmd):
                with accelerate_state_kept():
                    run = self._materialize(cmd, emit)
            self._switch_in(run)
            self._settle()
            tokens_before = run.tokens_total
            emit(QuantumStarted(self.worker_id, run_id, cmd.chunk, run.global_step,
                                load_seconds=time.perf_counter() - t_start))
            steps_before = run.global_step
            while run.global_step < end_step:
                self._inject_failure(run_id, run.global_step + 1)
                t_step = time.perf_counter()
                outcome = train_one_step(run)
                self._settle()
                elapsed = time.perf_counter() - t_step
                train_s += elapsed
                run.train_seconds_since_log += elapsed
                if wants_log(run, outcome):
                    emit(StepLogged(run_id, run.global_step, log_metrics(run, outcome)))
                if wants_eval(run, outcome) and run.last_eval_step != run.global_step:
                    t_eval = time.perf_counter()
                    metrics = self._eval_loss(run)
                    eval_s += time.perf_counter() - t_eval
                    if metrics:
                        emit(EvalDone(run_id, run.global_step, metrics))
                if run.global_step < end_step:
                    reason = poll_preempt()
                    if reason:
                        preempted = reason
                        break
            if preempted is None and run.global_step > steps_before:
                t_eval = time.perf_counter()
                metrics = self._generation_metrics(run, emit)
                eval_s += time.perf_counter() - t_eval
                if metrics:
                    emit(EvalDone(run_id, run.global_step, metrics))
            run.rng = capture_rng()
            checkpoint_dir = save_checkpoint(cmd.checkpoint_root, run_id, capture_checkpoint(run),
                                             protect=cmd.checkpoint_dir)
            adapter_dir = export_final(run, cmd.adapters_root) if run.global_step >= cmd.total_steps else None
        except BaseException:
            self._forget(run_id)
            raise
        total = time.perf_counter() - t_start
        return QuantumDone(
            worker_id=self.worker_id, run_id=run_id, chunk=cmd.chunk, steps_done=run.global_step,
            completed=preempted is None, preempted=preempted, checkpoint_dir=checkpoint_dir,
            train_seconds=train_s, switch_seconds=max(0.0, total - train_s - eval_s), eval_seconds=eval_s,
            tokens=run.tokens_total - tokens_before, adapter_dir=adapter_dir,
        )

    def _settle(self) -> None:
        """Wait for the GPU's queued work, so that a clock read after it counts that work (once per step: the
        step already waits for its loss, only the optimizer's kernels are left)."""
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()

    def _inject_failure(self, run_id: str, step: int) -> None:
        """The `fail_at` test hook: raise the simulated error planned for this run and step, if any."""
        for fault in self._fail_at:
            if fault.get("run_id", "*") in (run_id, "*") and int(fault.get("step", 0)) == step:
                where = f"before step {step} of run {run_id} (simulated by the fail_at test hook)"
                kind = fault.get("error", "oom")
                if kind == "oom":
                    raise torch.OutOfMemoryError(f"CUDA out of memory {where}")
                if kind == "cuda":
                    raise RuntimeError(f"CUDA error: device-side assert triggered {where}")
                raise RuntimeError(f"failure {where}")

    def drop_run(self, run_id: str) -> None:
        """Forget a run's in-memory state (adapter, optimizer, trainer); its checkpoints stay on disk."""
        self._forget(run_id)

    def holds(self, run_id: str) -> int | None:
        """The step at which this host holds `run_id` in memory, or None."""
        run = self._runs.get(run_id)
        return None if run is None else run.global_step

    def close(self) -> None:
        for run_id in list(self._runs):
            self._forget(run_id)
        self._bases.clear()
        self._data.clear()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        shutil.rmtree(self._workdir, ignore_errors=True)

    # ------------------------------------------------------------------ making a run resident

    def _holds_at(self, run: RunState, cmd: TrainQuantum) -> bool:
        """Fast path: the run is in memory at exactly `cmd.start_step` with the same config and data. Specs are
        compared by their plain form, since hooks arrive as fresh objects with every command."""
        same = (run.global_step == cmd.start_step and run.total_steps == cmd.total_steps
                and run.train_path == cmd.train_path and run.eval_path == cmd.eval_path
                and run.spec.to_dict() == cmd.run.to_dict())
        if same:
            run.spec = cmd.run
        return same

    def _materialize(self, cmd: TrainQuantum, emit: Callable) -> RunState:
        """Create the run, then restore it from `cmd.checkpoint_dir`, warm-start it, or start it fresh."""
        run_id = cmd.run.run_id
        self._forget(run_id)
        ckpt = warm = None
        if cmd.checkpoint_dir:
            ckpt = load_checkpoint(cmd.checkpoint_dir)
            if ckpt.step != cmd.start_step:
                raise CheckpointError(f"run {run_id}: checkpoint {ckpt.path} is at step {ckpt.step}, "
                                      f"but the quantum starts at step {cmd.start_step}")
        elif cmd.warm_from:
            warm = load_checkpoint(cmd.warm_from)
            check_warm_compatible(cmd.run, warm)
        elif cmd.start_step != 0:
            raise CheckpointError(f"run {run_id}: asked to continue from step {cmd.start_step}, but this worker "
                                  "does not hold the run and no checkpoint_dir was given")
        run = self._create_run(cmd, emit)
        try:
            if ckpt is not None:
                restore_run(run, ckpt)
            elif warm is not None:
                apply_warm_start(run, warm, cmd.start_step)
        except BaseException:
            self._forget(run_id)
            raise
        return run

    def _create_run(self, cmd: TrainQuantum, emit: Callable) -> RunState:
        run_id = cmd.run.run_id
        run = build_run(cmd, self._bases, self._load, self.device, self._workdir, self._data,
                        warn=lambda message: self._warn_once(emit, run_id, message))
        self._runs[run_id] = run
        return run

    def _load(self, spec: RunSpec) -> tuple[Any, Any]:
        return load_model(spec, loader=self._loader, create_model=self._create_model, hooks=self._hooks,
                          hooks_base_dir=self._hooks_base_dir)

    def _evict_base(self, base: ResidentBase) -> None:
        self._log.info("evicting base %s (runs %s)", base.key[0], sorted(base.runs))
        for run_id in list(base.runs):
            self._forget(run_id)

    # ------------------------------------------------------------------ switching and memory

    def _switch_in(self, run: RunState) -> None:
        base = self._bases.touch(run.base_key)
        if run.adapter_name is not None:
            base.peft.set_adapter(run.adapter_name)  # also makes only this adapter trainable
            if base.fused_forward is not None:
                base.model.forward = base.fused_forward
        self._apply_checkpointing(run)
        if run.offloaded:
            bring_to_device(run, self.device)
        self._recency.pop(run.run_id, None)
        self._recency[run.run_id] = None
        self._enforce_budget(run)
        run.model.train()
        restore_rng(run.rng)

    def _apply_checkpointing(self, run: RunState) -> None:
        args = run.trainer.args
        target = self._bases[run.base_key].model if run.adapter_name is not None else run.model
        if not hasattr(args, "activation_checkpointing"):  # transformers before the rename
            want = bool(args.gradient_checkpointing)
            if bool(getattr(target, "is_gradient_checkpointing", False)) != want:
                if want:
                    target.gradient_checkpointing_enable(
                        gradient_checkpointing_kwargs=args.gradient_checkpointing_kwargs or None)
                else:
                    target.gradient_checkpointing_disable()
            return
        want = bool(args.activation_checkpointing)
        if bool(getattr(target, "is_activation_checkpointing", False)) == want:
            return
        if want:
            kwargs = dict(args.activation_checkpointing_kwargs or {})
            every = kwargs.pop("every_n_layers", 1)
            offload = kwargs.pop("offload", False)
            target.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs or None,
                                                   every_n_layers=every, offload=offload)
        else:
            target.activation_checkpointing_disable()

    def _enforce_budget(self, current: RunState) -> None:
        """Offload least recently used runs' adapters + optimizer state to host memory above the budget.
        Only meaningful on an accelerator; on CPU there is nowhere cheaper to move them."""
        if self._budget is None or not self.device.startswith("cuda"):
            return
        resident = [self._runs[r] for r in self._recency if r in self._runs and not self._runs[r].offloaded]
        total = sum(r.param_bytes() for r in resident)
        for run in resident:
            if total <= self._budget:
                break
            if run is current:
                continue
            size = run.param_bytes()
            offload_to_host(run)
            total -= size

    def _forget(self, run_id: str) -> None:
        run = self._runs.pop(run_id, None)
        self._recency.pop(run_id, None)
        for base in self._bases.values():
            if run_id in base.runs:
                base.runs.discard(run_id)
                name = safe_name(run_id)
                if base.peft is not None and name in base.peft.peft_config:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", UserWarning)  # "adapter was active, now deleted"
                        base.peft.delete_adapter(name)
        if run is not None:
            run.epoch_iterator = None
            run.trainer = run.optimizer = run.lr_scheduler = run.model = None

    def _warn_once(self, emit: Callable, run_id: str | None, message: str) -> None:
        if (run_id, message) in self._warned:
            return
        self._warned.add((run_id, message))
        self._log.warning(message)
        emit(WorkerWarning(self.worker_id, run_id, message))

    # ------------------------------------------------------------------ evaluation and export

    def _eval_loss(self, run: RunState) -> dict[str, float]:
        with preserved_rng():
            metrics = eval_loss(run.trainer, run.model, run.amp_dtype)
        run.last_eval_step = run.global_step
        if isinstance(run.lr_scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau) and "eval_loss" in metrics:
            run.lr_scheduler.step(metrics["eval_loss"])
        return metrics

    def _generation_metrics(self, run: RunState, emit: Callable) -> dict[str, float] | None:
        gen = dict(run.spec.generation)
        if not run.eval_rows or not gen.get("enabled", True) or int(gen.get("num_samples", 8)) <= 0:
            return None
        if not can_generate(run.eval_rows[0]):  # plain text rows: no prompt to answer, no reference to compare
            self._warn_once(emit, run.run_id, f"run {run.run_id}: the eval rows are plain text, with no prompt and "
                            "reference completion: ROUGE/BLEU are skipped (eval_loss is still computed)")
            return None
        ignored = ignored_sampling_keys(gen)  # else the only trace is a transformers line in the worker log
        if ignored:
            self._warn_once(emit, run.run_id, f"run {run.run_id}: {greedy_note(ignored)}")
        with preserved_rng():
            predictions, references = generate_predictions(
                run.model, run.trainer.processing_class, run.eval_rows, gen, device=self.device,
                amp_dtype=run.amp_dtype, default_seed=run.seed, max_length=run.trainer.args.max_length)
        return generation_metrics(predictions, references, run.spec.compute_metrics, self._hooks,
                                  self._hooks_base_dir)


def _quiet_libraries() -> None:
    """No progress bars from datasets/transformers inside a worker (its stderr is a log file)."""
    try:
        import datasets

        datasets.disable_progress_bars()
    except Exception:  # noqa: BLE001
        pass
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except Exception:  # noqa: BLE001
        pass
