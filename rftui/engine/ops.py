"""Interactive-control ops applied by the controller: legal transitions, refusals with reasons."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rftui.engine.messages import Preempt
from rftui.engine.runs import TERMINAL

if TYPE_CHECKING:
    from rftui.engine.controller import Controller

Result = tuple[str, "str | None", "str | None"]  # status, reason, new run id


def find_run(ctl: "Controller", run_id: str | None):
    """A run by id (`r3`), bare number (`3`) or exact label."""
    if run_id is None:
        return None
    if run_id in ctl.runs:
        return ctl.runs[run_id]
    if run_id.isdigit() and f"r{run_id}" in ctl.runs:
        return ctl.runs[f"r{run_id}"]
    matches = [r for r in ctl.runs.values() if r.spec.label == run_id]
    return matches[0] if len(matches) == 1 else None


def apply(ctl: "Controller", op: str, run_id: str | None, args: dict[str, Any], out: list[Any]) -> Result:
    handler = _HANDLERS.get(op)
    if handler is None:
        return "refused", f"unknown op {op!r} (use one of: {', '.join(_HANDLERS)})", None
    rec = find_run(ctl, run_id)
    if rec is None:
        known = ", ".join(ctl.runs) or "none"
        return "refused", f"no run {run_id!r} in experiment {ctl.spec.name} (runs: {known})", None
    return handler(ctl, rec, args, out)


def _stop(ctl, rec, args, out) -> Result:
    if rec.status in TERMINAL or rec.status == "stopped":
        return "refused", f"run {rec.run_id} is {rec.status}; only pending, waiting or running runs can be stopped", None
    if rec.status == "running":
        if rec.pending_preempt is None:
            rec.pending_preempt = "stop"
            ctl.pool.send(rec.worker_id, Preempt(rec.run_id, "stop"))
        return "applied", "stops at its next optimizer step", None
    ctl.scheduler.on_run_paused(rec.run_id)
    ctl._set_status(rec, "stopped", out)
    return "applied", None, None


def _resume(ctl, rec, args, out) -> Result:
    if rec.status != "stopped":
        return "refused", f"run {rec.run_id} is {rec.status}; only stopped runs can be resumed", None
    ctl.scheduler.on_run_resumed(rec.run_id)
    ctl._set_status(rec, "waiting", out, reason="")
    return "applied", None, None


def _delete(ctl, rec, args, out) -> Result:
    if rec.status == "deleted":
        return "refused", f"run {rec.run_id} is already deleted", None
    if rec.status == "running":
        rec.pending_preempt = "delete"
        ctl.pool.send(rec.worker_id, Preempt(rec.run_id, "delete"))
        return "applied", "deleted at its next optimizer step", None
    ctl._delete(rec, out)
    return "applied", None, None


_HANDLERS = {"stop": _stop, "resume": _resume, "delete": _delete}
