"""Pacing of the screen's periodic redraws: the UI's own CPU stays under a share of one core.

On a CPU box the UI shares cores with the workers' torch threads, and a thread of an OpenMP
team that loses its core stalls the whole team: training slows by about the UI's CPU share.
So periodic redraws (new points, table rows, the overlay) are spaced by an interval that grows
while the UI thread used more than `budget` of a core over the last `window` seconds and
shrinks back toward `1 / max_hz` when it used less than half of it. A key never waits for the
pacer: its redraw is immediate. With a GPU and spare cores the budget is never reached and the
screen redraws at `max_hz`.
"""
from __future__ import annotations

import os
import time
from collections import deque
from typing import Callable

from rftui.errors import RftuiError

BUDGET_ENV = "RFTUI_UI_CPU_BUDGET"
DEFAULT_BUDGET = 0.02   # share of one core for the UI thread (rendering, table, charts)
SLOWEST_SECONDS = 4.0   # periodic redraws never wait longer than this
GROWTH = 1.5


def budget_from_env() -> float | None:
    """`RFTUI_UI_CPU_BUDGET`: a share of one core (0.02 by default), or `off` to always redraw at 4 Hz."""
    text = os.environ.get(BUDGET_ENV, "").strip().lower()
    if not text:
        return DEFAULT_BUDGET
    if text in ("off", "none"):
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 1:
        raise RftuiError(f"{BUDGET_ENV}={text!r}: expected a share of one core between 0 and 1 "
                         f"(default {DEFAULT_BUDGET}) or 'off'")
    return value


class RedrawPacer:
    def __init__(self, max_hz: float = 4.0, budget: float | None = DEFAULT_BUDGET, window: float = 4.0,
                 slowest: float = SLOWEST_SECONDS, cpu_clock: Callable[[], float] = time.thread_time,
                 wall_clock: Callable[[], float] = time.monotonic) -> None:
        self.fastest = 1.0 / max_hz
        self.slowest = max(slowest, self.fastest)
        self.budget = budget
        self.window = window
        self.interval = self.fastest
        self._cpu, self._wall = cpu_clock, wall_clock
        self._samples: deque[tuple[float, float]] = deque()
        self._last_draw = float("-inf")

    def share(self) -> float | None:
        """CPU seconds per wall second of the calling thread over the window (None: too few samples)."""
        if len(self._samples) < 2:
            return None
        (wall0, cpu0), (wall1, cpu1) = self._samples[0], self._samples[-1]
        return (cpu1 - cpu0) / (wall1 - wall0) if wall1 > wall0 else None

    def due(self) -> bool:
        """Called on every timer tick (always from the UI thread): is a periodic redraw due now?"""
        now = self._wall()
        self._samples.append((now, self._cpu()))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.window:
            self._samples.popleft()
        if now - self._last_draw < self.interval:
            return False
        share = self.share()
        if self.budget is not None and share is not None:
            if share > self.budget and self.interval < self.slowest:
                self.interval = min(self.slowest, self.interval * GROWTH)
                if now - self._last_draw < self.interval:
                    return False
            elif share < self.budget / 2:
                self.interval = max(self.fastest, self.interval / GROWTH)
        self._last_draw = now
        return True
