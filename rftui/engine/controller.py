"""The controller: one `step(timeout)` loop that dispatches quanta, gathers events and applies ops.

It lives in the front end's process. Every front end (TUI, headless, Python API) drives it the
same way and renders the events `step()` returns.
"""
from __future__ import annotations

import collections
import logging
import os
import queue
import shutil
import threading
import time
from concurrent.futures import Future
from multiprocessing.connection import Pipe
from typing import Any

from rftui.config.experiment import ExperimentSpec
from rftui.engine import events as ev
from rftui.engine.layout import ExperimentDir
from rftui.engine.liveness import start_time
from rftui.engine.messages import (
    DropRun, EvalDone, Preempt, QuantumDone, RunFailed, StepLogged, TrainQuantum, WorkerReady, WorkerWarning,
)
from rftui.engine.ops import KNOWN_OPS
from rftui.engine.run_mirror import close_tracking, mirror_status, replay_metrics, start_tracking
from rftui.engine.runs import TERMINAL, RunRecord
from rftui.engine.scheduler import ChunkFairScheduler
from rftui.engine.session_clock import reopen_session, start_session, stop_session
from rftui.engine.store import Store

log = logging.getLogger("rftui.controller")
OPS_POLL_SECONDS = 0.2


class ControllerClosed(RuntimeError):
    """An op requested after the controller closed: nothing will serve it."""


