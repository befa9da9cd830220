"""Verdicts of the LoRA check (rftui.training.lora_check) kept on disk, so that checking a grid already checked
(`rftui run` after `rftui plan`, a second run of a config) does not import torch, transformers and PEFT, which
takes seconds. A verdict is keyed by the model's architecture (the built-in recipe, or the bytes of its
config.json), the LoRA settings and the versions of the libraries that judged them."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

VERSION = 1  # bump when what a verdict holds or means changes

Verdict = tuple[str | None, list[str]]  # (PEFT's complaint or None, the model's linear layer names)


def memo_key(model_name: str, model_kwargs: Any, lora: dict) -> str | None:
    """The key of a verdict, or None when the model's architecture cannot be told without loading it."""
    model = _model_fingerprint(model_name, dict(model_kwargs or {}))
    if model is None:
        return None
    payload = {"version": VERSION, "model": model, "lora": lora, "libraries": _versions()}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:32]


def recall(key: str) -> Verdict | None:
    """The verdict kept under `key`, or None (none kept, or unreadable: the check is made again)."""
    try:
        data = json.loads(_path(key).read_text(encoding="utf-8"))
        error, linear = data["error"], data["linear"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if (error is None or isinstance(error, str)) and isinstance(linear, list) \
            and all(isinstance(name, str) for name in linear):
        return error, linear
    return None


def remember(key: str, verdict: Verdict) -> None:
    """Keep a verdict; a cache that cannot be written only costs the next check its imports."""
    path = _path(key)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"error": verdict[0], "linear": list(verdict[1])}, handle)
        os.replace(tmp, path)  # atomic: a concurrent reader sees the old file or the whole new one
    except OSError:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def _path(key: str) -> Path:
    from rftui.training.builtin_model import cache_root

    return cache_root() / "lora-checks" / f"{key}.json"


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for package in ("transformers", "peft", "torch"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = None
    return out


def _model_fingerprint(name: str, model_kwargs: dict) -> str | None:
    from rftui.training.builtin_model import RECIPE, is_builtin

    if is_builtin(name):
        return f"builtin {name} " + json.dumps(RECIPE, sort_keys=True, default=str)
    if model_kwargs.get("trust_remote_code"):
        return None  # its modeling code can change while its config.json stays the same
    path = _config_file(name, model_kwargs.get("revision"))
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest() if path else None
    except OSError:
        return None


def _config_file(name: str, revision: Any) -> str | None:
    """config.json of a local model directory or of a Hub model in the local cache (no network)."""
    local = os.path.expanduser(name)
    if os.path.isdir(local):
        path = os.path.join(local, "config.json")
        return path if os.path.isfile(path) else None
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo_id=name, filename="config.json",
                                       revision=revision if isinstance(revision, str) else None)
    except Exception:  # an odd id or an old huggingface_hub: no key, the check loads the config itself
        return None
    return found if isinstance(found, str) else None
