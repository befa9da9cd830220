"""Engine events for front ends: what the controller reports besides the workers' own events.

Front ends receive these together with the worker events (StepLogged, EvalDone, QuantumDone,
RunFailed, WorkerWarning) from `Controller.step()` and render them; the engine never prints.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass(frozen=True)
class RunAdded:
    run_id: str
    label: str
    parent: str | None = None
    warm_start: bool = False


@dataclass(frozen=True)
class RunStatusChanged:
    run_id: str
    status: str
    reason: str | None = None


@dataclass(frozen=True)
class QuantumDispatched:
    worker_id: int
    run_id: str
    chunk: int
    start_step: int
    end_step: int


@dataclass(frozen=True)
class QuantumReport:
    """A finished quantum with the controller's view of its cost (the headless line per quantum)."""

    run_id: str
    worker_id: int
    chunk: int
    num_chunks: int
    steps_done: int
    total_steps: int
    seconds: float
    train_seconds: float
    switch_seconds: float
    eval_seconds: float
    preempted: str | None
    metrics: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class OpResolved:
    op_id: int | None
    source: str
    op: str
    run_id: str | None
    status: str  # applied | refused
    reason: str | None = None
    new_run_id: str | None = None


@dataclass(frozen=True)
class EngineWarning:
    message: str
    run_id: str | None = None
    earlier: bool = False  # kept by an earlier session: a resumed experiment's start shows it again


@dataclass(frozen=True)
class WorkerRestarted:
    worker_id: int
    reason: str


@dataclass(frozen=True)
class ExperimentFinished:
    name: str
    counts: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Progress:
    """Long set-up work (building the built-in model, tokenizing) for front ends to show."""

    message: str
    extra: Mapping[str, Any] = field(default_factory=dict)