class Controller:
    def __init__(self, exp: ExperimentDir, spec: ExperimentSpec, store: Store, pool: Any = None,
                 sink: Any = None, data_files: dict[str, tuple[str, str | None]] | None = None):
        self.exp, self.spec, self.store, self.pool, self.sink = exp, spec, store, pool, sink
        self.data_files = data_files or store.get_meta("data_files") or {}
        self.scheduler = ChunkFairScheduler(spec.num_chunks)
        self.runs: dict[str, RunRecord] = {}
        self.idle: set[int] = set()
        self.busy: dict[int, str] = {}
        self.stopping = False
        self._finished_reported = False
        self._dispatch_done_at: dict[int, float] = {}
        self._requests: "queue.Queue[tuple[str, str | None, dict, str, Future]]" = queue.Queue()
        self._wake_reader, self._wake_writer = Pipe(duplex=False)
        self._wake_lock = threading.Lock()
        self._closed = False  # guarded by _wake_lock: no request is queued after close() drained the queue
        self._last_ops_poll = 0.0
        self._dead_seen: set[int] = set()
        self._points: list[tuple] = []
        self._warnings: collections.deque[str] = collections.deque()
        self._warnings_kept: set[tuple[str | None, str]] = set()
        for row in store.list_runs():
            self._register(RunRecord.from_store(row))

    def warn(self, message: str) -> None:
        """Thread-safe: report a warning (e.g. from the tracking thread) as an EngineWarning."""
        self._warnings.append(message)

    def _warning(self, message: str, run_id: str | None = None) -> ev.EngineWarning:
        """The one place a warning becomes an event: it is kept in state.db first (once per run and
        message), so that `rftui watch`, which only reads the store, shows it too."""
        if (run_id, message) not in self._warnings_kept:
            self._warnings_kept.add((run_id, message))
            try:
                self.store.add_warning(message, run_id)
            except Exception:  # noqa: BLE001 - a warning that cannot be kept must not stop training
                log.warning("could not keep warning %r in state.db", message, exc_info=True)
        return ev.EngineWarning(message, run_id)

    # ------------------------------------------------------------------ lifecycle

    def _register(self, rec: RunRecord) -> None:
        self.runs[rec.run_id] = rec
        if rec.status in TERMINAL:
            return
        if rec.status == "running":  # a quantum that was in flight when we last stopped
            rec.status = "waiting"
        self.scheduler.on_run_added(rec.run_id, chunks_done=min(rec.chunks_done, rec.num_chunks),
                                    num_chunks=rec.num_chunks)
        if rec.status == "stopped":
            self.scheduler.on_run_paused(rec.run_id)

    def start(self) -> list[Any]:
        """Start the workers and the tracking runs; returns the first events.

        The pool starts first: its workers spend seconds importing the training stack, and MLflow's
        first run creation (its own imports, a new database) can overlap with that."""
        # owner first, status last: a watcher that reads `running` must find a live owner beside it
        self.store.set_meta("controller_started", start_time(os.getpid()))
        self.store.set_meta("controller_pid", os.getpid())
        start_session(self.store, time.time())
        self.store.set_meta("status", "running")
        if self.pool is not None:
            self.pool.start()
        out: list[Any] = []
        for rec in self.runs.values():
            start_tracking(self, rec)
            out.append(ev.RunAdded(rec.run_id, rec.spec.label, rec.parent, rec.warm_start))
        # A resumed experiment's front end starts with an empty log: the warnings earlier sessions kept are
        # shown again, marked as theirs; kept already, they are not stored again when they recur.
        for row in self.store.warnings():
            self._warnings_kept.add((row["run_id"], row["message"]))
            out.append(ev.EngineWarning(row["message"], row["run_id"], earlier=True))
        replay_metrics(self)
        return out

    def add_run(self, rec: RunRecord, out: list[Any]) -> None:
        """A new run (a clone) joins the rotation at once."""
        self._register(rec)
        self.reopen()
        start_tracking(self, rec)
        out.append(ev.RunAdded(rec.run_id, rec.spec.label, rec.parent, rec.warm_start))

    def reopen(self) -> None:
        """A run joined or came back (a clone, a resumed stopped run): an experiment that had finished trains
        again, and a live owner's session clock goes on from where it stopped. Applied to a stored experiment (no
        pool: `rftui ctl`), it is `interrupted` until `rftui resume`, whose new session starts its own clock: the
        last session's stays stopped (it would count the time until a resume or a settle, trained or not)."""
        if self.store.get_meta("status") == "finished":
            if self.pool is not None:
                reopen_session(self.store, time.time())
            self.store.set_meta("status", "interrupted")
        self._finished_reported = False

    def settle_stored(self) -> None:
        """After an op on a stored experiment (no pool, its owner gone): when nothing is left to train (a clone
        deleted before it trained, the last waiting run deleted or stopped), it is `finished` again, as a live
        owner's `step` records it, so that `rftui resume` says there is nothing to resume instead of starting
        workers for nothing. Its session clock is left as it is: stopped at its owner's close, or, for an owner
        that was killed, read up to its last stored activity."""
        if self.pool is None and self.scheduler.is_finished() and self.store.get_meta("status") != "finished":
            self.store.set_meta("status", "finished")

    @property
    def finished(self) -> bool:
        return not self.busy and (self.stopping or self.scheduler.is_finished())

    def begin_shutdown(self) -> None:
        """Stop dispatching; preempt running quanta at their next optimizer step (they checkpoint)."""
        if self.stopping:
            return
        self.stopping = True
        for worker_id, run_id in self.busy.items():
            self.pool.send(worker_id, Preempt(run_id, "shutdown"))

    def close(self) -> list[Any]:
        """Wind down; returns the warnings given while closing (e.g. MLflow's), which no step() reports."""
        with self._wake_lock:
            self._closed = True
        self._serve_requests()  # ops queued while the last step ran are applied (an API caller waits on them)
        status = "finished" if self.scheduler.is_finished() else "interrupted"
        stop_session(self.store, time.time())
        self.store.set_meta("status", status)
        if self.pool is not None:
            for worker_id, event in self.pool.shutdown():
                self._on_worker_event(worker_id, event)
            self._flush_points()
        # the owner goes last: until the workers' last checkpoints are stored, runs still say running, and a
        # watcher that found no owner beside them would take the experiment for killed
        self.store.set_meta("controller_pid", None)
        self.store.set_meta("controller_started", None)
        close_tracking(self, status)
        late: list[Any] = []
        while self._warnings:  # e.g. MLflow's, while closing: the front end shows them after close, a watcher too
            late.append(self._warning(self._warnings.popleft()))
        return late

    # ------------------------------------------------------------------ the loop

    def step(self, timeout: float = 0.25) -> list[Any]:
        """Dispatch what can run, wait up to `timeout` for events and ops, and handle them."""
        out: list[Any] = []
        if not self.stopping:
            out += self._dispatch()
        worker_events, woke = self.pool.poll_events(timeout, extra=[self._wake_reader])
        if woke:
            with self._wake_lock:
                while self._wake_reader.poll():
                    self._wake_reader.recv_bytes()
        for worker_id, event in worker_events:
            out += self._on_worker_event(worker_id, event)
        out += self._on_dead_workers()
        out += self._serve_requests()
        if time.monotonic() - self._last_ops_poll >= OPS_POLL_SECONDS:
            self._last_ops_poll = time.monotonic()
            out += self._serve_store_ops()
        self._flush_points()
        while self._warnings:
            out.append(self._warning(self._warnings.popleft()))
        if self.finished and not self._finished_reported and not self.stopping:
            self._finished_reported = True
            stop_session(self.store, time.time())
            self.store.set_meta("status", "finished")
            counts: dict[str, int] = {}
            for rec in self.runs.values():
                counts[rec.status] = counts.get(rec.status, 0) + 1
            out.append(ev.ExperimentFinished(self.spec.name, counts))
        return out

    def _dispatch(self) -> list[Any]:
        out = []
        for assignment in self.scheduler.choose(sorted(self.idle)):
            rec = self.runs[assignment.run_id]
            chunk, start, end = rec.next_quantum()
            train_path, eval_path = self.data_files[self._data_key(rec)]
            command = TrainQuantum(
                run=rec.spec, chunk=chunk, num_chunks=rec.num_chunks, start_step=start, end_step=end,
                total_steps=rec.total_steps, train_path=train_path, eval_path=eval_path,
                checkpoint_root=str(self.exp.checkpoints), adapters_root=str(self.exp.adapters),
                checkpoint_dir=rec.checkpoint_dir, warm_from=rec.warm_from if start == 0 or rec.checkpoint_dir is None else None,
                seed=int(rec.spec.training.get("seed", self.spec.seed)),
            )
            if not self.pool.send(assignment.worker_id, command):
                continue
            self.scheduler.on_assigned(assignment)
            self.idle.discard(assignment.worker_id)
            self.busy[assignment.worker_id] = rec.run_id
            rec.worker_id = assignment.worker_id
            rec.quantum_id = self.store.start_quantum(rec.run_id, chunk, assignment.worker_id, start, end,
                                                      attempt=rec.attempts + 1)
            self._set_status(rec, "running", out)
            out.append(ev.QuantumDispatched(assignment.worker_id, rec.run_id, chunk, start, end))
        return out

    def _data_key(self, rec: RunRecord) -> str:
        from rftui.config.runspec import hook_name

        key = hook_name(rec.spec.formatting_func) or "default"
        return key if key in self.data_files else next(iter(self.data_files))

    def _set_status(self, rec: RunRecord, status: str, out: list[Any], reason: str | None = None) -> None:
        changed = rec.status != status or reason
        if reason is not None or rec.status != status:  # a new status without a reason clears the old one
            rec.reason = reason
        rec.status = status
        self.store.update_run(rec.run_id, **rec.store_fields())
        if changed:
            out.append(ev.RunStatusChanged(rec.run_id, status, reason))
            mirror_status(self, rec, status, reason)

    # ------------------------------------------------------------------ worker events

    def _on_worker_event(self, worker_id: int, event: Any) -> list[Any]:
        if isinstance(event, WorkerReady):
            self.idle.add(worker_id)
            return []
        if isinstance(event, (StepLogged, EvalDone)):
            rec = self.runs.get(event.run_id)
            if rec is not None:
                rec.last.update(event.metrics)
                rec.live_step = max(rec.live_step, event.step)
                self._log_points(event.run_id, event.step, event.metrics,
                                 "eval" if isinstance(event, EvalDone) else "train")
            return [event]
        if isinstance(event, QuantumDone):
            return self._on_quantum_done(worker_id, event)
        if isinstance(event, RunFailed):
            return self._on_run_failed(worker_id, event)
        if isinstance(event, WorkerWarning):
            return [self._warning(event.message, event.run_id)]
        return [event]

    def _log_points(self, run_id: str, step: int, metrics, kind: str) -> None:
        now = time.time()
        self._points += [(run_id, step, k, float(v), kind, now) for k, v in metrics.items()]
        if self.sink is not None:
            self.sink.log_metrics(run_id, step, dict(metrics), int(now * 1000))

    def _free_worker(self, worker_id: int) -> None:
        self.busy.pop(worker_id, None)
        self.idle.add(worker_id)

    def _on_quantum_done(self, worker_id: int, done: QuantumDone) -> list[Any]:
        out: list[Any] = [done]
        rec = self.runs[done.run_id]
        self._free_worker(worker_id)
        chunk_end = rec.bounds[done.chunk][1]
        chunk_finished = done.steps_done >= chunk_end
        rec.steps_done = done.steps_done
        rec.checkpoint_dir = done.checkpoint_dir or rec.checkpoint_dir  # '' means no new checkpoint
        rec.adapter_dir = done.adapter_dir or rec.adapter_dir
        if chunk_finished:
            rec.chunks_done = done.chunk + 1
            self._log_points(rec.run_id, done.steps_done, {"chunk": float(rec.chunks_done)}, "train")
        rec.worker_id = None
        self._flush_points()
        self.store.finish_quantum(rec.quantum_id, "done" if chunk_finished else "preempted",
                                  end_step=done.steps_done, train_seconds=done.train_seconds,
                                  switch_seconds=done.switch_seconds, eval_seconds=done.eval_seconds,
                                  tokens=done.tokens)
        self.scheduler.on_quantum_done(rec.run_id, worker_id, chunk_finished)
        reason = done.preempted or rec.pending_preempt
        rec.pending_preempt = None
        # The chunk's report comes before the status it leads to ("chunk 2/2 ..." then "completed").
        out.append(ev.QuantumReport(
            run_id=rec.run_id, worker_id=worker_id, chunk=done.chunk, num_chunks=rec.num_chunks,
            steps_done=rec.steps_done, total_steps=rec.total_steps,
            seconds=done.train_seconds + done.switch_seconds + done.eval_seconds,
            train_seconds=done.train_seconds, switch_seconds=done.switch_seconds,
            eval_seconds=done.eval_seconds, preempted=done.preempted, metrics=dict(rec.last)))
        if reason == "delete":  # also when the preempt came too late and the run reached its end: it was deleted
            self._delete(rec, out)
        elif rec.steps_done >= rec.total_steps:
            self.scheduler.on_run_removed(rec.run_id)
            self._set_status(rec, "completed", out)
        elif reason == "stop":
            self.scheduler.on_run_paused(rec.run_id)
            self._set_status(rec, "stopped", out)
        else:
            self._set_status(rec, "waiting", out)
        self._drop_warm_source(rec)
        return out

    def _drop_warm_source(self, rec: RunRecord) -> None:
        """A warm clone's copy of its source's state is needed until the clone's own first checkpoint is
        recorded (a retry or a resume starts from it until then; every branch above stored the run's fields,
        checkpoint_dir included); after that it is only disk."""
        if rec.warm_from and rec.checkpoint_dir:
            shutil.rmtree(rec.warm_from, ignore_errors=True)
            rec.warm_from = None

    def _delete(self, rec: RunRecord, out: list[Any]) -> None:
        ended = rec.status in TERMINAL
        if not ended:  # completed and failed runs already left the scheduler
            self.scheduler.on_run_removed(rec.run_id)
        self._set_status(rec, "deleted", out)
        if self.sink is not None:
            known = (self.store.get_run(rec.run_id) or {}).get("mlflow_run_id")
            self.sink.mark_deleted(rec.run_id, mlflow_run_id=known, ended=ended)
        if self.pool is not None:
            for worker_id in range(self.pool.num_workers):
                self.pool.send(worker_id, DropRun(rec.run_id))

    def _on_run_failed(self, worker_id: int, failed: RunFailed) -> list[Any]:
        out: list[Any] = [failed]
        rec = self.runs.get(failed.run_id)
        if self.busy.get(worker_id) == failed.run_id:
            self._free_worker(worker_id)
        if rec is None or rec.status in TERMINAL:
            return out
        if rec.quantum_id is not None:
            self.store.finish_quantum(rec.quantum_id, "failed")
        if rec.worker_id is not None:
            self.scheduler.on_quantum_done(rec.run_id, worker_id, False)
        rec.worker_id = None
        self.scheduler.on_run_removed(rec.run_id)
        self._set_status(rec, "failed", out, reason=failed.reason)
        return out

    def _on_dead_workers(self) -> list[Any]:
        out: list[Any] = []
        if self.pool is None:
            return out
        for worker_id in self.pool.dead_workers():
            if worker_id in self._dead_seen:
                continue
            why = self.pool.exit_reason(worker_id)
            run_id = self.busy.pop(worker_id, None)
            self.idle.discard(worker_id)
            self.scheduler.on_worker_lost(worker_id)
            if run_id is not None:
                rec = self.runs[run_id]
                rec.attempts += 1
                rec.worker_id = None
                self.store.finish_quantum(rec.quantum_id, "lost")
                self.store.delete_metrics_after(run_id, rec.steps_done)
                if rec.attempts >= 2:
                    self.scheduler.on_run_removed(run_id)
                    self._set_status(rec, "failed", out, reason=f"its worker died twice ({why})")
                else:
                    self._set_status(rec, "waiting", out, reason=f"worker {worker_id} died ({why}); retrying once")
            if self.stopping:
                self._dead_seen.add(worker_id)
            else:
                self.pool.restart_worker(worker_id)
                out.append(ev.WorkerRestarted(worker_id, why))
        return out

    def _flush_points(self) -> None:
        if self._points:
            self.store.add_metrics_batch(self._points)
            self._points = []

    # ------------------------------------------------------------------ ops

    def request(self, op: str, run_id: str | None, args: dict | None = None, source: str = "api") -> Future:
        """Thread-safe: queue an op for the controller's thread; the Future gets the OpResolved."""
        future: Future = Future()
        with self._wake_lock:
            if self._closed:  # the caller applies it to the stored experiment instead
                future.set_exception(ControllerClosed(f"experiment {self.spec.name}'s controller has closed"))
                return future
            self._requests.put((op, run_id, dict(args or {}), source, future))
            self._wake_writer.send_bytes(b"!")
        return future

    def _serve_requests(self) -> list[Any]:
        out = []
        while True:
            try:
                op, run_id, args, source, future = self._requests.get_nowait()
            except queue.Empty:
                return out
            resolved = self.apply_op(op, run_id, args, source, out)
            future.set_result(resolved)

    def _serve_store_ops(self) -> list[Any]:
        out: list[Any] = []
        for row in self.store.pending_ops():
            self.apply_op(row["op"], row["run_id"], row.get("args") or {}, row["source"], out, op_id=row["id"])
        return out

    def apply_op(self, op: str, run_id: str | None, args: dict, source: str, out: list[Any],
                 op_id: int | None = None) -> ev.OpResolved:
        """The single entry point for interactive-control ops from every front end."""
        from rftui.engine.ops import apply, op_target

        # The run as it resolved (before a clone can give its label a second run), not as typed:
        # `stop 4` is logged and kept as `stop r4 (r=8 lr=1e-4)`.
        shown = (op_target(self, run_id) if op in KNOWN_OPS else None) or run_id
        status, reason, new_run_id = apply(self, op, run_id, args, out)
        if status == "applied":
            self.settle_stored()
        if op not in KNOWN_OPS:  # not an op at all: nothing to record
            resolved = ev.OpResolved(None, source, op, run_id, status, reason, None)
            out.append(resolved)
            return resolved
        if op_id is None:
            op_id = self.store.record_op(source, op, shown, args, status, reason, new_run_id)
        else:
            self.store.resolve_op(op_id, status, reason, new_run_id, run_id=shown)
        resolved = ev.OpResolved(op_id, source, op, shown, status, reason, new_run_id)
        out.append(resolved)
        return resolved
