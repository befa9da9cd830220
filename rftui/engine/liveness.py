"""Is the process that recorded itself as an experiment's owner still that process?

A pid alone is not enough: after a kill -9 (or a reboot) the number can be handed to an unrelated
process, which would make a dead experiment look alive and refuse `rftui resume`. The kernel's
start time of the process (Linux /proc) tells a reused pid apart."""
from __future__ import annotations

import os


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot, or None where /proc is not available."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            text = stat.read()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after its last ')'.
    fields = text[text.rfind(")") + 2:].split()
    return fields[19] if len(fields) > 19 else None


def is_alive(pid: int, started: str | None) -> bool:
    """True when `pid` runs and, where its start time was recorded, is the same process."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    except OSError:
        return False
    if _is_zombie(pid):  # killed, not yet reaped by its parent: it serves nothing
        return False
    if started:
        now = start_time(pid)
        return now is None or now == started
    return True


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            text = stat.read()
    except OSError:
        return False
    return text[text.rfind(")") + 2:][:1] in ("Z", "X")
