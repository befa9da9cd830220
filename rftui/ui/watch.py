"""WatchSource: the screen for an experiment that another process trains, read from its state.db.

Every `interval` seconds it reads the points added since the last seq, the runs, the quanta, the
resolved ops and the engine's warnings (the controller keeps them in state.db), and turns the
differences into the same events a hosted controller emits.
Ops go through `rftui.control.submit` (in a thread), exactly like `rftui ctl`; their outcome
comes back through the ops table, so every op (ours, `rftui ctl`'s, the trainer's own keys)
shows once. Quitting a watcher never touches the experiment.

When the owning process is gone (kill -9, a crash) while state.db still says `running`, the watcher
shows what `rftui show` does (rftui.report.as_left): its running runs `interrupted` at their
checkpoints. Nothing trains them until `rftui resume`, so it says so and stops polling.

The status bar's elapsed time is the owner's session's, from the clock the controller keeps in state.db
(rftui.engine.session_clock), not the time since the watcher started: `session_seconds()` gives it.
"""
from __future__ import annotations

import bisect
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from rftui.control import controller_alive, submit as control_submit
from rftui.engine import events as ev
from rftui.engine.session_clock import STARTED, STOPPED, session_seconds
from rftui.errors import OpRefused, RftuiError
from rftui.report import as_left, resume_hint, shown_metrics
from rftui.ui.model import Batch, RunRow, Series

POLL_SECONDS = 0.5


