"""The engine options a front end is given (workers, device, tracking URI), checked before anything is created."""
from __future__ import annotations

import re
from typing import Any

from rftui.config.problems import Problem

DEVICES = ("auto", "cpu", "cuda")
# The schemes MLflow's tracking-store registry knows (3.x); plugins add theirs as entry points.
TRACKING_SCHEMES = ("sqlite", "file", "http", "https", "databricks", "databricks-uc", "uc",
                    "postgresql", "mysql", "mssql")
TRACKING_URI_HINT = ("use sqlite:///path/to/mlflow.db, file:///path/to/mlruns, http(s)://host:port, databricks, "
                     "or a directory path")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")


def _spell(option: str, value: Any, cli: bool) -> str:
    """How the user writes `option=value` in the front end at hand."""
    return f"--{option.replace('_', '-')} {value}" if cli else f"{option}={value!r}"


def _where(option: str, cli: bool) -> str:
    return f"--{option.replace('_', '-')}" if cli else option


def cuda_visible() -> bool:
    """Whether a CUDA device can be used; without a GPU driver this imports nothing heavy."""
    from rftui.engine.pool import devices_for, no_gpu_driver

    if no_gpu_driver():
        return False
    try:
        devices_for(1, use_cuda=True)
    except RuntimeError:
        return False
    return True


def workers_problem(workers: Any, cli: bool = False) -> Problem | None:
    if isinstance(workers, bool) or not isinstance(workers, int):
        return Problem(_where("workers", cli), f"expected an integer, got {workers!r}", f"e.g. {_spell('workers', 2, cli)}")
    if workers < 1:
        return Problem(_where("workers", cli), f"must be ≥ 1, got {workers}", f"use {_where('workers', cli)} ≥ 1")
    return None


def device_problem(device: Any, cli: bool = False) -> Problem | None:
    """An unknown device, or `cuda` where no CUDA device is visible (checked before anything is created)."""
    if not isinstance(device, str) or device not in DEVICES:
        return Problem(_where("device", cli), f"must be one of {', '.join(DEVICES)}, got {device!r}",
                       f"e.g. {_spell('device', 'auto', cli)}")
    if device == "cuda" and not cuda_visible():
        return Problem(_where("device", cli), "no CUDA device visible",
                       f"use {_spell('device', 'cpu', cli)} or {'auto' if cli else repr('auto')}, "
                       "or check the GPU driver and CUDA_VISIBLE_DEVICES")
    return None


def tracking_uri_problem(uri: Any, cli: bool = False, option: str = "tracking_uri",
                         file: str | None = None) -> Problem | None:
    """A tracking URI MLflow would not understand (unknown scheme, empty): checked before anything is created."""
    where = _where(option, cli)
    if not isinstance(uri, str) or not uri.strip():
        return Problem(where, f"expected an MLflow tracking URI, got {uri!r}", TRACKING_URI_HINT, file)
    match = _SCHEME.match(uri)
    if match is None or len(match.group(1)) == 1:  # no scheme (or a drive letter): a directory path
        return None
    scheme = match.group(1).lower()
    if scheme.split("+", 1)[0] in TRACKING_SCHEMES or scheme in _plugin_schemes():
        return None
    return Problem(where, f"unknown tracking URI scheme {scheme + ':'!r} in {uri!r}", TRACKING_URI_HINT, file)


def _plugin_schemes() -> set[str]:
    from importlib.metadata import entry_points

    try:
        return {entry.name.lower() for entry in entry_points(group="mlflow.tracking_store")}
    except Exception:  # a broken distribution's metadata must not block a run
        return set()


def engine_option_problems(*, workers: Any = 1, device: Any = "auto", tracking_uri: Any = None,
                           cli: bool = False) -> list[Problem]:
    """Every problem with the engine options a front end was given, before anything is created."""
    problems = [workers_problem(workers, cli), device_problem(device, cli)]
    if tracking_uri is not None:
        problems.append(tracking_uri_problem(tracking_uri, cli))
    return [p for p in problems if p is not None]
