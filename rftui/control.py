"""IC ops from outside the training process (`rftui ctl`, the API on a finished experiment).

A running experiment polls its state.db for pending ops and answers within a second; when no
controller is alive, the op is applied to the stored experiment directly by a pool-less
controller, so it takes effect when the experiment is resumed.
"""
from __future__ import annotations

import time
from typing import Any

from rftui.engine.controller import Controller
from rftui.engine.layout import ExperimentDir
from rftui.engine.liveness import is_alive
from rftui.engine.store import Store
from rftui.errors import ExperimentError, OpRefused

ANSWER_TIMEOUT = 10.0


def controller_alive(store: Store) -> bool:
    """A controller process owns the experiment: it records its pid at start and clears it at close.
    (A finished experiment whose UI is still open has a live controller that still serves ops.)"""
    pid = store.get_meta("controller_pid")
    try:
        return bool(pid) and is_alive(int(pid), store.get_meta("controller_started"))
    except ValueError:
        return False


def ensure_not_running(exp: ExperimentDir, store: Store) -> None:
    """Refuse to drive an experiment that another process is training (two controllers would clash)."""
    if controller_alive(store):
        raise ExperimentError(f"experiment {exp.name} is running (process {store.get_meta('controller_pid')}); "
                              f"watch it with `{exp.command('watch')}` or steer it with "
                              f"`{exp.command('ctl', 'stop|resume|delete|clone', 'RUN')}`")


def nothing_to_resume(exp: ExperimentDir, spec, store: Store) -> bool:
    """For `rftui resume` and Experiment.resume: refuse an experiment another process trains, then settle the
    stored one as an op on it would (Controller.settle_stored) before reading its status. A status written
    before settling existed (a clone deleted offline) or by an owner killed after its last run ended but before
    it wrote `finished` says there is work left when there is none; resume would start workers for nothing."""
    ensure_not_running(exp, store)
    Controller(exp, spec, store, pool=None).settle_stored()
    return store.get_meta("status") == "finished"


def offline_controller(exp: ExperimentDir, spec, store: Store) -> Controller:
    sink = None
    uri = store.get_meta("tracking_uri")
    if uri:
        from rftui.tracking.mlflow_sink import MlflowSink

        sink = MlflowSink(uri, spec.name, workdir=exp.workdir)
    return Controller(exp, spec, store, pool=None, sink=sink)


def submit(exp: ExperimentDir, spec, store: Store, op: str, run_id: str | None, args: dict[str, Any],
           source: str = "ctl") -> dict[str, Any]:
    """Apply an op to a running or stopped experiment; returns the resolved op row (its `run_id` is the run
    it resolved to, e.g. `r4 (r=8 lr=1e-4)` for `4`, and `resolved_run_id` that run's id alone, None where
    it named no run); raises OpRefused (with that id as its `run_id`)."""
    if controller_alive(store):
        op_id = store.submit_op(source, op, run_id, args)
        deadline = time.monotonic() + ANSWER_TIMEOUT
        while True:
            row = store.wait_op(op_id, min(0.5, max(0.0, deadline - time.monotonic())))
            if row["status"] != "pending":
                break
            if not controller_alive(store):  # it closed without reading the op: apply it here
                if store.withdraw_op(op_id, "the experiment's process closed before reading it; "
                                            "applied to the stored experiment instead"):
                    row = _apply_offline(exp, spec, store, op, run_id, args, source)
                else:
                    row = store.get_op(op_id) or row
                break
            if time.monotonic() >= deadline:
                raise ExperimentError(f"experiment {exp.name} did not answer within {ANSWER_TIMEOUT:.0f} s; "
                                      "is its process stuck? The op stays queued and is applied when it reads it")
    else:
        row = _apply_offline(exp, spec, store, op, run_id, args, source)
    from rftui.engine.ops import target_id

    row = {**row, "resolved_run_id": target_id(row.get("run_id"), {r["run_id"]: r["label"] or ""
                                                                    for r in store.list_runs()})}
    if row["status"] != "applied":
        raise OpRefused(f"{op} {run_id or ''}: refused: {row['reason']}", reason=row["reason"],
                        run_id=row["resolved_run_id"])
    return row


def _apply_offline(exp: ExperimentDir, spec, store: Store, op: str, run_id: str | None, args: dict[str, Any],
                   source: str) -> dict[str, Any]:
    from rftui.engine.setup import forget_cut_work

    # An owner killed mid-quantum left points past its runs' checkpoints; `show` hides them while a run is
    # still `running`, but a run stopped or deleted here would show them for good. Drop them first, as
    # `rftui resume` would (nothing shown changes: show already stops at each checkpoint).
    forget_cut_work(store)
    controller = offline_controller(exp, spec, store)
    try:
        resolved = controller.apply_op(op, run_id, args, source, [])
    finally:
        if controller.sink is not None:
            controller.sink.flush()
            controller.sink.close()
    return {"status": resolved.status, "reason": resolved.reason, "new_run_id": resolved.new_run_id,
            "run_id": resolved.run_id}
