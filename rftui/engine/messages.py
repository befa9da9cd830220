"""Commands (controller -> worker) and events (worker -> controller): small frozen dataclasses, no tensors."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from rftui.config.runspec import RunSpec


# ----------------------------------------------------------------------------- commands


@dataclass(frozen=True)
class TrainQuantum:
    """Train `run` from optimizer step `start_step` up to (not including) `end_step`.

    `chunk` is the 0-based chunk index; `total_steps` is the run's whole length (the LR
    schedule spans it). `checkpoint_dir` is where the run's last boundary state lives
    (None for a fresh run); a worker that already holds the run's state in memory at
    `start_step` uses that instead. `warm_from` names a checkpoint directory of another run
    to start from (clone with warm start); it is only used when start_step == 0 and no
    checkpoint exists yet. `train_path` / `eval_path` are the experiment's formatted data
    snapshots (JSONL of prompt/completion rows).
    """

    run: RunSpec
    chunk: int
    num_chunks: int
    start_step: int
    end_step: int
    total_steps: int
    train_path: str
    eval_path: str | None
    checkpoint_root: str
    adapters_root: str
    checkpoint_dir: str | None = None
    warm_from: str | None = None
    seed: int = 42


@dataclass(frozen=True)
class Preempt:
    """Stop the named run at its next optimizer step and checkpoint it."""

    run_id: str
    reason: str = "stop"  # stop | delete | shutdown


@dataclass(frozen=True)
class DropRun:
    """Forget a run's in-memory state (adapter, optimizer) on this worker."""

    run_id: str


@dataclass(frozen=True)
class Shutdown:
    pass


# ----------------------------------------------------------------------------- events


@dataclass(frozen=True)
class WorkerReady:
    worker_id: int
    pid: int
    device: str


@dataclass(frozen=True)
class QuantumStarted:
    worker_id: int
    run_id: str
    chunk: int
    start_step: int
    load_seconds: float  # time spent making the run's state resident (switch-in)


@dataclass(frozen=True)
class StepLogged:
    """Training metrics at optimizer step `step` (1-based, like TRL's global_step)."""

    run_id: str
    step: int
    metrics: Mapping[str, float]


@dataclass(frozen=True)
class EvalDone:
    """Evaluation metrics (eval_loss, rougeL, bleu, user metrics) at step `step`."""

    run_id: str
    step: int
    metrics: Mapping[str, float]


@dataclass(frozen=True)
class QuantumDone:
    """A quantum ended: either its chunk is done or it was preempted.

    `steps_done` is the run's optimizer step count after this quantum. `train_seconds` is
    the time between the first and last optimizer step; `switch_seconds` covers the rest of
    the quantum (state load, checkpoint write, chunk-end evaluation excluded).
    """

    worker_id: int
    run_id: str
    chunk: int
    steps_done: int
    completed: bool
    preempted: str | None
    checkpoint_dir: str
    train_seconds: float
    switch_seconds: float
    eval_seconds: float = 0.0
    tokens: int = 0
    adapter_dir: str | None = None


@dataclass(frozen=True)
class RunFailed:
    worker_id: int
    run_id: str
    reason: str
    traceback: str = ""


@dataclass(frozen=True)
class WorkerWarning:
    worker_id: int
    run_id: str | None
    message: str


@dataclass(frozen=True)
class Heartbeat:
    worker_id: int
    run_id: str | None
    step: int
    extra: Mapping[str, Any] = field(default_factory=dict)