class WatchSource:
    hosted = False

    def __init__(self, exp: Any, spec: Any, store: Any, interval: float = POLL_SECONDS,
                 submit: Callable[..., dict] | None = None, num_workers: int | None = None,
                 wall_clock: Callable[[], float] | None = None):
        self.exp, self.spec, self.store = exp, spec, store
        self.name = spec.name
        self.interval = interval
        self._submit = submit or control_submit
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rftui-watch-op")
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._seq = 0
        self._op_seen = 0
        self._warning_seen = 0  # the id of the last stored warning emitted
        self._quanta_seen: dict[int, str] = {}
        self._status: dict[str, str] = {}
        self._last: dict[str, dict[str, float]] = {}
        self._history: dict[str, dict[str, Series]] = {}  # run -> metric -> values by step (chunk reports)
        self._wall: dict[str, float] = {}  # run -> wall time of its latest point
        self._wall_clock = wall_clock or time.time
        self._session: tuple[dict[str, Any], bool, float | None] = ({}, False, None)  # meta, owner alive, last activity
        self._closed = False
        quanta = store.list_quanta()
        self.num_workers = num_workers or max([1] + [int(q["worker_id"]) + 1 for q in quanta
                                                     if q.get("worker_id") is not None])

    # ------------------------------------------------------------------ the feed

    def open(self) -> Batch:
        ops = self.store.list_ops()
        self._op_seen = max((o["id"] for o in ops), default=0)
        batch = self._read(first=True)
        if not self.done:  # an interrupted one has said so
            batch.events.insert(0, ev.Progress(f"watching experiment {self.name} ({self.exp.root}); "
                                               "quitting leaves it running"))
        return batch

    def poll(self) -> Batch:
        self._wake.wait(self.interval)
        self._wake.clear()
        if self._stop.is_set():
            return Batch()
        return self._read(first=False)

    def _read(self, first: bool) -> Batch:
        store = self.store
        events: list[Any] = []
        fresh = store.all_metrics(self._seq)
        rows, cut, status, abandoned, alive = self._runs()
        points = []
        for p in fresh:
            self._seq = max(self._seq, p["seq"])
            if p.get("wall_time") is not None:
                self._wall[p["run_id"]] = max(self._wall.get(p["run_id"], 0.0), p["wall_time"])
            if p["step"] > cut.get(p["run_id"], p["step"]):
                continue  # past an interrupted run's checkpoint: `rftui resume` redoes it
            points.append((p["run_id"], p["step"], p["name"], p["value"], p["kind"]))
            if p["value"] is not None:
                self._last.setdefault(p["run_id"], {})[p["name"]] = p["value"]
                per_run = self._history.setdefault(p["run_id"], {})
                per_run.setdefault(p["name"], Series()).add(int(p["step"]), float(p["value"]))
        by_id = {r.run_id: r for r in rows}
        for row in rows:
            if row.run_id not in cut:
                row.last = dict(self._last.get(row.run_id, {}))
            before = self._status.get(row.run_id)
            if before is None and not first:
                events.append(ev.RunAdded(row.run_id, row.label, row.parent, row.warm_start))
            if before is not None and before != row.status:
                events.append(ev.RunStatusChanged(row.run_id, row.status, row.reason))
            self._status[row.run_id] = row.status
        workers: dict[int, str | None] = {w: None for w in range(self.num_workers)}
        quanta = store.list_quanta()
        ends = [q["ended_at"] for q in quanta if q.get("ended_at")]
        self._session = ({key: store.get_meta(key) for key in (STARTED, STOPPED)}, alive,
                         max([*self._wall.values(), *ends], default=None))  # a killed owner's clock stops there
        for q in quanta:
            worker = q.get("worker_id")
            if q["status"] == "running" and abandoned:
                continue  # lost with its process: no worker trains it
            if q["status"] == "running" and worker is not None:
                workers[int(worker)] = q["run_id"]
                if worker + 1 > self.num_workers:
                    self.num_workers = worker + 1
            seen = self._quanta_seen.get(q["id"])
            if seen is None:
                events.append(ev.QuantumDispatched(worker if worker is not None else -1, q["run_id"], q["chunk"],
                                                   q["start_step"], q["end_step"]))
            if q["status"] != "running" and seen != "closed":
                events.append(self._report(q, by_id.get(q["run_id"])))
                self._quanta_seen[q["id"]] = "closed"
            else:
                self._quanta_seen.setdefault(q["id"], "open")
        for op in store.list_ops():
            if op["id"] <= self._op_seen or op["status"] == "pending":
                continue
            self._op_seen = op["id"]
            events.append(ev.OpResolved(op["id"], op["source"], op["op"], op["run_id"], op["status"],
                                        op.get("reason"), op.get("new_run_id")))
        for warning in store.warnings(self._warning_seen):  # on open, all of them: the model shows each once
            self._warning_seen = warning["id"]
            events.append(ev.EngineWarning(warning["message"], warning["run_id"]))
        if abandoned:
            events.append(ev.EngineWarning(self._abandoned_text()))
            self._stop.set()
        return Batch(events=events, points=points, runs=rows, workers=workers, status=status)

    def _runs(self) -> tuple[list[RunRow], dict[str, int], str, bool, bool]:
        """The runs as `rftui show` presents them, the checkpoint step of each run a dead owner left
        `running` (shown `interrupted`), the experiment's status, whether its owner left it so, and
        whether an owner runs."""
        store = self.store
        alive = controller_alive(store)
        rows, cut = [], {}
        for stored in store.list_runs():
            row = RunRow.from_store(stored)
            row.status = as_left(stored["status"], alive)
            if row.status != stored["status"]:
                cut[row.run_id] = row.steps_done
                row.last = {k: v for k, v in shown_metrics(store, stored, row.status).items() if v is not None}
            rows.append(row)
        stored_status = store.get_meta("status") or "created"
        status = as_left(stored_status, alive)
        return rows, cut, status, bool(cut) or status != stored_status, alive

    def _abandoned_text(self) -> str:
        pid = self.store.get_meta("controller_pid")
        return (f"experiment {self.name} is interrupted: its process{f' (pid {pid})' if pid else ''} is gone "
                f"(killed or crashed), so its running runs stopped at their last checkpoint. "
                f"{resume_hint(self.name, self.exp.workdir)}; this screen no longer updates: watch again once it trains")

    def _report(self, q: dict, row: RunRow | None) -> ev.QuantumReport:
        seconds = sum(q.get(k) or 0.0 for k in ("train_seconds", "switch_seconds", "eval_seconds"))
        end = q.get("end_step") if q.get("end_step") is not None else q["start_step"]
        if q["status"] == "lost":  # end_step is where it was heading; the run restarts from the step it began at
            end = q["start_step"]
        preempted = None if q["status"] == "done" else q["status"]
        return ev.QuantumReport(
            run_id=q["run_id"], worker_id=q.get("worker_id") if q.get("worker_id") is not None else -1,
            chunk=q["chunk"], num_chunks=row.num_chunks if row else 0, steps_done=end,
            total_steps=row.total_steps if row else 0, seconds=seconds,
            train_seconds=q.get("train_seconds") or 0.0, switch_seconds=q.get("switch_seconds") or 0.0,
            eval_seconds=q.get("eval_seconds") or 0.0, preempted=preempted,
            metrics=self._metrics_at(q["run_id"], end))

    def _metrics_at(self, run_id: str, step: int) -> dict[str, float]:
        """Each metric's last value at or before `step`: what the chunk ending there reported (as the
        controller's report does), not the latest value, which belongs to a later chunk."""
        out = {}
        for name, series in self._history.get(run_id, {}).items():
            i = bisect.bisect_right(series.steps, step)
            if i and name != "chunk":  # `chunk` is the controller's progress mark, not a metric
                out[name] = series.values[i - 1]
        return out

    # ------------------------------------------------------------------ lifecycle

    def request_stop(self) -> None:
        self._stop.set()
        self._wake.set()

    @property
    def done(self) -> bool:
        return self._stop.is_set()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._pool.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ ops

    def ops(self, op: str, run_id: str | None, args: dict | None = None) -> Future:
        """Submit like `rftui ctl`; the outcome shows up in the ops table (None result) unless
        the submission itself fails (then the Future holds a refused OpResolved)."""
        outer: Future = Future()
        if self.done:  # no longer polling (interrupted, or quitting): the outcome would never show
            outer.set_result(ev.OpResolved(None, "tui", op, run_id, "refused",
                                           f"this watcher has stopped following {self.name}; use "
                                           f"`{self._ctl_command(op, run_id)}` "
                                           f"or {resume_hint(self.name, self.exp.workdir)}"))
            return outer

        def send() -> None:
            try:
                self._submit(self.exp, self.spec, self.store, op, run_id, dict(args or {}), source="tui")
                outer.set_result(None)
            except OpRefused:
                outer.set_result(None)  # recorded in the ops table with its reason
            except RftuiError as exc:
                outer.set_result(ev.OpResolved(None, "tui", op, run_id, "refused", str(exc)))
            except Exception as exc:  # noqa: BLE001 - shown in the event log, never raised into the UI
                outer.set_result(ev.OpResolved(None, "tui", op, run_id, "refused", f"{type(exc).__name__}: {exc}"))
            finally:
                self._wake.set()

        self._pool.submit(send)
        return outer

    def _ctl_command(self, op: str, run_id: str | None) -> str:
        """The `rftui ctl` line doing what this watcher no longer can, with --workdir so it works from anywhere."""
        edits = ["--set", "KNOB=VALUE"] if op == "clone" else []
        return self.exp.command("ctl", op, run_id or "RUN", *edits)

    def session_seconds(self) -> float | None:
        """How long the owner's session has trained; stops when it finishes (None: a state.db without the clock)."""
        meta, alive, last_activity = self._session
        return session_seconds(meta, self._wall_clock(), alive, last_activity)

    def worker_log(self, worker_id: int) -> Path | None:
        return Path(self.exp.logs) / f"worker-{worker_id}.log"
