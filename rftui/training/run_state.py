"""One run's training state inside a worker (adapter params, optimizer, scheduler, RNG, data position, logging
accumulators), and its exact conversion to and from a `CheckpointData`."""
from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import torch

from rftui.config.runspec import RunSpec
from rftui.training.checkpoint import CheckpointData, CheckpointError

# ----------------------------------------------------------------------------- RNG


def capture_rng() -> dict[str, Any]:
    """The process-global RNG states a training step can draw from: torch CPU + CUDA, python, numpy."""
    state = {"torch": torch.random.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.random.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextlib.contextmanager
def preserved_rng() -> Iterator[None]:
    """Run a block without disturbing the caller's RNG stream (evaluation, generation, data skipping)."""
    state = capture_rng()
    try:
        yield
    finally:
        restore_rng(state)


def rng_to_files(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"torch": state["torch"].clone()}
    for i, cuda_state in enumerate(state.get("cuda", [])):
        tensors[f"cuda.{i}"] = cuda_state.clone()
    version, internal, gauss = state["python"]
    name, keys, pos, has_gauss, cached = state["numpy"]
    doc = {"python": [version, list(internal), gauss],
           "numpy": [name, np.asarray(keys).tolist(), int(pos), int(has_gauss), float(cached)]}
    return tensors, doc


def rng_from_files(tensors: dict[str, torch.Tensor], doc: dict[str, Any]) -> dict[str, Any]:
    version, internal, gauss = doc["python"]
    name, keys, pos, has_gauss, cached = doc["numpy"]
    state = {"torch": tensors["torch"].to(torch.uint8),
             "python": (version, tuple(internal), gauss),
             "numpy": (name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached)}
    cuda = [tensors[k] for k in sorted((k for k in tensors if k.startswith("cuda.")), key=lambda k: int(k[5:]))]
    if cuda:
        state["cuda"] = cuda
    return state


# ----------------------------------------------------------------------------- the run


@dataclass
class LogSchedule:
    """When to log and evaluate, resolved like transformers' DefaultFlowCallback for this run's total steps."""

    logging_strategy: str
    logging_steps: int
    logging_first_step: bool
    eval_strategy: str
    eval_steps: int
    eval_delay: float
    logging_nan_inf_filter: bool


@dataclass
class RunState:
    """A run held in memory by a TrainingHost. `params` maps canonical names (adapter name stripped) to the
    run's trainable parameters, in the order the optimizer sees them."""

    spec: RunSpec
    base_key: tuple
    adapter_name: str | None
    model: Any
    trainer: Any
    optimizer: Any
    lr_scheduler: Any
    train_dataloader: Any
    params: dict[str, torch.nn.Parameter]
    total_steps: int
    seed: int
    schedule: LogSchedule
    steps_in_epoch: int
    updates_per_epoch: int
    eval_rows: list[dict]
    amp_dtype: torch.dtype | None = None
    scaler: Any = None
    train_path: str = ""
    eval_path: str | None = None
    rng: dict[str, Any] = field(default_factory=dict)
    # data position and step counter
    global_step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0          # micro-batches of `epoch` already consumed
    epoch_iterator: Any = None       # live iterator; memory only (rebuilt from (epoch, batch_in_epoch))
    # logging accumulators (Trainer's _tr_loss / _globalstep_last_logged)
    tr_loss: torch.Tensor | None = None
    last_logged_step: int = 0
    last_eval_step: int = -1
    tokens_total: int = 0
    tokens_since_log: int = 0
    train_seconds_since_log: float = 0.0
    offloaded: bool = False
    host_buffers: dict[Any, torch.Tensor] = field(default_factory=dict)  # reused pinned copies (see offload.py)

    @property
    def run_id(self) -> str:
        return self.spec.run_id

    def param_bytes(self) -> int:
        total = sum(p.numel() * p.element_size() for p in self.params.values())
        for state in self.optimizer.state.values():
            total += sum(v.numel() * v.element_size() for v in state.values() if torch.is_tensor(v))
        return total


def lora_signature(spec: RunSpec) -> dict[str, Any] | None:
    """The LoRA settings that decide the adapter's tensor shapes (warm starts must agree on them)."""
    if spec.lora is None:
        return None
    targets = spec.lora.get("target_modules")
    if isinstance(targets, (list, tuple, set)):
        targets = sorted(targets)
    return {"r": spec.lora.get("r", 8), "target_modules": targets,
            "modules_to_save": sorted(spec.lora.get("modules_to_save") or [])}


def capture_checkpoint(run: RunState) -> CheckpointData:
    """Snapshot a run exactly (tensors are copied to CPU by the writer)."""
    names = {id(p): n for n, p in run.params.items()}
    opt_state = run.optimizer.state_dict()
    ordered = [names[id(p)] for group in run.optimizer.param_groups for p in group["params"]]
    opt_tensors: dict[str, torch.Tensor] = {}
    opt_scalars: dict[str, dict[str, Any]] = {}
    for index, per_param in opt_state["state"].items():
        name = ordered[index]
        for key, value in per_param.items():
            if torch.is_tensor(value):
                opt_tensors[f"{name}::{key}"] = value
            else:
                opt_scalars.setdefault(name, {})[key] = value
    groups = []
    for group, saved in zip(run.optimizer.param_groups, opt_state["param_groups"]):
        doc = {k: (list(v) if isinstance(v, tuple) else v) for k, v in saved.items() if k != "params"}
        doc["params"] = [names[id(p)] for p in group["params"]]
        groups.append(doc)
    rng_tensors, rng_doc = rng_to_files(run.rng)
    trainer_metrics = {k: list(v) for k, v in run.trainer._metrics["train"].items()}
    state = {
        "run_id": run.run_id,
        "model_name": run.spec.model_name,
        "lora": lora_signature(run.spec),
        "seed": run.seed,
        "total_steps": run.total_steps,
        "epoch": run.epoch,
        "batch_in_epoch": run.batch_in_epoch,
        "steps_in_epoch": run.steps_in_epoch,
        "train_batch_size": int(run.trainer.args.per_device_train_batch_size),  # a warm clone's may differ
        "tr_loss": float(run.tr_loss.item()),
        "last_logged_step": run.last_logged_step,
        "last_eval_step": run.last_eval_step,
        "tokens_total": run.tokens_total,
        "tokens_since_log": run.tokens_since_log,
        "trl_metrics": trainer_metrics,
        "trl_total_train_tokens": int(run.trainer._total_train_tokens),
        "scaler": _jsonable(run.scaler.state_dict()) if run.scaler is not None else None,
    }
    return CheckpointData(
        step=run.global_step,
        adapter={n: p.detach() for n, p in run.params.items()},
        optimizer_tensors=opt_tensors,
        optimizer={"param_groups": groups, "scalars": opt_scalars},
        scheduler=_jsonable(run.lr_scheduler.state_dict()),
        rng_tensors=rng_tensors,
        rng=rng_doc,
        state=state,
    )


def load_weights(run: RunState, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Copy checkpoint weights into the run's parameters (names and shapes must match exactly)."""
    missing = sorted(set(run.params) - set(tensors))
    extra = sorted(set(tensors) - set(run.params))
    if missing or extra:
        raise CheckpointError(f"{source}: weights do not fit run {run.run_id} "
                              f"(missing {missing[:3]}, unexpected {extra[:3]})")
    with torch.no_grad():
        for name, param in run.params.items():
            value = tensors[name]
            if value.shape != param.shape:
                raise CheckpointError(f"{source}: {name} has shape {tuple(value.shape)}, "
                                      f"run {run.run_id} needs {tuple(param.shape)}")
            param.copy_(value)


def load_optimizer_state(run: RunState, data: CheckpointData, *, keep_hyperparameters: bool = False) -> None:
    """Load optimizer moments by parameter name. With `keep_hyperparameters` the run's own param_group
    settings (lr, weight_decay, betas...) stay; otherwise the checkpoint's are restored too."""
    index = {}
    for group in run.optimizer.param_groups:
        for p in group["params"]:
            index[p] = len(index)
    by_name = {name: index[p] for name, p in run.params.items() if p in index}
    state: dict[int, dict[str, Any]] = {}
    for key, tensor in data.optimizer_tensors.items():
        name, _, field_name = key.rpartition("::")
        if name not in by_name:
            raise CheckpointError(f"{data.path}: optimizer state for unknown parameter {name}")
        state.setdefault(by_name[name], {})[field_name] = tensor
    for name, scalars in data.optimizer.get("scalars", {}).items():
        state.setdefault(by_name[name], {}).update(scalars)
    current = run.optimizer.state_dict()["param_groups"]
    saved = data.optimizer["param_groups"]
    if len(saved) != len(current):
        raise CheckpointError(f"{data.path}: {len(saved)} optimizer groups, run {run.run_id} has {len(current)}")
    groups = []
    for cur, old in zip(current, saved):
        if [by_name.get(n) for n in old["params"]] != cur["params"]:
            raise CheckpointError(f"{data.path}: optimizer groups do not match run {run.run_id}'s parameters")
        source = cur if keep_hyperparameters else old
        doc = {k: (tuple(v) if k == "betas" else v) for k, v in source.items() if k != "params"}
        doc["params"] = cur["params"]
        groups.append(doc)
    run.optimizer.load_state_dict({"state": state, "param_groups": groups})


def restore_run(run: RunState, data: CheckpointData) -> None:
    """Make an in-memory run equal to the checkpointed one (weights, optimizer, scheduler, RNG, position, logs)."""
    st = data.state
    if st.get("run_id") not in (None, run.run_id):
        raise CheckpointError(f"{data.path} belongs to run {st.get('run_id')}, not {run.run_id}")
    if st.get("steps_in_epoch") not in (None, run.steps_in_epoch):
        raise CheckpointError(f"{data.path}: the training data changed since this checkpoint "
                              f"({st['steps_in_epoch']} batches per epoch then, {run.steps_in_epoch} now)")
    load_weights(run, data.adapter, str(data.path))
    load_optimizer_state(run, data)
    run.lr_scheduler.load_state_dict(data.scheduler)
    run.rng = rng_from_files(data.rng_tensors, data.rng)
    run.global_step = data.step
    run.epoch = int(st["epoch"])
    run.batch_in_epoch = int(st["batch_in_epoch"])
    run.epoch_iterator = None
    run.tr_loss = torch.tensor(float(st["tr_loss"]), dtype=run.tr_loss.dtype, device=run.tr_loss.device)
    run.last_logged_step = int(st["last_logged_step"])
    run.last_eval_step = int(st.get("last_eval_step", -1))
    run.tokens_total = int(st.get("tokens_total", 0))
    run.tokens_since_log = int(st.get("tokens_since_log", 0))
    run.trainer._metrics["train"].clear()
    for key, values in st.get("trl_metrics", {}).items():
        run.trainer._metrics["train"][key] = list(values)
    run.trainer._total_train_tokens = int(st.get("trl_total_train_tokens", 0))
    if run.scaler is not None and st.get("scaler"):
        run.scaler.load_state_dict(st["scaler"])


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if torch.is_tensor(value):
        return value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise CheckpointError(f"cannot store {type(value).__name__} in a JSON checkpoint file")
