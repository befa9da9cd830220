"""One rftui run as the MLflow sink's thread sees it, and how its MLflow run is created or re-attached.

Only the sink's background thread touches a :class:`RunState`; a :class:`Waiter` hands the MLflow run id
back to the thread that called ``start_run``. ``mlflow`` is never imported here.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
from collections import OrderedDict
from typing import Any, Callable

from rftui.tracking.mlflow_values import IDENTITY_TAG, error_code

log = logging.getLogger("rftui.tracking.mlflow_sink")  # one logger name for the whole sink


class Waiter:
    __slots__ = ("event", "value")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.value: str | None = None

    def resolve(self, value: str | None) -> None:
        self.value = value
        self.event.set()


@dataclasses.dataclass(eq=False)
class RunState:
    """Worker-thread-only state of one rftui run."""

    run_id: str
    label: str | None = None          # None until start_run arrives
    attach_id: str | None = None
    mlflow_id: str | None = None
    started: bool = False
    create_tags: dict[str, str] = dataclasses.field(default_factory=dict)
    waiters: list[Waiter] = dataclasses.field(default_factory=list)
    pending_params: dict[str, str] = dataclasses.field(default_factory=dict)
    pending_tags: dict[str, str] = dataclasses.field(default_factory=dict)
    pending_status: str | None = None
    delete_requested: bool = False
    deleted_before: bool = False      # deleted in an earlier process (state.db says so): see keep_deleted
    deleted: bool = False
    shipped: set[tuple[str, int]] = dataclasses.field(default_factory=set)
    # (name, step) -> (value, timestamp ms), oldest first: the oldest go first when too many wait
    pending: OrderedDict[tuple[str, int], tuple[float, int]] = dataclasses.field(default_factory=OrderedDict)
    first_pending_at: float | None = None
    fail_count: int = 0
    next_try: float = 0.0
    failing_since: float | None = None

    @property
    def addressable(self) -> bool:
        """Its MLflow run can be created or looked up: started here, named by id, or a run deleted before this
        process that only its identity tag can find."""
        return (self.label is not None or self.attach_id is not None
                or (self.delete_requested and IDENTITY_TAG in self.create_tags))

    def has_control_work(self) -> bool:
        return bool(
            (self.addressable and not self.started)
            or self.pending_params
            or self.pending_tags
            or self.pending_status
            or (self.delete_requested and not self.deleted)
        )

    def resolve_waiters(self, value: str | None) -> None:
        for waiter in self.waiters:
            waiter.resolve(value)
        self.waiters.clear()

    def drop_pending(self) -> int:
        """Forget the points not shipped yet; returns how many."""
        dropped = len(self.pending)
        self.pending.clear()
        self.first_pending_at = None
        return dropped


def open_in_mlflow(client: Any, experiment_id: str | None, run: RunState,
                   warn: Callable[[str, str], None]) -> int:
    """Create the run's MLflow run, or re-attach to the one it names (or that carries its identity tag).

    On success ``run.started`` and ``run.mlflow_id`` are set; an adopted run whose MLflow run is gone is
    marked deleted instead, and so is a run to delete whose MLflow run is deleted already. A live run's
    MLflow run deleted in MLflow (its UI) is restored; a deleted one's never is. Raises on a failed request
    (nothing is committed then). Returns how many pending points were dropped (MLflow already has them, or
    the run is gone)."""
    existing_params: dict[str, str] = {}
    found = None
    dropped = 0
    key = run.create_tags.get(IDENTITY_TAG)
    if not run.attach_id and key and (run.label is not None or run.delete_requested):
        # The caller lost the id (its process was killed before recording it): find the run it made.
        try:
            matches = client.search_runs([experiment_id], max_results=1,
                                         filter_string=f"tags.`{IDENTITY_TAG}` = '{key}'")
        except Exception as exc:  # e.g. a quote in the name: create a new run as before
            log.debug("looking up run %s by its identity tag failed: %s", run.run_id, exc)
            matches = []
        run.attach_id = matches[0].info.run_id if matches else None
    if run.attach_id:
        try:
            found = client.get_run(run.attach_id)
        except Exception as exc:
            if error_code(exc) != "RESOURCE_DOES_NOT_EXIST":
                raise
            if not run.deleted_before:  # gone and deleted in rftui long ago: nothing to tell
                warn(
                    "reattach",
                    f"MLflow run {run.attach_id} of run {run.run_id} not found"
                    + ("; logging to a new MLflow run" if run.label is not None else ""),
                )
    if found is not None and run.delete_requested and found.info.lifecycle_stage == "deleted":
        # Deleted in MLflow already (e.g. by the session that deleted the rftui run): it stays as it is (MLflow
        # takes no tags or status on a deleted run anyway).
        run.mlflow_id = found.info.run_id
        run.started = run.deleted = True
        run.pending_params.clear()
        run.pending_tags.clear()
        run.pending_status = None
        return run.drop_pending()
    if found is not None:
        mid = found.info.run_id
        if found.info.lifecycle_stage == "deleted" and run.label is not None and not run.delete_requested:
            client.restore_run(mid)  # a live rftui run is shown, even if hidden in MLflow
        if run.deleted_before and run.pending_status is None and found.info.status in ("RUNNING", "SCHEDULED"):
            run.pending_status = "KILLED"  # no process trains it: a finished or failed one keeps its status
        shipped: set[tuple[str, int]] = set()
        for name in found.data.metrics:
            shipped.update((name, int(m.step)) for m in client.get_metric_history(mid, name))
        existing_params = dict(found.data.params)
        if run.label and found.info.run_name != run.label:
            client.update_run(mid, name=run.label)
        run.pending_tags = {**run.create_tags, **run.pending_tags}
        # Only now that everything was read do we commit to this run.
        run.shipped |= shipped
        for point in [k for k in run.pending if k in run.shipped]:
            del run.pending[point]
            dropped += 1
        if not run.pending:
            run.first_pending_at = None
    elif run.label is None:
        # Adopted only for a status/tag/delete and the MLflow run is gone: nothing to do.
        run.deleted = True
        return run.drop_pending()
    else:
        created = client.create_run(experiment_id, run_name=run.label, tags=dict(run.create_tags))
        mid = created.info.run_id
    run.mlflow_id = mid
    run.started = True
    for name, value in list(run.pending_params.items()):
        if name in existing_params:
            if existing_params[name] != value:
                log.debug("param %s of run %s changed (%r -> %r); MLflow keeps the first",
                          name, run.run_id, existing_params[name], value)
            del run.pending_params[name]
    return dropped
