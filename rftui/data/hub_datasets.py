"""Hugging Face Hub datasets for `hub:` sources (`rftui.data.sources`): where the `datasets` cache keeps
them, their row count from that cache (for `rftui plan`, without loading them), and loading one, failing at
once with what to do when it is not cached and the Hub cannot be reached. `datasets` is imported only to load.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rftui.errors import DataError

_TRUTHY = {"1", "true", "yes", "on"}


def _offline() -> bool:
    return any(os.environ.get(var, "").strip().lower() in _TRUTHY
               for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _hf_home() -> Path:
    if os.environ.get("HF_HOME"):
        return Path(os.path.expanduser(os.environ["HF_HOME"]))
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "huggingface"


def _datasets_cache_dir(hub_id: str) -> Path:
    root = os.environ.get("HF_DATASETS_CACHE")
    base = Path(os.path.expanduser(root)) if root else _hf_home() / "datasets"
    return base / hub_id.replace("/", "___")


def _hub_cache_dir(hub_id: str) -> Path:
    root = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    base = Path(os.path.expanduser(root)) if root else _hf_home() / "hub"
    return base / ("datasets--" + hub_id.replace("/", "--"))


def _is_cached(hub_id: str) -> bool:
    return _datasets_cache_dir(hub_id).is_dir() or _hub_cache_dir(hub_id).is_dir()


def _not_cached_error(hub_id: str, why: str) -> DataError:
    return DataError(
        f"Hub dataset {hub_id!r} is not cached on this machine and {why}. Either download "
        f"it once while online (python -c \"import datasets; "
        f"datasets.load_dataset('{hub_id}')\") so it is cached, or point `path:` at a local "
        "JSONL, CSV or Parquet file instead of `hub:`.")


def _looks_like_network_error(exc: BaseException) -> bool:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        for cls in type(exc).__mro__:
            name = cls.__name__
            if ("Connection" in name or "Timeout" in name or "Offline" in name
                    or name in ("LocalEntryNotFoundError", "NetworkError")):
                return True
        exc = exc.__cause__ or exc.__context__
    return False


def load_hub_dataset(hub_id: str, split: str, label: str) -> Any:
    """The `datasets.Dataset` of `split` of Hub dataset `hub_id`, from the cache or the Hub. Fails at once,
    saying how to get it, when it is not cached and the Hub is offline or out of reach; `label` names the
    source in other load errors."""
    offline = _offline()
    if offline and not _is_cached(hub_id):
        raise _not_cached_error(hub_id, "offline mode is on (HF_HUB_OFFLINE / "
                                        "HF_DATASETS_OFFLINE)")
    if not _is_cached(hub_id):
        from rftui.training.model_loading import hub_reachable

        if not hub_reachable():  # `datasets` would retry for ~25 s, printing each attempt, to the same end
            raise _not_cached_error(hub_id, "the Hugging Face Hub cannot be reached")
    import datasets  # heavy: only when a Hub source is actually loaded

    try:
        ds = datasets.load_dataset(hub_id, split=split)
    except Exception as exc:  # datasets raises many unrelated types here
        if offline or _looks_like_network_error(exc):
            if not _is_cached(hub_id):
                raise _not_cached_error(hub_id, "the Hugging Face Hub cannot be reached") \
                    from exc
        raise DataError(f"{label} could not be loaded: {type(exc).__name__}: {exc}. Check "
                        "the dataset id and split name, or use a local file with "
                        "`path:`.") from exc
    return ds
