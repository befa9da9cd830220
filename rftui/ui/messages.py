"""Messages the bridge thread and op callbacks post to the app: small dataclasses, never collapsed.

Metric batches must never use `can_replace`: a replaced batch would drop chart points.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.message import Message

from rftui.ui.model import Batch


@dataclass
class EngineBatch(Message):
    """Everything the source produced since the last batch the app took."""

    batch: Batch


@dataclass
class OpAnswered(Message):
    """An op the user asked for came back: `resolved` is an OpResolved, or None when the
    source's feed reports the outcome itself; `error` is set when asking failed outright."""

    op: str
    run_id: str | None
    resolved: Any = None
    error: str | None = None


@dataclass
class SourceClosed(Message):
    """The bridge closed its source (after a stop, or after an error: then `error` is set)."""

    error: str | None = None
