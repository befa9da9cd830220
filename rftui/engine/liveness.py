"""Is the process that recorded itself as an experiment's owner still that process?

A pid alone is not enough: after a kill -9 (or a reboot) the number can be handed to an unrelated
process, which would make a dead experiment look alive and refuse `rftui resume`. The kernel's
start time of the process (Linux /proc) tells a reused pid apart."""
from __future__ import annotations

import os


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state first), or None without /proc."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            text = stat.read()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after its last ')'.
    return text[text.rfind(")") + 2:].split()


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot, or None where /proc is not available."""
    fields = _stat(pid)
    return fields[19] if fields and len(fields) > 19 else None


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
    fields = _stat(pid)
    if fields is None:  # no /proc: the pid is all there is to go by
        return True
    if fields[:1] in (["Z"], ["X"]):  # killed, not yet reaped by its parent: it serves nothing
        return False
    return not started or len(fields) <= 19 or fields[19] == started
