"""An http(s) tracking server that answered once and then stopped answering: one outage, from the failed
request or probe that found it gone until what waited meanwhile has been sent.

While the server is down nothing is sent; the points wait (bounded, in :class:`MlflowMirror`) and the server's
``/health`` is asked again with backoff. The sink warns once when an outage starts and notes once when it ends
(or, at close, what was never sent). :class:`Outages` keeps that state for the sink's
:class:`~rftui.tracking.mlflow_mirror.MlflowMirror`; the probe is :func:`check_server_answers`.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Callable

from rftui.tracking.mlflow_connect import TrackingServerUnreachable, check_server_answers

log = logging.getLogger("rftui.tracking.mlflow_sink")  # one logger name for the whole sink

MAX_NOTED_OUTAGES = 5  # a server that keeps flapping: later outages only go to the log, not to on_warning


@dataclasses.dataclass(eq=False)
class Outage:
    number: int            # 1 for the process's first outage, ...
    since: float           # monotonic time it was found down
    next_probe: float      # monotonic time the server is asked again
    down: bool = True      # False once it answers again (then the points that waited are being sent)
    probes: int = 0        # probes that found it still down, for the backoff
    sent: int = 0          # metric points sent since it started (those that waited, then the newer ones)
    dropped: int = 0       # metric points dropped meanwhile (beyond the cap)

    @property
    def noted(self) -> bool:
        return self.number <= MAX_NOTED_OUTAGES

    def probe_failed(self, now: float, first: float, most: float) -> None:
        self.probes += 1
        self.next_probe = now + min(most, first * 2 ** self.probes)

    def back(self) -> None:
        self.down = False

    def down_again(self, now: float, first: float) -> None:
        """It answered a probe, then a request failed and the next probe did not: same outage, ask again soon."""
        self.down = True
        self.probes = 0
        self.next_probe = now + first


class Outages:
    """The current outage of one tracking server, if any. ``check`` and ``probe_again`` may be called from
    any thread (callers waiting on the sink, its watch thread); the rest from the sink's thread. ``warn`` and
    ``hint`` are the mirror's: ``warn(kind, message)``, and the `rftui show` hint for dropped points."""

    def __init__(self, uri: str, cap: int, first: float, most: float, warn: Callable[[str, str], None],
                 hint: Callable[[], str]) -> None:
        self.uri, self.cap, self.first, self.most = uri, cap, first, most
        self._warn, self._hint = warn, hint
        self.current: Outage | None = None
        self._lock = threading.Lock()
        self._count = 0

    @property
    def down(self) -> bool:
        current = self.current
        return current is not None and current.down

    def check(self, timeout: float | None = None) -> bool:
        """True when the server does not answer one quick request, or is known to be down: an outage starts
        then (one warning). Only for an http(s) server that answered before."""
        if self.down:
            return True
        try:
            check_server_answers(self.uri, **({} if timeout is None else {"timeout": timeout}))
        except TrackingServerUnreachable as exc:
            self._went_down(str(exc))
            return True
        return False

    def _went_down(self, why: str) -> None:
        now = time.monotonic()
        with self._lock:
            if self.down:
                return
            if self.current is not None:  # it answered a probe, then failed again before the backlog was sent
                self.current.down_again(now, self.first)
                return
            self._count += 1
            outage = self.current = Outage(self._count, since=now, next_probe=now + self.first)
        self._note(outage, "paused", paused_text(self.uri, why, self.cap, self.first, self.most))

    def probe_due(self, now: float) -> bool:
        current = self.current
        return current is not None and current.down and now >= current.next_probe

    def probe_again(self) -> bool:
        """Ask a server that is down whether it answers again; True when it does."""
        current = self.current
        if current is None or not current.down:
            return False
        try:
            check_server_answers(self.uri)
        except TrackingServerUnreachable:
            current.probe_failed(time.monotonic(), self.first, self.most)
            return False
        current.back()
        return True

    def end(self) -> None:
        """What waited has been sent (the sink's thread): the outage is over, with one note."""
        outage, self.current = self.current, None
        if outage is not None:
            self._note(outage, "resumed", resumed_text(self.uri, outage, time.monotonic(), self._hint()))

    def unsent(self, unsent_points: int, unsent_runs: int, more_dropped: int) -> str | None:
        """The closing warning while the server is down, else None."""
        current = self.current
        if current is None or not current.down:
            return None
        counted = dataclasses.replace(current, dropped=current.dropped + more_dropped)
        return unsent_text(self.uri, counted, time.monotonic(), unsent_points, unsent_runs, self._hint())

    def _note(self, outage: Outage, what: str, message: str) -> None:
        # Each of the first few outages is warned about (and noted when it ends); a flapping server's later
        # ones go to the log only.
        if outage.noted:
            self._warn(f"{what}-{outage.number}", message)
        else:
            log.info("%s", message)


def duration(seconds: float) -> str:
    if seconds < 1:
        return "under 1 s"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def points(n: int) -> str:
    return f"{n} metric point" + ("" if n == 1 else "s")


def paused_text(uri: str, why: str, cap: int, first: float, most: float) -> str:
    return (f"MLflow logging paused: the tracking server at {uri} stopped answering ({why}); training continues. "
            f"Up to {cap} metric points wait in memory (beyond that, some are dropped) and are sent when the "
            f"server answers again; it is asked every {first:g} s, backing off to {most:g} s")


def resumed_text(uri: str, outage: Outage, now: float, hint: str) -> str:
    dropped = "none dropped" if not outage.dropped else (
        f"{points(outage.dropped)} dropped while waiting; they remain in the experiment's state.db{hint}")
    return (f"MLflow logging resumed: the tracking server at {uri} answers again after "
            f"{duration(now - outage.since)}; {points(outage.sent)} sent since it stopped answering ({dropped})")


def unsent_text(uri: str, outage: Outage, now: float, unsent_points: int, unsent_runs: int, hint: str) -> str:
    parts = [points(unsent_points)] if unsent_points or not unsent_runs else []
    if unsent_runs:
        parts.append(f"the status, tags or params of {unsent_runs} run" + ("" if unsent_runs == 1 else "s"))
    dropped = f" ({points(outage.dropped)} more were dropped while waiting)" if outage.dropped else ""
    verb = "was" if parts == [points(1)] else "were"
    return (f"MLflow logging ended while the tracking server at {uri} was not answering (for "
            f"{duration(now - outage.since)}): {' and '.join(parts)} {verb} not sent to MLflow{dropped}. The metrics "
            f"remain in the experiment's state.db{hint}; resuming the experiment while it is unfinished offers "
            "them to MLflow again")
