"""Leaderboard data and text shared by `rftui show`, the headless front end and the API."""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from rftui.engine.layout import ExperimentDir
from rftui.engine.store import Store
from rftui.engine.warning_tally import WarningTally, warning_text

SHOWN_METRICS = ("loss", "eval_loss", "rougeL", "bleu")


def as_left(status: str, owner_alive: bool) -> str:
    """The status to show for a stored run or experiment (`show` and `watch` both use it).

    state.db says what its owner last wrote. When the owner is gone (kill -9, a crash), what it left `running`
    is `interrupted`: nothing trains it until `rftui resume`."""
    return "interrupted" if status == "running" and not owner_alive else status


def shown_metrics(store: Store, row: Mapping[str, Any], status: str) -> dict[str, float]:
    """A stored run's last metrics; an interrupted run's as of its checkpoint: the points past it are redone
    by `rftui resume`, which drops them first."""
    cut = (row.get("steps_done") or 0) if status == "interrupted" else None
    return store.last_metrics(row["run_id"], max_step=cut)


def counted(n: int, noun: str) -> str:
    """`1 run`, `4 runs`: the start lines' sizes."""
    return f"{n} {noun}{'s' * (n != 1)}"


def resume_hint(name: str, workdir: Any) -> str:
    return f"`{ExperimentDir.of(workdir, name).resume_command}` continues"


def show_data(exp: ExperimentDir, store: Store, include_deleted: bool = True) -> dict[str, Any]:
    """The `rftui show --json` document (its shape is a public contract; it keeps deleted runs, status `deleted`).
    Without `include_deleted`: as the leaderboards show it (`hide_deleted`). A dead owner's work: see `as_left`."""
    from rftui.control import controller_alive

    alive = controller_alive(store)
    runs = []
    for row in store.list_runs():
        status = as_left(row["status"], alive)
        last = shown_metrics(store, row, status)
        runs.append({
            "id": row["run_id"],
            "label": row["label"],
            "status": status,
            "reason": row.get("reason") or None,  # why it is in that status: a failed run's error
            "parent": row.get("parent"),
            "warm_start": bool(row.get("warm_start")),
            "steps_done": row.get("steps_done") or 0,
            "total_steps": row.get("total_steps") or 0,
            "chunks_done": row.get("chunks_done") or 0,
            "num_chunks": row.get("num_chunks") or 0,
            "metrics": {name: last.get(name) for name in SHOWN_METRICS},
        })
    status = as_left(store.get_meta("status") or "created", alive)
    data = {"experiment": exp.name, "workdir": str(exp.workdir), "status": status, "runs": runs,
            "warnings": kept_warnings(store)}
    return data if include_deleted else hide_deleted(data)


def hide_deleted(data: dict[str, Any]) -> dict[str, Any]:
    """`data` as every text leaderboard shows it: delete hides a run (README), so its row goes, and so does it
    from the warnings' runs (a warning only deleted runs gave goes too); `deleted_hidden` counts the hidden runs.
    Idempotent: a document already hidden keeps its count."""
    gone = {run["id"] for run in data["runs"] if run["status"] == "deleted"}
    warnings = []
    for warning in data.get("warnings") or ():
        runs = [run for run in warning["runs"] if run not in gone]
        if runs or not warning["runs"]:  # one about no run at all stays
            warnings.append({**warning, "runs": runs})
    return {**data, "runs": [run for run in data["runs"] if run["id"] not in gone], "warnings": warnings,
            "deleted_hidden": data.get("deleted_hidden", 0) + len(gone)}


def kept_warnings(store: Store) -> list[dict[str, Any]]:
    """The engine warnings state.db kept, one per text (without its `run <id>: `) with the runs that gave it
    and when it was first given (unix time); oldest first."""
    tally, first_at = WarningTally(), {}
    for row in store.warnings():
        text = tally.add(row["message"], row["run_id"]).text
        first_at.setdefault(text, row["created_at"])  # rows come oldest first
    return [{"message": text, "runs": list(runs), "first_at": first_at[text]} for text, runs in tally.runs.items()]


def json_safe(value: Any) -> Any:
    """`value` with NaN and infinities as None: json.dumps writes them as NaN/Infinity, which is not JSON
    (jq and JSON.parse refuse the line). A diverged run's loss is where they come from."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


def show_json(data: dict[str, Any]) -> str:
    """The `rftui show --json` text."""
    return json.dumps(json_safe(data), indent=2, allow_nan=False)


def _sort_key(run: dict[str, Any]) -> tuple:
    value = run["metrics"].get("eval_loss")
    missing = value is None or (isinstance(value, float) and math.isnan(value))
    return (missing, value if not missing else 0.0, run["id"])


def metric_text(value: Any) -> str:
    """4 decimals; a small value in scientific notation (a tiny model's BLEU of 5.3e-05 read 0.0001, and one
    under 5e-05 read 0.0000, as if nothing matched)."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2e}" if 0 < abs(value) < 1e-3 else f"{value:.4f}"
    return str(value)


def leaderboard_text(data: dict[str, Any], reasons: dict[str, str] | None = None, resume_with: str | None = None) -> str:
    """Runs sorted by eval loss (best first), with status, progress and last metrics, then the failed runs'
    reasons and the kept warnings (one line each, naming its runs). Deleted runs are hidden (`hide_deleted`), with
    a line that counts them and says where they are listed. An interrupted experiment's title says how to
    continue: `resume_with` (the Python API's call) or else the CLI's `rftui resume`."""
    data = hide_deleted(data)
    # A clone without edits has its source's label: the `from` column tells the two rows apart.
    clones = any(run.get("parent") for run in data["runs"])
    header = ["#", "id", "label", *(["from"] if clones else []), "status", "steps", "chunks", *SHOWN_METRICS]
    rows = []
    for rank, run in enumerate(sorted(data["runs"], key=_sort_key), start=1):
        origin = (f"{run['parent']}{' warm' if run.get('warm_start') else ''}" if run.get("parent") else "-")
        rows.append([str(rank), run["id"], run["label"], *([origin] if clones else []), run["status"],
                     f"{run['steps_done']}/{run['total_steps']}", f"{run['chunks_done']}/{run['num_chunks']}",
                     *(metric_text(run["metrics"].get(m)) for m in SHOWN_METRICS)])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
    title = f"experiment {data['experiment']} ({data['workdir']})"
    if data.get("status") == "interrupted":
        title += (f" — interrupted: continue with {resume_with}" if resume_with
                  else f" — interrupted: {resume_hint(data['experiment'], data['workdir'])}")
    out = [title, line(header), line(["-" * w for w in widths])]
    out += [line(r) for r in rows]
    hidden = data["deleted_hidden"]
    if hidden:
        listed = ExperimentDir.of(data["workdir"], data["experiment"]).command("show", "--json")
        out.append(f"({counted(hidden, 'deleted run')} hidden; `{listed}` lists "
                   f"{'them' if hidden > 1 else 'it'})")
    for run_id, reason in (reasons or {}).items():
        out.append(f"  {run_id}: {reason}")
    out += [warning_text(w["message"], w["runs"]) for w in data.get("warnings") or ()]
    return "\n".join(out)


def failure_reasons(store: Store) -> dict[str, str]:
    return {row["run_id"]: row["reason"] for row in store.list_runs()
            if row["status"] == "failed" and row.get("reason")}
