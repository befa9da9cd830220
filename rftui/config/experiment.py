"""ExperimentSpec: a whole experiment after parsing and expansion (YAML or Python API)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from rftui.config.runspec import RunSpec, hook_name

DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful and friendly customer support assistant. "
    "Please answer the user's query to the best of your ability."
)
DEFAULT_WORKDIR = "rftui-runs"


@dataclass(frozen=True)
class DataSpec:
    """Where the rows come from and how a row becomes a prompt/completion conversation."""

    train: Mapping[str, Any]
    eval: Mapping[str, Any] | None = None
    formatting: Any = None  # hook; None means the chat formatter below
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    prompt_field: str = "instruction"
    completion_field: str = "response"
    base_dir: str = "."

    def to_dict(self) -> dict[str, Any]:
        return {
            "train": dict(self.train), "eval": None if self.eval is None else dict(self.eval),
            "formatting": hook_name(self.formatting), "system_prompt": self.system_prompt,
            "prompt_field": self.prompt_field, "completion_field": self.completion_field,
            "base_dir": self.base_dir,
        }


@dataclass(frozen=True)
class ExperimentSpec:
    name: str
    runs: tuple[RunSpec, ...]
    num_chunks: int = 4
    seed: int = 42
    trainer_type: str = "SFT"
    data: DataSpec | None = None
    workdir: str = DEFAULT_WORKDIR
    tracking_uri: str | None = None
    create_model: Any = None
    eval_num_samples: int = 8
    ui: Mapping[str, Any] = field(default_factory=dict)
    source_file: str | None = None

    def with_runs(self, runs) -> "ExperimentSpec":
        return replace(self, runs=tuple(runs))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "num_chunks": self.num_chunks, "seed": self.seed,
            "trainer_type": self.trainer_type,
            "data": None if self.data is None else self.data.to_dict(),
            "workdir": self.workdir, "tracking_uri": self.tracking_uri,
            "create_model": hook_name(self.create_model), "eval_num_samples": self.eval_num_samples,
            "ui": dict(self.ui), "source_file": self.source_file,
            "runs": [r.to_dict() for r in self.runs],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ExperimentSpec":
        raw = data.get("data")
        return cls(
            name=data["name"], num_chunks=data["num_chunks"], seed=data["seed"],
            trainer_type=data.get("trainer_type", "SFT"),
            data=None if raw is None else DataSpec(**raw),
            workdir=data.get("workdir", DEFAULT_WORKDIR), tracking_uri=data.get("tracking_uri"),
            create_model=data.get("create_model"), eval_num_samples=data.get("eval_num_samples", 8),
            ui=data.get("ui") or {}, source_file=data.get("source_file"),
            runs=tuple(RunSpec.from_dict(r) for r in data["runs"]),
        )


def total_steps(training: Mapping[str, Any], num_rows: int | None) -> int | None:
    """Optimizer steps of a run, as TRL counts them (max_steps wins over num_train_epochs)."""
    max_steps = training.get("max_steps")
    if max_steps is not None and max_steps > 0:
        return int(max_steps)
    if num_rows is None:
        return None
    batches = math.ceil(num_rows / int(training.get("per_device_train_batch_size", 8)))
    accumulation = int(training.get("gradient_accumulation_steps", 1))
    steps_per_epoch = max(batches // accumulation + int(batches % accumulation > 0), 1)
    return math.ceil(float(training.get("num_train_epochs", 3.0)) * steps_per_epoch)


def chunk_bounds(total: int, num_chunks: int) -> list[tuple[int, int]]:
    """[start, end) optimizer-step bounds of each chunk: equal shares, the first ones one step longer."""
    base, extra = divmod(total, num_chunks)
    bounds, start = [], 0
    for i in range(num_chunks):
        end = start + base + (1 if i < extra else 0)
        bounds.append((start, end))
        start = end
    return bounds


def batches_per_epoch(training: Mapping[str, Any], num_rows: int) -> int:
    return math.ceil(num_rows / int(training.get("per_device_train_batch_size", 8)))
