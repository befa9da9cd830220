"""IC ops from outside the training process (`rftui ctl`, the API on a finished experiment).

A running experiment polls its state.db for pending ops and answers within a second; when no
controller is alive, the op is applied to the stored experiment directly by a pool-less
controller, so it takes effect when the experiment is resumed.
"""
from __future__ import annotations

import os
from typing import Any

from rftui.engine.controller import Controller
from rftui.engine.layout import ExperimentDir
from rftui.engine.store import Store
from rftui.errors import ExperimentError, OpRefused

ANSWER_TIMEOUT = 10.0


def controller_alive(store: Store) -> bool:
    pid = store.get_meta("controller_pid")
    if not pid or store.get_meta("status") != "running":
        return False
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    return True


def offline_controller(exp: ExperimentDir, spec, store: Store) -> Controller:
    sink = None
    uri = store.get_meta("tracking_uri")
    if uri:
        from rftui.tracking.mlflow_sink import MlflowSink

        sink = MlflowSink(uri, spec.name)
    return Controller(exp, spec, store, pool=None, sink=sink)


def submit(exp: ExperimentDir, spec, store: Store, op: str, run_id: str | None, args: dict[str, Any],
           source: str = "ctl") -> dict[str, Any]:
    """Apply an op to a running or stopped experiment; returns the resolved op row; raises OpRefused."""
    if controller_alive(store):
        op_id = store.submit_op(source, op, run_id, args)
        row = store.wait_op(op_id, ANSWER_TIMEOUT)
        if row["status"] == "pending":
            raise ExperimentError(f"experiment {exp.name} did not answer within {ANSWER_TIMEOUT:.0f} s; "
                                  "is its process stuck? The op stays queued and is applied when it reads it")
    else:
        controller = offline_controller(exp, spec, store)
        try:
            resolved = controller.apply_op(op, run_id, args, source, [])
        finally:
            if controller.sink is not None:
                controller.sink.flush()
                controller.sink.close()
        row = {"status": resolved.status, "reason": resolved.reason, "new_run_id": resolved.new_run_id}
    if row["status"] != "applied":
        raise OpRefused(f"{op} {run_id or ''}: refused: {row['reason']}")
    return row
