"""MLflow as a sink: one MLflow run per rftui run, metrics shipped in batches from a thread.

The engine's truth lives in ``state.db``; MLflow only mirrors it. Everything here is built so
that tracking can never stop or slow training:

* Every public method of :class:`MlflowSink` only puts a small record on a queue (``start_run``
  additionally waits, bounded, for the MLflow run id). A background thread owns the
  ``MlflowClient`` and does all I/O: it creates/re-attaches runs, logs params, and ships metric
  points with ``log_batch`` (never per-point ``log_metric``), grouped by run.
* Metric points are keyed by (run, name, step). A key shipped once is never shipped again; on
  re-attach to an existing MLflow run the keys already stored there are loaded first, so a
  resumed experiment that re-sends steps logged before a crash does not duplicate them.
* Failures (unusable URI, server down, an exception in ``log_batch``) are reported through
  ``on_warning`` once per kind, logged, and retried with backoff for a limited time while the
  points wait in memory (bounded). Nothing is raised to the caller and nothing is printed.
* An http(s) server that answered at start and then stops answering pauses MLflow logging (one warning):
  MLflow's client retries a request for minutes before it fails, so one quick probe of ``/health`` is made
  after a failed request, while a request takes long (a watch thread) and while a caller waits on the sink's
  thread. While it is down nothing is sent, the records wait (metric points bounded by
  ``max_pending_points``, the oldest dropped beyond it), and the watch thread asks the server again with
  backoff; when it answers, what waited is sent in order and one note says logging resumed. Closing never
  waits for the server: what was not sent by then is said in one warning, and the sink's thread, which may
  still sit in one of MLflow's request retries, sends nothing after it.

``mlflow`` is imported lazily, in the sink's thread, so importing this module is cheap.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Mapping
from typing import Any, Callable

from rftui.tracking.mlflow_connect import PROBE_TIMEOUT, is_http
from rftui.tracking.mlflow_mirror import MlflowMirror, SinkSettings
from rftui.tracking.mlflow_runs import Waiter
from rftui.tracking.mlflow_values import (
    IDENTITY_TAG,
    STATUS_ALIASES,
    as_mapping,
    default_tracking_uri,
    flatten_params,
    mlflow_key,
    short_error,
    tag_dict,
)
from rftui.tracking.redact import redact

__all__ = ["MlflowSink", "IDENTITY_TAG", "default_tracking_uri", "flatten_params", "redact", "mlflow_key"]

log = logging.getLogger(__name__)
log.addHandler(logging.NullHandler())  # never fall through to logging's stderr "last resort"

STUCK_AFTER = 1.0  # seconds a caller waits on the sink's thread before checking the server is still there
REQUEST_STUCK_AFTER = 2.0  # seconds a request may take before the watch thread checks the server
WATCH_INTERVAL = 0.5
CLOSE_GRACE = 0.5  # seconds close gives the thread to take in what is queued while the server is down


# ----------------------------------------------------------------------------- the sink


class MlflowSink:
    """Mirror rftui runs into MLflow without ever blocking or failing the caller.

    ``on_warning`` is called (from the sink's thread) at most once per kind of failure with a
    short human-readable message; exceptions it raises are swallowed. ``flush_interval`` is how
    long a metric point may wait before it is shipped; ``batch_size`` pending points trigger an
    immediate ship. Failed requests are retried with exponential backoff starting at
    ``retry_interval`` seconds; points that could not be shipped for ``retry_window`` seconds,
    or beyond ``max_pending_points`` in memory, are dropped (with a warning).
    ``start_run`` waits at most ``start_timeout`` seconds for the MLflow run id.
    An http(s) server that stopped answering mid-run is asked again after ``reconnect_interval`` seconds,
    doubling up to ``max_reconnect_interval``; meanwhile nothing expires (but for ``max_pending_points``).
    ``workdir`` is the experiment's workdir: the outage warnings name it in their `rftui show` hint.
    """

    def __init__(
        self,
        tracking_uri: str,
        experiment_name: str,
        on_warning: Callable[[str], None] | None = None,
        flush_interval: float = 1.0,
        batch_size: int = 500,
        *,
        start_timeout: float = 10.0,
        retry_interval: float = 1.0,
        max_retry_interval: float = 30.0,
        retry_window: float = 300.0,
        max_pending_points: int = 200_000,
        artifact_location: str | None = None,
        quiet_mlflow_logs: bool = True,
        workdir: str | os.PathLike | None = None,
        reconnect_interval: float = 2.0,
        max_reconnect_interval: float = 60.0,
    ) -> None:
        self.tracking_uri = str(tracking_uri)
        self.experiment_name = str(experiment_name)
        self.on_warning = on_warning
        self.flush_interval = max(0.0, float(flush_interval))
        self.batch_size = max(1, int(batch_size))
        self.start_timeout = max(0.0, float(start_timeout))
        self.retry_interval = max(0.01, float(retry_interval))
        self.max_retry_interval = max(self.retry_interval, float(max_retry_interval))
        self.retry_window = max(0.0, float(retry_window))
        self.max_pending_points = max(1, int(max_pending_points))

        self._closed = False
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._warned: set[str] = set()
        self._warn_lock = threading.Lock()
        self._mirror = MlflowMirror(
            SinkSettings(
                tracking_uri=self.tracking_uri, experiment_name=self.experiment_name,
                flush_interval=self.flush_interval, batch_size=self.batch_size,
                retry_interval=self.retry_interval, max_retry_interval=self.max_retry_interval,
                retry_window=self.retry_window, max_pending_points=self.max_pending_points,
                artifact_location=artifact_location, quiet_mlflow_logs=quiet_mlflow_logs,
                workdir=None if workdir is None else str(workdir),
                reconnect_interval=max(0.01, float(reconnect_interval)),
                max_reconnect_interval=max(float(reconnect_interval), float(max_reconnect_interval)),
            ),
            self._warn_once,
        )

        self._watch_stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rftui-mlflow-sink", daemon=True)
        self._thread.start()
        if is_http(self.tracking_uri):
            threading.Thread(target=self._watch, name="rftui-mlflow-watch", daemon=True).start()

    # ------------------------------------------------------------------ public API (any thread)

    def start_run(
        self,
        run_id: str,
        *,
        label: str,
        params: Mapping[str, Any],
        tags: Mapping[str, Any] | None = None,
        mlflow_run_id: str | None = None,
    ) -> str | None:
        """Create (or re-attach to ``mlflow_run_id``) the MLflow run mirroring ``run_id``.

        Params are redacted then flattened. Returns the MLflow run id, or None when tracking is
        down or did not answer within ``start_timeout`` (the run is then still created in the
        background as soon as possible; :meth:`mlflow_run_id` reports it later).
        """
        if self._closed:
            return self._mirror.mlflow_ids.get(run_id)
        try:
            flat = flatten_params(redact(as_mapping(params)))
            tag_map = tag_dict(tags)
        except Exception as exc:  # a weird params object must not break training
            self._warn_once("params", f"MLflow params for run {run_id} not usable: {short_error(exc)}")
            flat, tag_map = {}, tag_dict({"rftui.run_id": run_id})
        waiter = Waiter()
        self._put_control(("start", str(run_id), str(label), flat, tag_map, mlflow_run_id, waiter))
        if self._mirror.backend_down or not self._mirror.start_wait_ok:
            return self._mirror.mlflow_ids.get(run_id)
        if not self._wait(waiter.event, self.start_timeout):
            self._mirror.start_wait_ok = False  # later starts don't wait on a slow backend
            return self._mirror.mlflow_ids.get(run_id)
        return waiter.value

    def mlflow_run_id(self, run_id: str) -> str | None:
        """The MLflow run id of ``run_id`` once it exists, else None (never blocks)."""
        return self._mirror.mlflow_ids.get(run_id)

    def log_metrics(
        self, run_id: str, step: int, metrics: Mapping[str, float], timestamp_ms: int | None = None
    ) -> None:
        """Queue metric points of one step; never blocks. Non-numeric values are ignored."""
        if self._closed or not metrics or not self._mirror.admit(len(metrics)):
            return  # (not admitted: this many already wait for the sink's thread; counted as dropped)
        ts = int(timestamp_ms) if timestamp_ms is not None else int(time.time() * 1000)
        self._queue.put(("metrics", str(run_id), int(step), dict(metrics), ts))

    def set_status(self, run_id: str, status: str, *, mlflow_run_id: str | None = None) -> None:
        """Set the MLflow run status: RUNNING | FINISHED | KILLED | FAILED (| SCHEDULED).

        rftui state names (running, waiting, completed, stopped, failed, pending) are accepted
        too. An unknown status raises ValueError (a programming error, not a backend failure).
        ``mlflow_run_id`` (here, in :meth:`set_tags` and :meth:`mark_deleted`) names the MLflow
        run of a run that was not started with :meth:`start_run` in this process (e.g. a
        stopped run after ``rftui resume``); it is ignored for runs the sink already knows.
        """
        mapped = STATUS_ALIASES.get(str(status).upper())
        if mapped is None:
            raise ValueError(f"unknown run status {status!r}; expected one of "
                             "RUNNING, FINISHED, KILLED, FAILED, SCHEDULED")
        if not self._closed:
            self._put_control(("status", str(run_id), mapped, mlflow_run_id))

    def set_tags(
        self, run_id: str, tags: Mapping[str, Any], *, mlflow_run_id: str | None = None
    ) -> None:
        """Set (redacted) tags on the run's MLflow run."""
        if self._closed or not tags:
            return
        self._put_control(("tags", str(run_id), tag_dict(tags), mlflow_run_id))

    def mark_deleted(self, run_id: str, *, mlflow_run_id: str | None = None, ended: bool = False) -> None:
        """Tag ``rftui.deleted=true``, set status KILLED (unless the run had ``ended``: a finished or failed
        run keeps its status), then delete the MLflow run."""
        if not self._closed:
            self._put_control(("delete", str(run_id), ended, None, mlflow_run_id))

    def keep_deleted(self, run_id: str, *, mlflow_run_id: str | None = None, identity: str | None = None) -> None:
        """A run deleted before this process (state.db says so): its MLflow run stays deleted, never restored nor
        created. One MLflow missed (the delete was applied while it was unreachable) is deleted now, as
        :meth:`mark_deleted` does, KILLED if MLflow still has it RUNNING or SCHEDULED. ``identity`` (the
        :data:`IDENTITY_TAG` value :meth:`start_run` was given) finds it when ``mlflow_run_id`` is not known."""
        if not self._closed:
            self._put_control(("delete", str(run_id), None, identity, mlflow_run_id))

    def flush(self, timeout: float = 10.0) -> None:
        """Wait (at most ``timeout`` s) until everything queued so far is shipped or failed; not at all while a
        tracking server is down (nothing can be shipped then; it waits for the server)."""
        if self._closed or self._mirror.down or not self._thread.is_alive():
            return
        done = threading.Event()
        self._queue.put(("flush", done))
        self._wait(done, max(0.0, timeout))

    def close(self, timeout: float = 10.0) -> None:
        """Flush (bounded by ``timeout``) and stop the background thread. Idempotent. With a tracking server
        down (or found down meanwhile), nothing is waited for: one warning says what was not sent to MLflow."""
        if self._closed:
            return
        deadline = time.monotonic() + max(0.0, timeout)
        self.flush(timeout)
        self._closed = True
        self._queue.put(("stop",))
        # Its last cycle sends what is left; the watch thread still looks out for a server that goes away.
        while self._thread.is_alive() and not self._mirror.down:
            left = deadline + 0.5 - time.monotonic()
            if left <= 0:
                break
            self._thread.join(min(0.1, left))
        self._watch_stop.set()
        if self._mirror.down:
            # The thread may sit in MLflow's retries for minutes: it sends nothing more and ends on its own. When
            # it is free, a moment to take in what is queued (the warning counts what is still queued anyway).
            self._mirror.abandoned = True
            if self._mirror.busy_since is None:
                self._thread.join(min(CLOSE_GRACE, max(0.0, deadline - time.monotonic())))
            unsent = self._mirror.unsent_text()
            if unsent is not None:
                self._warn_once("unsent", unsent)

    @property
    def healthy(self) -> bool:
        """False while the tracking backend is known to be unusable."""
        return not self._mirror.backend_down

    def __enter__(self) -> "MlflowSink":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def _put_control(self, op: tuple) -> None:
        self._mirror.admit_control(op[1])  # counted, so that closing with the server down can say it was not sent
        self._queue.put(op)

    def _wait(self, event: threading.Event, timeout: float) -> bool:
        """Wait (at most ``timeout`` s) for the sink's thread to answer. When it takes long, ask whether a
        tracking server has gone away: then logging pauses, and nobody waits out MLflow's retries."""
        deadline = time.monotonic() + timeout
        if event.wait(min(timeout, STUCK_AFTER)):
            return True
        left = deadline - time.monotonic()
        if left <= 0 or self._mirror.check_server(timeout=max(0.1, min(left, PROBE_TIMEOUT))):
            return event.is_set()
        return event.wait(max(0.0, deadline - time.monotonic()))

    def _watch(self) -> None:
        """A request that takes long may be MLflow retrying a server that has gone away, for minutes: look
        once per such request, so that the warning comes now and nothing more is sent. While the server is
        down, ask it again on the backoff's schedule (here: never on a caller's thread, nor on the sink's,
        which takes in records meanwhile), and wake the sink's thread when it answers."""
        probed: float | None = None
        while not self._watch_stop.wait(WATCH_INTERVAL):
            if not self._thread.is_alive():
                return
            mirror = self._mirror
            if mirror.probe_due(time.monotonic()):
                if mirror.probe_again() and not self._watch_stop.is_set():
                    self._queue.put(("wake",))
                continue
            since = mirror.busy_since
            if since is not None and since != probed and time.monotonic() - since >= REQUEST_STUCK_AFTER:
                probed = since
                mirror.check_server()

    # ------------------------------------------------------------------ warnings

    def _warn_once(self, kind: str, message: str) -> None:
        with self._warn_lock:
            first = kind not in self._warned
            self._warned.add(kind)
        if not first:
            log.debug("%s", message)
            return
        log.warning("%s", message)
        if self.on_warning is not None:
            try:
                self.on_warning(message)
            except Exception:  # the callback is the caller's; never let it kill the sink
                log.exception("on_warning callback failed")

    # ------------------------------------------------------------------ worker thread

    def _loop(self) -> None:
        try:
            self._mirror.init_backend(time.monotonic())
            while True:
                try:
                    op = self._queue.get(timeout=self._mirror.wait_time(time.monotonic()))
                except queue.Empty:
                    op = None
                handled = 0
                while op is not None:
                    kind = op[0]
                    if kind == "stop":
                        self._mirror.cycle(time.monotonic(), force=True)
                        return
                    if kind == "flush":
                        self._mirror.cycle(time.monotonic(), force=True)
                        op[1].set()
                    elif kind == "wake":  # the server answers again: send what waited now
                        self._mirror.cycle(time.monotonic(), force=True)
                    else:
                        self._mirror.apply(op)
                    handled += 1
                    if handled >= 10_000:  # stay responsive under a flood of points
                        break
                    try:
                        op = self._queue.get_nowait()
                    except queue.Empty:
                        op = None
                self._mirror.cycle(time.monotonic(), force=False)
        except BaseException as exc:  # pragma: no cover - defensive: the sink just goes quiet
            self._mirror.backend_down = True
            self._warn_once("internal", f"MLflow sink stopped: {short_error(exc)}")
        finally:
            self._mirror.release_waiters()
            self._drain_flush_waiters()

    def _drain_flush_waiters(self) -> None:
        # Release any flush() still waiting once the thread ends.
        while True:
            try:
                op = self._queue.get_nowait()
            except queue.Empty:
                return
            if op[0] == "flush":
                op[1].set()
            elif op[0] == "start":
                op[-1].resolve(self._mirror.mlflow_ids.get(op[1]))
