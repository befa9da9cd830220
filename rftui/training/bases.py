"""Resident base models of a worker: loaded once through the user's create_model hook or the model loader, kept
in an LRU of whole bases keyed by (model_name, model_kwargs, tokenizer, tokenizer_kwargs): the tokenizer is part of
what is resident, and runs whose tokenizers differ must not share one."""
from __future__ import annotations

import gc
import json
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch

from rftui.config.runspec import RunSpec, hook_name
from rftui.errors import ModelLoadError, RftuiError
from rftui.training.metrics import resolve_hook

ModelLoader = Callable[..., tuple[Any, Any]]


@dataclass
class ResidentBase:
    """A base model kept in memory with its tokenizer; LoRA runs are adapters on `peft` (created lazily)."""

    key: tuple
    model: Any
    tokenizer: Any
    peft: Any = None
    fused_forward: Any = None       # TRL's fused-LM-head forward, patched once per base
    runs: set[str] = field(default_factory=set)


def default_loader(name: str, model_kwargs: dict | None = None, tokenizer_name: str | None = None,
                   tokenizer_kwargs: dict | None = None):
    from rftui.training.model_loading import load_model_and_tokenizer

    return load_model_and_tokenizer(name, model_kwargs=model_kwargs, tokenizer_name=tokenizer_name,
                                    tokenizer_kwargs=tokenizer_kwargs)


def base_key(spec: RunSpec) -> tuple:
    return (spec.model_name, json.dumps(dict(spec.model_kwargs), sort_keys=True, default=str), spec.tokenizer,
            json.dumps(dict(spec.tokenizer_kwargs), sort_keys=True, default=str))


def load_model(spec: RunSpec, *, loader: ModelLoader, create_model: Any = None,
               hooks: Mapping[str, Callable] | None = None, hooks_base_dir: str | None = None) -> tuple[Any, Any]:
    """(model, tokenizer) for `spec`: the RapidFire-style `create_model(model_config)` hook when given, else
    `loader(name, model_kwargs=..., tokenizer_name=...)`, plus `tokenizer_kwargs=...` when the run has any (a loader
    written before them keeps working). Failures raise ModelLoadError naming the hook."""
    if create_model is not None:
        label = f"create_model hook {hook_name(create_model)}"
        from rftui.training.builtin_model import resolve_model_path

        # A built-in name resolves to its cached local directory, so the user's own
        # `from_pretrained(model_config["model_name"])` works offline.
        model_config = {"model_name": resolve_model_path(spec.model_name), "model_type": spec.model_type,
                        "model_kwargs": dict(spec.model_kwargs), "tokenizer": spec.tokenizer,
                        "tokenizer_kwargs": dict(spec.tokenizer_kwargs)}

        def call():
            return resolve_hook(create_model, hooks, base_dir=hooks_base_dir)(model_config)
    else:
        label = f"model loader {hook_name(loader)}"

        extra = {"tokenizer_kwargs": dict(spec.tokenizer_kwargs)} if spec.tokenizer_kwargs else {}

        def call():
            return loader(spec.model_name, model_kwargs=dict(spec.model_kwargs) or None, tokenizer_name=spec.tokenizer,
                          **extra)
    try:
        result = call()
    except RftuiError:
        raise
    except Exception as exc:  # noqa: BLE001 - a user/engine hook failed; name it
        raise ModelLoadError(f"{label} failed for {spec.model_name!r} (run {spec.run_id}): "
                             f"{type(exc).__name__}: {exc}") from exc
    if not (isinstance(result, (tuple, list)) and len(result) == 2 and result[1] is not None):
        raise ModelLoadError(f"{label} must return (model, tokenizer) for {spec.model_name!r} "
                             f"(run {spec.run_id}), got {type(result).__name__}")
    return result[0], result[1]


class ResidentBases:
    """At most `max_bases` bases stay loaded; loading another evicts the least recently used one whole
    (`on_evict(base)` first drops the runs living on it: their state is on disk at their last boundary)."""

    def __init__(self, device: str, max_bases: int, load: Callable[[RunSpec], tuple[Any, Any]],
                 on_evict: Callable[[ResidentBase], None]):
        self.device = device
        self.max_bases = max(1, max_bases)
        self._load = load
        self._on_evict = on_evict
        self._bases: OrderedDict[tuple, ResidentBase] = OrderedDict()

    def __len__(self) -> int:
        return len(self._bases)

    def __getitem__(self, key: tuple) -> ResidentBase:
        return self._bases[key]

    def values(self):
        return list(self._bases.values())

    def touch(self, key: tuple) -> ResidentBase:
        self._bases.move_to_end(key)
        return self._bases[key]

    def get(self, spec: RunSpec) -> ResidentBase:
        key = base_key(spec)
        if key in self._bases:
            return self.touch(key)
        while len(self._bases) >= self.max_bases:
            _, old = self._bases.popitem(last=False)
            self._on_evict(old)
            old.peft = old.model = None
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        model, tokenizer = self._load(spec)
        place_model(model, self.device)
        base = ResidentBase(key=key, model=model, tokenizer=tokenizer)
        self._bases[key] = base
        return base

    def clear(self) -> None:
        self._bases.clear()


def place_model(model: Any, device: str) -> None:
    """Put a freshly loaded model on the worker's device, unless loading already placed it: a `device_map`
    (on CUDA the loader maps everything to the worker's one GPU) or bitsandbytes quantization, whose models
    refuse `.to()`."""
    placed = getattr(model, "hf_device_map", None) is not None
    if placed or getattr(model, "quantization_method", None) == "bitsandbytes":
        return
    model.to(device)
