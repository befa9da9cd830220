"""MLflow-legal names and values: key cleaning, param flattening, tag values, limits, error classes.

Pure helpers for the sink (rftui.tracking.mlflow_sink); nothing here imports mlflow.
"""
from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rftui.tracking.redact import redact

# MLflow's documented limits (mlflow.utils.validation in 3.x).
MAX_PARAM_VAL_LENGTH = 6000
MAX_TAG_VAL_LENGTH = 8000
MAX_KEY_LENGTH = 250
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_TAGS_PER_BATCH = 100

BAD_KEY_CHARS = re.compile(r"[^A-Za-z0-9_\-. :/]")
PERMANENT_ERROR_CODES = frozenset(
    {"INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST", "BAD_REQUEST", "INVALID_STATE",
     "PERMISSION_DENIED", "RESOURCE_ALREADY_EXISTS"}
)
TERMINAL_STATUSES = frozenset({"FINISHED", "FAILED", "KILLED"})
# A tag naming one rftui run for good (experiment + run + creation time): a start_run without an MLflow run id
# re-attaches to the run that carries the same value, so a restart never makes a second MLflow run.
IDENTITY_TAG = "rftui.identity"
STATUS_ALIASES = {
    "RUNNING": "RUNNING", "SCHEDULED": "SCHEDULED", "FINISHED": "FINISHED",
    "FAILED": "FAILED", "KILLED": "KILLED",
    # rftui run states
    "PENDING": "SCHEDULED", "WAITING": "RUNNING", "COMPLETED": "FINISHED",
    "STOPPED": "KILLED", "DELETED": "KILLED",
}


def default_tracking_uri(workdir: Path | str) -> str:
    """``sqlite:///<absolute workdir>/mlflow.db`` (four slashes before an absolute POSIX path)."""
    return "sqlite:///" + Path(workdir).expanduser().resolve().as_posix() + "/mlflow.db"


def mlflow_key(name: Any) -> str:
    """A metric/param/tag name MLflow accepts: disallowed characters become "_", cut to 250."""
    key = BAD_KEY_CHARS.sub("_", str(name)).strip() or "_"
    return key[:MAX_KEY_LENGTH]


def cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: limit - 3] + "..."


def param_str(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else list(value)
        return json.dumps(items, separators=(",", ":"), default=str)
    if callable(value) and hasattr(value, "__qualname__"):
        return f"{getattr(value, '__module__', '?')}:{value.__qualname__}"
    return str(value)


def flatten_params(knobs_or_nested: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Flatten a nested mapping into MLflow params: ``{"lora": {"r": 8}} -> {"lora.r": "8"}``.

    Lists/tuples become compact JSON (``[8,16]``), sets sorted JSON, an empty mapping ``{}``,
    dataclass instances are flattened like mappings, callables become ``module:qualname``,
    everything else ``str(value)``. Keys are made MLflow-legal; values are cut to MLflow's
    param limit (6000 characters). Secrets are *not* removed here: call :func:`redact` first.
    """
    out: dict[str, str] = {}
    _flatten_into(out, knobs_or_nested, prefix)
    return out


def _flatten_into(out: dict[str, str], value: Any, prefix: str) -> None:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        if not value and prefix:
            out[mlflow_key(prefix)] = "{}"
        for k, v in value.items():
            _flatten_into(out, v, f"{prefix}.{k}" if prefix else str(k))
        return
    out[mlflow_key(prefix or "value")] = cut(param_str(value), MAX_PARAM_VAL_LENGTH)


def as_mapping(obj: Any) -> dict[str, Any]:
    if obj is None:
        return {}
    if isinstance(obj, Mapping):
        return dict(obj)
    if hasattr(obj, "to_dict"):
        return dict(obj.to_dict())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    return dict(obj)


def tag_dict(tags: Mapping[str, Any] | None) -> dict[str, str]:
    if not tags:
        return {}
    safe = redact(dict(tags))
    return {mlflow_key(k): cut(param_str(v), MAX_TAG_VAL_LENGTH) for k, v in safe.items()}


def short_error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return cut(f"{type(exc).__name__}: {text}" if text else type(exc).__name__, 200)


def error_code(exc: BaseException) -> str | None:
    code = getattr(exc, "error_code", None)
    return code if isinstance(code, str) else None


def is_permanent(exc: BaseException) -> bool:
    """True when retrying the same request cannot succeed (bad value, run gone or deleted)."""
    return error_code(exc) in PERMANENT_ERROR_CODES


def sqlite_path(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///"):].split("?", 1)[0]
    if not path or path == ":memory:":
        return None
    return Path(path)
