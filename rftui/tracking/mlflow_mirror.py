"""The MLflow sink's thread side: every request to MLflow, batched, retried and reconciled per run
(the per-run state and run creation are in :mod:`rftui.tracking.mlflow_runs`).

Only the sink's background thread calls :class:`MlflowMirror`'s methods, but for
:meth:`MlflowMirror.check_server`, ``admit``, ``admit_control`` and ``unsent_text`` (any thread)
and ``probe_due`` and ``probe_again`` (the sink's watch thread); the outage itself is in
:mod:`rftui.tracking.mlflow_outage`. Callers of the sink read a few attributes
without a lock (single assignments; the GIL suffices): ``mlflow_ids``, ``backend_down``, ``start_wait_ok``,
``down``, ``busy_since``. ``mlflow`` is imported here lazily, on that thread.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import Counter
from itertools import islice
from typing import Any, Callable

from rftui.tracking.mlflow_connect import connect, is_http
from rftui.tracking.mlflow_outage import Outages
from rftui.tracking.mlflow_runs import RunState, open_in_mlflow
from rftui.tracking.mlflow_values import (
    IDENTITY_TAG,
    MAX_METRICS_PER_BATCH,
    MAX_PARAMS_TAGS_PER_BATCH,
    TERMINAL_STATUSES,
    is_permanent,
    mlflow_key,
    short_error,
)

log = logging.getLogger("rftui.tracking.mlflow_sink")  # one logger name for the whole sink


# ----------------------------------------------------------------------------- the mirror


class Abandoned(Exception):
    """The sink was closed while the server was down: the thread sends nothing more."""


@dataclasses.dataclass(frozen=True)
class SinkSettings:
    """How the sink talks to MLflow; see :class:`rftui.tracking.mlflow_sink.MlflowSink`."""

    tracking_uri: str
    experiment_name: str
    flush_interval: float
    batch_size: int
    retry_interval: float
    max_retry_interval: float
    retry_window: float
    max_pending_points: int
    artifact_location: str | None
    quiet_mlflow_logs: bool
    workdir: str | None = None  # the experiment's, for the `rftui show` hint in the outage warnings
    reconnect_interval: float = 2.0  # a server that stopped answering is asked again after this, doubling
    max_reconnect_interval: float = 60.0


class MlflowMirror:
    """Keeps each rftui run's MLflow record in step with what the sink was asked to log.

    ``warn(kind, message)`` reports a failure (the sink shows each kind once).
    """

    def __init__(self, settings: SinkSettings, warn: Callable[[str, str], None]) -> None:
        for field in dataclasses.fields(settings):
            setattr(self, field.name, getattr(settings, field.name))
        self._warn = warn
        # Read by the sink's callers.
        self.mlflow_ids: dict[str, str] = {}
        self.backend_down = False
        self.start_wait_ok = True
        # An http server that answered once and stopped answering.
        self.outages = Outages(self.tracking_uri, self.max_pending_points, self.reconnect_interval,
                               self.max_reconnect_interval, warn, self._show_hint)
        self.abandoned = False  # closed while the server was down: nothing more is sent, ever
        self.busy_since: float | None = None  # monotonic start of the requests in progress, if any
        # Metric points the callers queued that this thread has not taken in yet (it may be held in one of
        # MLflow's own request retries for minutes): bounded too.
        self._intake_lock = threading.Lock()
        self.queued_points = 0
        self.queued_runs: Counter[str] = Counter()  # runs with a start, status, tags or delete queued
        self.intake_dropped = 0
        self._intake_dropped_seen = 0
        # Thread-only.
        self._client: Any = None
        self._experiment_id: str | None = None
        self._init_fail_count = 0
        self._init_next_try = 0.0
        self._down_since: float | None = None
        self._runs: dict[str, RunState] = {}
        self._pending_total = 0

    def release_waiters(self) -> None:
        """Answer every start_run still waiting (the thread is ending)."""
        for run in self._runs.values():
            run.resolve_waiters(run.mlflow_id)

    @property
    def down(self) -> bool:
        """True while a tracking server that answered once does not answer (nothing is sent then)."""
        return self.outages.down

    def admit(self, n: int) -> bool:
        """A caller may queue ``n`` more metric points (any thread); False when too many wait already."""
        with self._intake_lock:
            if self.queued_points + n > self.max_pending_points:
                self.intake_dropped += n
                return False
            self.queued_points += n
            return True

    def admit_control(self, run_id: str) -> None:
        """A caller queues a start, status, tags or delete of ``run_id`` (any thread)."""
        with self._intake_lock:
            self.queued_runs[run_id] += 1

    def wait_time(self, now: float) -> float:
        """Seconds until the next cycle is due (at most 1 s; never a busy loop)."""
        if self.down or self.abandoned:
            return 1.0
        if self._client is None:
            wake = self._init_next_try if self._runs else now + 1.0
        else:
            wake = now + 1.0
            for run in self._runs.values():
                if not run.addressable or run.deleted:
                    continue  # nothing can be shipped for these
                if run.pending and run.first_pending_at is not None:
                    due = run.first_pending_at + self.flush_interval
                    if self._pending_total >= self.batch_size:
                        due = now
                    wake = min(wake, max(due, run.next_try))
                elif run.has_control_work():
                    wake = min(wake, run.next_try)
        return min(1.0, max(0.01, wake - now))

    def _run(self, run_id: str) -> RunState:
        run = self._runs.get(run_id)
        if run is None:
            run = self._runs[run_id] = RunState(run_id)
        return run

    def apply(self, op: tuple) -> None:
        kind, run_id = op[0], op[1]
        run = self._run(run_id)
        with self._intake_lock:
            if kind == "metrics":
                self.queued_points -= len(op[3])
            else:
                self.queued_runs[run_id] -= 1
                if self.queued_runs[run_id] <= 0:
                    del self.queued_runs[run_id]
        if kind == "metrics":
            self._add_points(run, op[2], op[3], op[4])
            return
        if kind == "start":
            _, _, label, params, tags, attach_id, waiter = op
            run.label = label
            if not run.started:
                run.attach_id = attach_id or run.attach_id
                run.create_tags.update(tags)
            else:
                run.pending_tags.update(tags)
            run.pending_params.update(params)
            if run.started or self.backend_down:
                waiter.resolve(run.mlflow_id)
            else:
                run.waiters.append(waiter)
            run.next_try = 0.0  # a new request deserves a prompt attempt
            return
        if run.delete_requested:
            return  # a deleted run's MLflow record is final: KILLED, tagged, deleted
        adopt_id = op[-1]
        if adopt_id and run.label is None and not run.started:
            run.attach_id = run.attach_id or adopt_id  # a run not started in this process
        if kind == "tags":
            run.pending_tags.update(op[2])
        elif kind == "status":
            run.pending_status = op[2]
        elif kind == "delete":
            _, _, ended, identity, _ = op
            run.delete_requested = True
            run.pending_tags["rftui.deleted"] = "true"
            if ended is None:  # deleted in an earlier process: MLflow's status says whether it was going
                run.deleted_before = True
            elif not ended:  # a run that was still going is killed; a finished or failed one keeps its status
                run.pending_status = "KILLED"
            if identity and not run.started:  # its MLflow id may never have reached state.db
                run.create_tags.setdefault(IDENTITY_TAG, identity)

    def _add_points(self, run: RunState, step: int, metrics: dict, ts: int) -> None:
        if run.deleted or run.delete_requested:
            return
        for name, value in metrics.items():
            try:
                value = float(value)
            except (TypeError, ValueError):
                log.debug("metric %r of run %s is not a number: %r", name, run.run_id, value)
                continue
            key = (mlflow_key(name), step)
            if key in run.shipped:
                continue
            if key not in run.pending:
                if self._pending_total >= self.max_pending_points:
                    self._drop_oldest()
                self._pending_total += 1
            if run.first_pending_at is None:
                run.first_pending_at = time.monotonic()
            run.pending[key] = (value, ts)

    def _drop_oldest(self) -> None:
        """Make room for one point: the oldest waiting one goes (the newest show how training goes now)."""
        waiting = [run for run in self._runs.values() if run.pending]
        if not waiting:
            return
        run = min(waiting, key=lambda r: next(iter(r.pending.values()))[1])
        run.pending.popitem(last=False)
        self._pending_total -= 1
        if not run.pending:
            run.first_pending_at = None
        self._count_dropped(1)

    def _count_dropped(self, n: int) -> None:
        """Points dropped beyond the cap: part of the outage's notes while there is one, else one warning."""
        outage = self.outages.current
        if outage is not None:
            outage.dropped += n
            return
        self._warn(
            "overflow",
            f"MLflow is behind: over {self.max_pending_points} metric points waiting; more are dropped from "
            "MLflow (training is unaffected; the experiment's state.db keeps them)",
        )

    # ---------------------------------------------------------------- backend

    def init_backend(self, now: float) -> bool:
        try:
            client, experiment_id = connect(self.tracking_uri, self.experiment_name, self.artifact_location,
                                            quiet=self.quiet_mlflow_logs)
        except Exception as exc:
            self._client = None
            self.backend_down = True
            if self._down_since is None:
                self._down_since = now
            self._init_fail_count += 1
            self._init_next_try = now + self._backoff(self._init_fail_count)
            self._warn(
                "backend",
                f"MLflow tracking unavailable at {self.tracking_uri} ({short_error(exc)}); "
                "training continues, MLflow logging is retried",
            )
            for run in self._runs.values():
                run.resolve_waiters(None)
            return False
        if self._init_fail_count:
            log.info("MLflow tracking at %s is reachable again", self.tracking_uri)
        self._client = client
        self._experiment_id = experiment_id
        self.backend_down = False
        self._down_since = None
        self._init_fail_count = 0
        return True

    def check_server(self, timeout: float | None = None) -> bool:
        """True when an http(s) server that answered at start does not answer one quick request (or is
        already known to be down): an outage starts then, with one warning, and nothing is sent until the
        sink's watch thread finds it back (:meth:`probe_again`). Any thread may ask (the sink's callers do
        while they wait on this thread, which may sit in MLflow's own retries for minutes)."""
        if self._client is None or not is_http(self.tracking_uri):
            return False  # never connected (retried with backoff), or a store with no server to lose
        if self.outages.check(timeout):
            self.backend_down = True
            return True
        return False

    def probe_due(self, now: float) -> bool:
        return not self.abandoned and self.outages.probe_due(now)

    def probe_again(self) -> bool:
        """The watch thread asks a server that is down again; True when it answers (send what waited)."""
        if not self.outages.probe_again():
            return False
        self.backend_down = False
        return True

    def _outage_over(self) -> None:
        """After a cycle while the server answers again: once nothing waits, the outage is over."""
        outage = self.outages.current
        if outage is not None and not outage.down and not self._has_backlog():
            self.outages.end()

    def _has_backlog(self) -> bool:
        return any(run.addressable and not run.deleted
                   and (run.pending or run.has_control_work()) for run in self._runs.values())

    def unsent_text(self) -> str | None:
        """At close while the server is down (any thread): what was never sent, for the closing warning."""
        if not self.down:
            return None
        runs = list(self._runs.values())  # one C call: safe while this thread may still be taking ops in
        with self._intake_lock:
            unsent_runs = set(self.queued_runs)
        unsent_runs.update(run.run_id for run in runs if run.has_control_work() and not run.deleted)
        return self.outages.unsent(self._pending_total + self.queued_points, len(unsent_runs),
                                   self.intake_dropped - self._intake_dropped_seen)

    def _show_hint(self) -> str:
        # Only with the experiment's workdir: a bare `rftui show NAME` reads the default workdir, maybe another one.
        if self.workdir is None:
            return ""
        return f" (`rftui show {self.experiment_name} --workdir {self.workdir}`)"

    def _backoff(self, failures: int) -> float:
        return min(self.max_retry_interval, self.retry_interval * (2 ** max(0, failures - 1)))

    # ---------------------------------------------------------------- shipping

    def cycle(self, now: float, *, force: bool) -> None:
        if self.intake_dropped != self._intake_dropped_seen:
            self._count_dropped(self.intake_dropped - self._intake_dropped_seen)
            self._intake_dropped_seen = self.intake_dropped
        if self.down or self.abandoned:
            return  # nothing is sent and nothing expires: the points wait for the server (bounded)
        if self._client is None:
            if not self._runs:
                return
            if force or now >= self._init_next_try:
                self.init_backend(now)
            if self._client is None:
                self._expire_all(now)
                return
        total_due = force or self._pending_total >= self.batch_size
        for run in list(self._runs.values()):
            if run.deleted:
                continue
            if not force and now < run.next_try:
                continue
            metrics_due = total_due or (
                run.first_pending_at is not None and now - run.first_pending_at >= self.flush_interval
            )
            if not (metrics_due and run.pending) and not run.has_control_work():
                continue
            self.busy_since = time.monotonic()
            try:
                self._reconcile(run)
            except Abandoned:
                return
            except Exception as exc:
                if self.check_server():
                    return  # the failed request's points wait for the server, in their order
                self._run_failed(run, exc, now)
            else:
                run.fail_count = 0
                run.failing_since = None
                run.next_try = 0.0
            finally:
                self.busy_since = None
        self._outage_over()

    def _reconcile(self, run: RunState) -> None:
        """Bring one run's MLflow record up to date; raises on the first failed request."""
        if not run.addressable:
            return  # start_run not called yet: keep the points until it is
        if self.abandoned:
            raise Abandoned
        client = self._client
        if not run.started:
            self._stage = "start"
            self._start_in_mlflow(run)
            if not run.started:
                return
        mid = run.mlflow_id
        if run.pending_params:
            from mlflow.entities import Param

            self._ship_pairs(run, "params", run.pending_params,
                             lambda chunk: client.log_batch(mid, params=[Param(k, v) for k, v in chunk],
                                                            synchronous=True))
        if run.pending:
            self._stage = "metrics"
            self._ship_metrics(run)
        if run.pending_tags:
            from mlflow.entities import RunTag

            self._ship_pairs(run, "tags", run.pending_tags,
                             lambda chunk: client.log_batch(mid, tags=[RunTag(k, v) for k, v in chunk],
                                                            synchronous=True))
        if run.pending_status:
            self._stage = "status"
            status = run.pending_status
            if status in TERMINAL_STATUSES:
                self._guarded(run, "status", lambda: client.set_terminated(mid, status))
            else:
                self._guarded(run, "status", lambda: client.update_run(mid, status=status))
            if run.pending_status == status:
                run.pending_status = None
        if run.delete_requested and not run.deleted:
            self._stage = "delete"
            self._guarded(run, "delete", lambda: client.delete_run(mid))
            run.deleted = True
            self._drop_pending(run)

    def _ship_pairs(self, run: RunState, what: str, pending: dict[str, str],
                    send: Callable[[list[tuple[str, str]]], Any]) -> None:
        """Send pending params or tags in MLflow-sized batches; a pair is done once sent, unless the
        caller changed its value meanwhile (then the new value goes out next time)."""
        self._stage = what
        items = list(pending.items())
        for i in range(0, len(items), MAX_PARAMS_TAGS_PER_BATCH):
            chunk = items[i:i + MAX_PARAMS_TAGS_PER_BATCH]
            self._guarded(run, what, lambda: send(chunk))
            for k, v in chunk:
                if pending.get(k) == v:
                    del pending[k]

    def _guarded(self, run: RunState, what: str, call: Callable[[], Any]) -> bool:
        """Run one request. A permanent rejection (bad value, run gone) is warned about and
        treated as done; anything else propagates so the run is retried later."""
        if self.abandoned:
            raise Abandoned  # closed while this thread sat in a request to a server that was down
        try:
            call()
            return True
        except Exception as exc:
            if not is_permanent(exc):
                raise
            self._warn(
                f"rejected-{what}",
                f"MLflow rejected {what} of run {run.run_id} ({short_error(exc)}); skipped",
            )
            return False

    def _start_in_mlflow(self, run: RunState) -> None:
        self._pending_total -= open_in_mlflow(self._client, self._experiment_id, run, self._warn)
        if not run.started:
            return
        self.mlflow_ids[run.run_id] = run.mlflow_id
        self.start_wait_ok = True
        run.resolve_waiters(run.mlflow_id)

    def _ship_metrics(self, run: RunState) -> None:
        from mlflow.entities import Metric

        limit = min(self.batch_size, MAX_METRICS_PER_BATCH)
        while run.pending:
            chunk = list(islice(run.pending.items(), limit))
            batch = [Metric(name, value, ts, step) for (name, step), (value, ts) in chunk]
            self._guarded(run, "metrics", lambda: self._client.log_batch(
                run.mlflow_id, metrics=batch, synchronous=True))
            for key, _ in chunk:  # shipped, or permanently rejected: either way not again
                del run.pending[key]
                run.shipped.add(key)
            self._pending_total -= len(chunk)
            outage = self.outages.current
            if outage is not None:
                outage.sent += len(chunk)
        run.first_pending_at = None

    def _drop_pending(self, run: RunState) -> int:
        dropped = run.drop_pending()
        self._pending_total -= dropped
        return dropped

    def _run_failed(self, run: RunState, exc: Exception, now: float) -> None:
        stage = getattr(self, "_stage", "metrics")
        run.fail_count += 1
        run.next_try = now + self._backoff(run.fail_count)
        if run.failing_since is None:
            run.failing_since = now
        self._warn(
            stage,
            f"MLflow {stage} failed for run {run.run_id} ({short_error(exc)}); training continues, "
            "retrying",
        )
        if not run.started:
            run.resolve_waiters(None)
        if now - run.failing_since >= self.retry_window and run.pending:
            n = self._drop_pending(run)
            outage = self.outages.current
            if outage is not None:
                outage.dropped += n
            self._warn(
                "dropped",
                f"MLflow unreachable for {self.retry_window:.0f}s: dropped {n} metric points "
                f"of run {run.run_id} (they remain in the experiment's state.db)",
            )
            run.failing_since = now

    def _expire_all(self, now: float) -> None:
        if self._down_since is None or now - self._down_since < self.retry_window:
            return
        n = sum(self._drop_pending(run) for run in self._runs.values())
        if n:
            self._warn(
                "dropped",
                f"MLflow unreachable for {self.retry_window:.0f}s: dropped {n} metric points "
                "(they remain in the experiment's state.db)",
            )
        self._down_since = now
