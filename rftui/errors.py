"""User-facing errors: each one says where the problem is and what to do. The CLI prints them without a traceback and exits 2."""
from __future__ import annotations


class RftuiError(Exception):
    """Base of every error that is the user's to fix (bad config, missing data, unknown model...)."""

    exit_code = 2


class DataError(RftuiError):
    """A data source cannot be read, or a row does not fit the formatter."""


class ModelLoadError(RftuiError):
    """A model or tokenizer cannot be found or loaded."""


class ExperimentError(RftuiError):
    """An experiment directory is missing, already exists, or is damaged."""


class OpRefused(RftuiError):
    """An interactive-control op was refused (illegal transition or bad edit). `reason` is the refusal's own
    words, without the "{op} {run}: refused: " the message starts with (`ctl --json` prints it alone)."""

    def __init__(self, message: str, reason: str | None = None, run_id: str | None = None):
        super().__init__(message)
        self.reason = message if reason is None else reason
        self.run_id = run_id  # the run id it resolved to; None when refused before it named one
