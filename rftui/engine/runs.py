"""RunRecord: the controller's live view of one run, mirrored to the store's `runs` row."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rftui.config.experiment import chunk_bounds
from rftui.config.runspec import RunSpec

STATUSES = ("pending", "running", "waiting", "completed", "stopped", "failed", "deleted")
TERMINAL = ("completed", "failed", "deleted")


@dataclass
class RunRecord:
    spec: RunSpec
    ord: int
    status: str
    total_steps: int
    num_chunks: int
    steps_done: int = 0
    chunks_done: int = 0
    checkpoint_dir: str | None = None
    adapter_dir: str | None = None
    parent: str | None = None
    warm_start: bool = False
    warm_from: str | None = None
    reason: str | None = None
    worker_id: int | None = None
    quantum_id: int | None = None
    pending_preempt: str | None = None
    attempts: int = 0
    live_step: int = 0
    last: dict[str, float] = field(default_factory=dict)

    @property
    def run_id(self) -> str:
        return self.spec.run_id

    @property
    def bounds(self) -> list[tuple[int, int]]:
        return chunk_bounds(self.total_steps, self.num_chunks)

    def next_quantum(self) -> tuple[int, int, int]:
        """(chunk, start_step, end_step) of the run's next quantum."""
        chunk = min(self.chunks_done, self.num_chunks - 1)
        return chunk, self.steps_done, self.bounds[chunk][1]

    def store_fields(self) -> dict[str, Any]:
        return {
            "status": self.status, "steps_done": self.steps_done, "chunks_done": self.chunks_done,
            "checkpoint_dir": self.checkpoint_dir, "adapter_dir": self.adapter_dir,
            "reason": self.reason, "worker_id": self.worker_id,
        }

    @classmethod
    def from_store(cls, row: dict[str, Any]) -> "RunRecord":
        spec = RunSpec.from_dict(row["spec"])  # without masked secrets: read from the environment, as at creation
        return cls(
            spec=spec, ord=row["ord"], status=row["status"], total_steps=row["total_steps"],
            num_chunks=row["num_chunks"], steps_done=row["steps_done"] or 0,
            chunks_done=row["chunks_done"] or 0, checkpoint_dir=row.get("checkpoint_dir"),
            adapter_dir=row.get("adapter_dir"), parent=row.get("parent"),
            warm_start=bool(row.get("warm_start")), reason=row.get("reason"),
            warm_from=(row["spec"].get("warm_from") if isinstance(row.get("spec"), dict) else None),
        )
