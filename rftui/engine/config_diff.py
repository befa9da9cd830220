"""What changed between an experiment's stored config and a config about to be run under the same name.

Both sides are expanded specs in their stored form (`ExperimentSpec.to_dict`, redacted, JSON-shaped), so YAML
formatting, key order and grid-vs-listed spelling never count as a change; only values do.
"""
from __future__ import annotations

import json
from typing import Any, Mapping

# Where it lives and what it is called, not what it trains: the same config run again from a copy of the file
# (or with --workdir spelled another way) is the same experiment. label and knobs restate training/lora.
_IGNORED_TOP = ("name", "workdir", "source_file", "runs")
_IGNORED_RUN = ("run_id", "label", "knobs")
_UNSET = object()


def normalised(config: Mapping[str, Any]) -> dict[str, Any]:
    """`config` as state.db gives it back (tuples become lists, every key a string), without the config file's
    folder: its data paths are stored resolved already, so a copy of the file elsewhere reads the same data."""
    out = json.loads(json.dumps(config, default=str))
    if isinstance(out.get("data"), dict):
        out["data"].pop("base_dir", None)
    return out


def _shown(value: Any) -> str:
    if value is _UNSET:
        return "(not set)"
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _diff(old: Any, new: Any, key: str, out: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """(dotted key, before, after) for each value that differs; a section left out reads as an empty one."""
    if isinstance(old, Mapping) or isinstance(new, Mapping):
        old = {} if old is _UNSET else old
        new = {} if new is _UNSET else new
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        for name in [*old, *(k for k in new if k not in old)]:
            _diff(old.get(name, _UNSET), new.get(name, _UNSET), f"{key}.{name}" if key else str(name), out)
    elif old != new:
        out.append((key, _shown(old), _shown(new)))
    return out


def _changes(old: Mapping[str, Any], new: Mapping[str, Any], ignored: tuple[str, ...]) -> list[tuple[str, str, str]]:
    return _diff({k: v for k, v in old.items() if k not in ignored},
                 {k: v for k, v in new.items() if k not in ignored}, "", [])


def config_changes(stored: Mapping[str, Any], new: Mapping[str, Any], limit: int = 5) -> list[str]:
    """One line per change (`training.max_steps 4 → 8 (all 4 runs)`, `runs added: r5, r6`), at most `limit`
    and a last `... N more` line; empty when the two configs train the same thing."""
    stored, new = normalised(stored), normalised(new)
    lines = [f"{key} {before} → {after}" for key, before, after in _changes(stored, new, _IGNORED_TOP)]
    old_runs = {run["run_id"]: run for run in stored.get("runs") or []}
    new_runs = {run["run_id"]: run for run in new.get("runs") or []}
    common = [run_id for run_id in old_runs if run_id in new_runs]
    by_change: dict[tuple[str, str, str], list[str]] = {}
    for run_id in common:
        for change in _changes(old_runs[run_id], new_runs[run_id], _IGNORED_RUN):
            by_change.setdefault(change, []).append(run_id)
    for (key, before, after), run_ids in by_change.items():
        which = f"all {len(common)} runs" if len(run_ids) == len(common) > 1 else ", ".join(run_ids)
        lines.append(f"{key} {before} → {after} ({which})")
    added = [run_id for run_id in new_runs if run_id not in old_runs]
    removed = [run_id for run_id in old_runs if run_id not in new_runs]
    if added or removed:
        what = "; ".join(part for part in (f"added {', '.join(added)}" if added else "",
                                           f"removed {', '.join(removed)}" if removed else "") if part)
        lines.append(f"runs {len(old_runs)} → {len(new_runs)} ({what})")
    if len(lines) > limit:
        lines = lines[:limit - 1] + [f"... {len(lines) - limit + 1} more differences"]
    return lines
