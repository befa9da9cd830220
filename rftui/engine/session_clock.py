"""The session's training clock, kept in state.db so that `rftui watch` shows the elapsed time the hosting
front end shows, whenever it was started.

`session_started` is the wall time the owner's session started, moved later by any time the experiment sat
finished (a clone reopens it: that idle time is not training time); `session_stopped` is when training
stopped (finished, or the owner closed), None while it trains. Older state.db files have neither."""
from __future__ import annotations

from typing import Any, Mapping

STARTED, STOPPED = "session_started", "session_stopped"


def start_session(store: Any, now: float) -> None:
    store.set_meta(STOPPED, None)
    store.set_meta(STARTED, now)


def stop_session(store: Any, now: float) -> None:
    if store.get_meta(STARTED) is not None and store.get_meta(STOPPED) is None:
        store.set_meta(STOPPED, now)


def reopen_session(store: Any, now: float) -> None:
    """A clone joined a finished experiment: the clock goes on from where it stopped."""
    stopped, started = store.get_meta(STOPPED), store.get_meta(STARTED)
    if stopped is not None and started is not None:
        store.set_meta(STARTED, started + max(0.0, now - stopped))
        store.set_meta(STOPPED, None)


def session_seconds(meta: Mapping[str, Any], now: float, owner_alive: bool,
                    last_activity: float | None) -> float | None:
    """The session's elapsed training time: up to now while its owner trains, up to its stop, or up to the last
    thing a killed owner stored (`last_activity`); None when no session was ever recorded."""
    started = meta.get(STARTED)
    if started is None:
        return None
    stopped = meta.get(STOPPED)
    if stopped is not None:
        end = stopped
    elif owner_alive:
        end = now
    else:
        end = last_activity if last_activity is not None else started
    return max(0.0, end - started)
