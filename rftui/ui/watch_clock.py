"""The elapsed time `rftui watch` shows: how long the experiment's current session has trained, from state.db.

The hosting UI counts from its own start and stops while the experiment sits finished (a clone that
reopens it starts the clock again, without the idle time). A watcher starts later, so it counts from
what state.db keeps: the quanta that the current owner (the process in `controller_pid`, started at
`controller_started`) dispatched, joined where one follows another within GAP_SECONDS; a longer
gap is time the experiment sat finished. Quanta from before the owner started are an earlier session's.
"""
from __future__ import annotations

import math
import os
import time
from typing import Any, Callable, Iterable

GAP_SECONDS = 30.0  # longer than a dispatch or a crashed worker's restart; a finished experiment sits idle longer
SLACK_SECONDS = 2.0  # /proc/stat's btime is whole seconds and may move a little


def busy_seconds(spans: Iterable[tuple[float, float]], gap: float = GAP_SECONDS) -> float:
    """The time that the (start, end) spans cover, a gap of at most `gap` between two counted too."""
    total, start, end = 0.0, None, None
    for s, e in sorted(spans):
        if end is not None and s - end <= gap:
            end = max(end, e)
            continue
        if start is not None:
            total += end - start
        start, end = s, e
    return total + (end - start if start is not None else 0.0)


_boot_time: float | None = None


def process_started_at(ticks: Any) -> float | None:
    """The wall time at which a process started, from its start in clock ticks since boot (what the
    controller stores as `controller_started`); None where it is unknown (no /proc)."""
    global _boot_time
    try:
        if _boot_time is None:
            with open("/proc/stat", encoding="ascii") as stat:
                _boot_time = float(next(line.split()[1] for line in stat if line.startswith("btime ")))
        return _boot_time + int(ticks) / os.sysconf("SC_CLK_TCK")
    except (OSError, StopIteration, ValueError, TypeError, IndexError):
        return None


class SessionClock:
    """Updated by the watcher's poll (`update`), read by the status bar (`seconds`, any thread)."""

    def __init__(self, wall_clock: Callable[[], float] = time.time) -> None:
        self.wall_clock = wall_clock
        self._owner: tuple[Any, Any] | None = None
        self._since: float | None = None  # quanta started before this are an earlier session's
        self._spans: tuple[list[tuple[float, float]], float | None] | None = None  # replaced whole, never changed

    def update(self, pid: Any, ticks: Any, quanta: list[dict], last_wall: dict[str, float], alive: bool,
               status: str) -> None:
        """`quanta` as the store lists them, `last_wall` each run's latest metric wall time (where a quantum its
        dead owner left running stopped), `alive` whether the owner runs, `status` the experiment's."""
        if pid and (pid, ticks) != self._owner:  # a new owner: a new session
            started = process_started_at(ticks)
            self._owner = (pid, ticks)
            self._since = -math.inf if started is None else started - SLACK_SECONDS
        if self._since is None:  # no owner seen: nothing says which quanta are this session's
            return
        spans: list[tuple[float, float]] = []
        open_from: float | None = None
        for q in quanta:
            start = q["started_at"]
            if start < self._since:
                continue
            if q["status"] != "running":
                spans.append((start, max(start, q.get("ended_at") or start)))
            elif alive:
                open_from = start if open_from is None else min(open_from, start)
            else:
                spans.append((start, max(start, last_wall.get(q["run_id"], start))))
        if open_from is None and alive and status != "finished" and spans:
            last_end = max(end for _, end in spans)
            if self.wall_clock() - last_end <= GAP_SECONDS:  # between two quanta, or a worker restarting
                open_from = last_end
        self._spans = (spans, open_from)

    def seconds(self) -> float | None:
        """The session's training time so far; None when no owner was ever seen (nothing to count from)."""
        shown = self._spans
        if shown is None:
            return None
        spans, open_from = shown
        if open_from is not None:
            spans = spans + [(open_from, max(open_from, self.wall_clock()))]
        return busy_seconds(spans)
