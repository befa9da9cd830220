"""What the controller tells its tracking sink (MLflow): each run with its params and tags, status changes, a
resumed experiment's points, and the runs' state at close. state.db stays the truth; the sink never blocks a step."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rftui.engine.controller import Controller
    from rftui.engine.runs import RunRecord

FAILURE_TAG = "rftui.failure_reason"  # the MLflow tag holding a failed run's reason
_MLFLOW_STATUS = {"running": "RUNNING", "waiting": "RUNNING", "completed": "FINISHED", "stopped": "KILLED",
                  "failed": "FAILED"}


def start_tracking(ctl: "Controller", rec: "RunRecord") -> None:
    """Create (or re-attach to) the run's MLflow run, with the status it has now; a deleted run's stays deleted."""
    if ctl.sink is None:
        return
    from rftui.tracking.mlflow_sink import IDENTITY_TAG, flatten_params

    row = ctl.store.get_run(rec.run_id) or {}
    identity = f"{ctl.spec.name}/{rec.run_id}/{row.get('created_at', 0):.6f}"
    if rec.status == "deleted":
        # Deleted in an earlier session: starting it would restore its MLflow run. It stays deleted there, and is
        # deleted now if MLflow missed it (an `rftui ctl` delete while MLflow was unreachable).
        ctl.sink.keep_deleted(rec.run_id, mlflow_run_id=row.get("mlflow_run_id"), identity=identity)
        return
    tags = {"rftui.run_id": rec.run_id, "rftui.experiment": ctl.spec.name,
            "rftui.parent": rec.parent or "", "rftui.warm_start": str(rec.warm_start).lower(),
            IDENTITY_TAG: identity}
    params = flatten_params(dict(rec.spec.knobs))
    params.setdefault("seed", str(int(rec.spec.training.get("seed", ctl.spec.seed))))  # the one trained with
    mlflow_id = ctl.sink.start_run(rec.run_id, label=f"{rec.run_id} {rec.spec.label}", params=params, tags=tags,
                                   mlflow_run_id=row.get("mlflow_run_id"))
    if mlflow_id and mlflow_id != row.get("mlflow_run_id"):
        ctl.store.update_run(rec.run_id, mlflow_run_id=mlflow_id)
    if rec.status == "completed":
        ctl.sink.set_status(rec.run_id, "FINISHED")
    elif rec.status == "pending":  # MLflow creates a run RUNNING; this one has not started
        ctl.sink.set_status(rec.run_id, "SCHEDULED")
    elif rec.status == "failed":  # e.g. its formatting function failed when the experiment was created
        if rec.reason:
            ctl.sink.set_tags(rec.run_id, {FAILURE_TAG: rec.reason})
        ctl.sink.set_status(rec.run_id, "FAILED")


def replay_metrics(ctl: "Controller") -> None:
    """On resume, offer MLflow every point state.db holds: points still waiting in the sink's batch when the
    last controller was killed never reached MLflow. The sink skips those MLflow already has."""
    if ctl.sink is None:
        return
    by_step: dict[tuple[str, int], tuple[dict[str, float], float | None]] = {}
    for point in ctl.store.all_metrics():
        rec = ctl.runs.get(point["run_id"])
        if rec is None or rec.status == "deleted":
            continue
        metrics, _ = by_step.setdefault((point["run_id"], point["step"]), ({}, point["wall_time"]))
        metrics[point["name"]] = point["value"]
    for (run_id, step), (metrics, wall_time) in sorted(by_step.items()):
        ctl.sink.log_metrics(run_id, step, metrics, int(wall_time * 1000) if wall_time else None)


def mirror_status(ctl: "Controller", rec: "RunRecord", status: str, reason: str | None) -> None:
    if ctl.sink is None:
        return
    mlflow_status = _MLFLOW_STATUS.get(status)
    if status == "waiting" and ctl.pool is None:  # resumed by `rftui ctl` with no process to train it: it
        mlflow_status = None  # stays KILLED until `rftui resume` trains it (then RUNNING)
    if mlflow_status:
        known = (ctl.store.get_run(rec.run_id) or {}).get("mlflow_run_id")
        if status == "failed" and reason:
            ctl.sink.set_tags(rec.run_id, {FAILURE_TAG: reason}, mlflow_run_id=known)
        ctl.sink.set_status(rec.run_id, mlflow_status, mlflow_run_id=known)


def close_tracking(ctl: "Controller", status: str) -> None:
    """Flush and close the sink; runs an interrupt left running are KILLED (no process trains them now: RUNNING
    would stay in MLflow for good)."""
    if ctl.sink is None:
        return
    if status == "interrupted":
        for rec in ctl.runs.values():
            if rec.status in ("running", "waiting"):
                ctl.sink.set_status(rec.run_id, "KILLED")
    ctl.sink.flush()
    for rec in ctl.runs.values():  # a slow tracking start may have finished in the background
        known = (ctl.store.get_run(rec.run_id) or {}).get("mlflow_run_id")
        mlflow_id = ctl.sink.mlflow_run_id(rec.run_id)
        if mlflow_id and not known:
            ctl.store.update_run(rec.run_id, mlflow_run_id=mlflow_id)
    ctl.sink.close()
