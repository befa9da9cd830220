"""Where the screen's data comes from: the `Source` interface and the hosted-controller source.

The app never touches a controller or a store directly. A source is opened, polled and closed
by the bridge thread (rftui.ui.bridge), which posts each `Batch` to the app; key handlers call
`ops()`, which returns at once with a Future. Two real sources exist: `HostedSource` (this
process drives the controller) and `WatchSource` (rftui.ui.watch: another process does, we
read its state.db). Tests use sources that replay recorded batches.
"""
from __future__ import annotations

import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Protocol

from rftui.engine import events as ev
from rftui.engine.messages import EvalDone, StepLogged
from rftui.report import counted
from rftui.ui.model import Batch, RunRow

STEP_TIMEOUT = 0.25  # as headless: ops wake the controller at once, stop requests wait this long at most


class Source(Protocol):
    name: str
    hosted: bool          # True: quitting stops the experiment (it lives in this process)
    spec: Any             # ExperimentSpec
    num_workers: int

    def open(self) -> Batch:
        """First batch (history included). Called once, in the bridge thread."""

    def poll(self) -> Batch:
        """Wait briefly for news; called in a loop by the bridge thread."""

    def request_stop(self) -> None:
        """Thread-safe: begin winding down (hosted: checkpoint at the next optimizer step)."""

    @property
    def done(self) -> bool:
        """True once wound down; the bridge then calls close()."""

    def close(self) -> None:
        """Release everything. Called once, in the bridge thread, even after an error."""

    def ops(self, op: str, run_id: str | None, args: dict | None = None) -> "Future[ev.OpResolved | None]":
        """Thread-safe, non-blocking: ask for an IC op. A None result means the feed reports it."""

    def worker_log(self, worker_id: int) -> Path | None:
        """The log file of a worker (for the details screen), if known."""


def split_points(events: list[Any]) -> tuple[list[Any], list[tuple]]:
    """Worker metric events become chart points; everything else stays an event."""
    rest, points = [], []
    for event in events:
        if isinstance(event, (StepLogged, EvalDone)):
            kind = "eval" if isinstance(event, EvalDone) else "train"
            points += [(event.run_id, event.step, k, v, kind) for k, v in event.metrics.items()]
        else:
            rest.append(event)
    return rest, points


def start_resource_tracker() -> None:
    """Start multiprocessing's resource tracker now, from the real terminal.

    Workers start later, in the bridge thread, while Textual has replaced sys.stderr with an
    object whose fileno() is -1; the tracker's launcher would pass that fd on and fail with
    "bad value(s) in fds_to_keep". Once running, it is reused for every later process.
    """
    try:
        from multiprocessing import resource_tracker

        resource_tracker.ensure_running()
    except Exception:  # no tracker on this platform: nothing to prepare
        pass


class HostedSource:
    """Drives a Controller in the bridge thread: start(), then step() until stopped."""

    hosted = True

    def __init__(self, controller: Any, first_events: list[Any] | None = None):
        self.controller = controller
        self.spec = controller.spec
        self.name = controller.spec.name
        self.resume_command = controller.exp.resume_command  # the quit dialog shows it
        self.num_workers = getattr(controller.pool, "num_workers", 1) if controller.pool is not None else 1
        self._first = list(first_events or [])
        self._stop = threading.Event()
        self._shutdown_begun = False
        self._closed = False
        self.opened = False
        self.closed_event = threading.Event()  # set once close() has run (the CLI waits on it)
        start_resource_tracker()

    def _snapshot(self, events: list[Any], points: list[tuple] | None = None) -> Batch:
        rest, live = split_points(events)
        ctl = self.controller
        workers: dict[int, str | None] = {w: None for w in range(self.num_workers)}
        workers.update(ctl.busy)
        return Batch(events=rest, points=(points or []) + live,
                     runs=[RunRow.from_record(rec) for rec in list(ctl.runs.values())],
                     workers=workers, status="stopping" if ctl.stopping else None)

    def open(self) -> Batch:
        ctl = self.controller
        self.opened = True
        history = [(p["run_id"], p["step"], p["name"], p["value"], p["kind"]) for p in ctl.store.all_metrics(0)]
        # The first log line, as headless and run_fit begin: what trains. Workers take seconds to load
        # the model, and the log stayed empty meanwhile.
        start = ev.Progress(f"experiment {self.name}: {counted(len(ctl.runs), 'run')}, "
                            f"{counted(ctl.spec.num_chunks, 'chunk')}; starting {counted(self.num_workers, 'worker')}")
        events = [start] + self._first + ctl.start()
        batch = self._snapshot(events, history)
        batch.status = "running"
        return batch

    def poll(self) -> Batch:
        ctl = self.controller
        if self._stop.is_set() and not self._shutdown_begun:
            self._shutdown_begun = True
            ctl.begin_shutdown()
        events = ctl.step(STEP_TIMEOUT)
        if not events and not self._shutdown_begun:
            return Batch()
        return self._snapshot(events)

    def request_stop(self) -> None:
        self._stop.set()

    @property
    def done(self) -> bool:
        return not self.opened or (self._shutdown_begun and self.controller.finished)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def close(self) -> None:
        if self.opened and not self._closed:
            self._closed = True
            try:
                self.controller.close()  # its warnings are kept: the CLI's leaderboard after the screen lists them
            finally:
                self.closed_event.set()

    @property
    def closed(self) -> bool:
        return self._closed

    def ops(self, op: str, run_id: str | None, args: dict | None = None) -> Future:
        return self.controller.request(op, run_id, args or {}, source="tui")

    def worker_log(self, worker_id: int) -> Path | None:
        pool = self.controller.pool
        if pool is not None and hasattr(pool, "log_path"):
            return Path(pool.log_path(worker_id))
        return Path(self.controller.exp.logs) / f"worker-{worker_id}.log"
