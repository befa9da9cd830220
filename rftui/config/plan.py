"""The plan of an experiment: its expanded runs with their knobs and step counts (no torch)."""
from __future__ import annotations

import math
from typing import Any

from rftui.config.expand import differing_knobs, format_value
from rftui.config.experiment import ExperimentSpec, total_steps


def plan_rows(spec: ExperimentSpec, num_rows: int | None) -> list[dict[str, Any]]:
    """One row per run: id, label, every knob, total steps and steps per chunk."""
    rows = []
    for run in spec.runs:
        total = total_steps(run.training, num_rows)
        rows.append({
            "id": run.run_id,
            "label": run.label,
            "knobs": dict(run.knobs),
            "total_steps": total,
            "steps_per_chunk": None if total is None else math.ceil(total / spec.num_chunks),
        })
    return rows


def plan_table(spec: ExperimentSpec, rows: list[dict[str, Any]], num_rows: int | None) -> str:
    """A plain-text table of the plan, with the knobs that differ between runs as columns."""
    varying = differing_knobs([row["knobs"] for row in rows])
    header = ["id", "label", *varying, "steps", "steps/chunk"]
    body = [
        [row["id"], row["label"], *(format_value(row["knobs"].get(k)) for k in varying),
         "?" if row["total_steps"] is None else str(row["total_steps"]),
         "?" if row["steps_per_chunk"] is None else str(row["steps_per_chunk"])]
        for row in rows
    ]
    widths = [max(len(str(r[i])) for r in [header, *body]) for i in range(len(header))]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()
    rows_text = "?" if num_rows is None else str(num_rows)
    title = (f"{spec.name}: {len(rows)} run{'s' if len(rows) != 1 else ''}, {spec.num_chunks} chunks, "
             f"{rows_text} training rows, trainer {spec.trainer_type}")
    return "\n".join([title, "", line(header), line(["-" * w for w in widths]), *map(line, body)])
