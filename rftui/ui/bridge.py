"""The one thread that connects the engine to Textual: open, poll and close a source; post batches.

The app mixes in `BridgeMixin` and calls `start_bridge()` on mount. The thread owns the source
(for a hosted controller: the only thread that ever calls `step()`). It merges batches while the
app's message queue is long (backpressure without slowing the engine: the controller keeps
stepping), and otherwise posts at most one `EngineBatch` per POST_SECONDS: the screen redraws at
most at 4 Hz anyway, and every message costs the UI thread, whose CPU a CPU box takes from
training. If the app goes away without a clean stop (an exception, a cancelled worker), it still
asks the source to stop, so a hosted experiment checkpoints before the process exits.
"""
from __future__ import annotations

import time
from typing import Any

from textual import work
from textual.worker import get_current_worker

from rftui.ui.messages import EngineBatch, SourceClosed
from rftui.ui.model import Batch

MAX_QUEUED_MESSAGES = 20
POST_SECONDS = 0.25


class BridgeMixin:
    """For an App with a `source` attribute (see rftui.ui.sources.Source)."""

    source: Any

    def start_bridge(self) -> None:
        self.run_bridge()

    @work(thread=True, exclusive=True, exit_on_error=False, group="engine", name="engine-bridge")
    def run_bridge(self) -> None:
        worker = get_current_worker()
        source = self.source
        pending: Batch | None = None
        error: str | None = None
        posted_at = float("-inf")
        try:
            batch = source.open()
            while True:
                if not batch.empty():
                    pending = batch if pending is None else pending.merge(batch)
                now = time.monotonic()
                if (pending is not None and now - posted_at >= POST_SECONDS
                        and self.message_queue_size < MAX_QUEUED_MESSAGES):
                    self.post_message(EngineBatch(pending))
                    pending, posted_at = None, now
                if source.done:
                    break
                if worker.is_cancelled:
                    source.request_stop()
                batch = source.poll()
        except Exception as exc:  # shown by the app; the source is still closed below
            error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            try:
                source.close()
            finally:
                if pending is not None:
                    self.post_message(EngineBatch(pending))
                self.post_message(SourceClosed(error))
