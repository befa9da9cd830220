"""Warnings by text, with the runs each came from, so that front ends show a repeated warning once.

Every run of a grid gives the same warning (fp16 ignored on a CPU, full fine-tuning, ...), each
saying `run <id>: ...`; the headless view, the TUI and `rftui show` all fold them here by the text that follows.
A resumed experiment's start repeats the warnings its earlier sessions kept; their line says so until this
session gives the same warning too.
"""
from __future__ import annotations

from dataclasses import dataclass

EARLIER = " (earlier session)"  # the mark of a warning that only earlier sessions of the experiment gave


def without_run_prefix(message: str, run_id: str | None) -> str:
    """The warning without its leading `run <id>: ` (front ends name the run themselves)."""
    prefix = f"run {run_id}: "
    return message[len(prefix):] if run_id and message.startswith(prefix) else message


@dataclass(frozen=True)
class Counted:
    text: str              # the warning without its `run <id>: ` prefix
    runs: tuple[str, ...]  # the distinct runs that gave it so far, in order
    first: bool            # never seen before
    new_run: bool          # a run that had not given it yet (always False for a warning without a run)
    revived: bool = False  # this session gives a warning only earlier sessions had given: its line loses the mark


class WarningTally:
    def __init__(self) -> None:
        self.runs: dict[str, list[str]] = {}  # text -> the distinct runs it came from, in order
        self.earlier: set[str] = set()        # the texts only earlier sessions gave so far

    def add(self, message: str, run_id: str | None, earlier: bool = False) -> Counted:
        text = without_run_prefix(message, run_id)
        first = text not in self.runs
        runs = self.runs.setdefault(text, [])
        new_run = bool(run_id) and run_id not in runs
        if new_run:
            runs.append(run_id)
        revived = not earlier and text in self.earlier
        if earlier and first:
            self.earlier.add(text)
        elif not earlier:
            self.earlier.discard(text)
        return Counted(text, tuple(runs), first, new_run, revived)

    def line(self, text: str) -> str:
        """The line of a tallied warning as it stands: every run so far, marked while only earlier sessions gave it."""
        return warning_text(text, self.runs[text]) + (EARLIER if text in self.earlier else "")


def runs_text(runs: tuple[str, ...] | list[str], most: int = 4) -> str:
    """`r1, r2, r3`, or `r1, r2, r3 and 9 more` past `most` runs (a log line stays one line)."""
    if len(runs) <= most:
        return ", ".join(runs)
    return f"{', '.join(runs[:most - 1])} and {len(runs) - most + 1} more"


def warning_text(text: str, runs: tuple[str, ...] | list[str]) -> str:
    """`warning r1: ...`, `warning (r1, r2): ...` or `warning: ...` (no run): the run named once."""
    who = "" if not runs else f" {runs[0]}" if len(runs) == 1 else f" ({runs_text(runs)})"
    return f"warning{who}: {text}"
