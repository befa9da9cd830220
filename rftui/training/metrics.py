"""Generation metrics computed locally: ROUGE-L F1 and BLEU, plus the user's `compute_metrics` hook."""
from __future__ import annotations

import importlib
import importlib.util
import numbers
import sys
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from rftui.config.runspec import hook_name


class HookError(RuntimeError):
    """A user hook could not be imported, failed, or returned something unusable. The message names the hook."""


def rouge_l(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Mean ROUGE-L F1 over pairs (rouge-score, Porter stemming); 0.0 for no pairs."""
    from rouge_score import rouge_scorer

    _check_pairs(predictions, references)
    if not predictions:
        return 0.0
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    scores = [scorer.score(ref, pred)["rougeL"].fmeasure for pred, ref in zip(predictions, references)]
    return float(sum(scores) / len(scores))


def bleu(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU (sacrebleu defaults) scaled to [0, 1]; 0.0 for no pairs."""
    import sacrebleu

    _check_pairs(predictions, references)
    if not predictions:
        return 0.0
    score = sacrebleu.corpus_bleu(list(predictions), [list(references)]).score / 100.0
    return float(min(1.0, max(0.0, score)))  # sacrebleu can return 100.00000000000004


def _check_pairs(predictions: Sequence[str], references: Sequence[str]) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")


def resolve_hook(hook: Any, registry: Mapping[str, Callable] | None = None, *, role: str = "hook") -> Callable | None:
    """Turn a hook into a callable.

    A callable is returned as is; a string is looked up in `registry` first (hooks the worker was
    given by name), then imported as "package.module:function" or "path/to/file.py:function".
    """
    if hook is None or callable(hook):
        return hook
    if not isinstance(hook, str):
        raise HookError(f"{role} {hook!r} is neither a callable nor a 'module:function' string")
    if registry and hook in registry:
        return registry[hook]
    module_name, sep, attr = hook.rpartition(":")
    if not sep or not module_name or not attr:
        raise HookError(f"{role} {hook!r}: expected 'module:function' (or 'file.py:function')")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name).expanduser().resolve()
            key = f"rftui_user_hook_{abs(hash(str(path)))}"
            module = sys.modules.get(key)
            if module is None:
                spec = importlib.util.spec_from_file_location(key, path)
                if spec is None or spec.loader is None:
                    raise ImportError(f"cannot load {path}")
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
                sys.modules[key] = module
        else:
            module = importlib.import_module(module_name)
        target: Any = module
        for part in attr.split("."):
            target = getattr(target, part)
    except Exception as exc:  # noqa: BLE001 - any import failure is the user's to fix
        raise HookError(f"{role} {hook!r} cannot be imported: {type(exc).__name__}: {exc}") from exc
    if not callable(target):
        raise HookError(f"{role} {hook!r} is not callable")
    return target


def call_compute_metrics(hook: Any, predictions: list[str], references: list[str],
                         registry: Mapping[str, Callable] | None = None) -> dict[str, float]:
    """Call the user's `compute_metrics((predictions, references))` and check it returns name -> number."""
    fn = resolve_hook(hook, registry, role="compute_metrics hook")
    if fn is None:
        return {}
    name = hook_name(hook)
    try:
        result = fn((predictions, references))
    except Exception as exc:  # noqa: BLE001 - re-raised with the hook's name
        raise HookError(f"compute_metrics hook {name} raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(result, Mapping):
        raise HookError(f"compute_metrics hook {name} returned {type(result).__name__}, expected a dict of numbers")
    metrics: dict[str, float] = {}
    for key, value in result.items():
        if hasattr(value, "item") and callable(value.item):
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise HookError(f"compute_metrics hook {name} returned {key}={value!r}; values must be numbers")
        metrics[str(key)] = float(value)
    return metrics


def generation_metrics(predictions: list[str], references: list[str], hook: Any = None,
                       registry: Mapping[str, Callable] | None = None) -> dict[str, float]:
    """ROUGE-L and BLEU over the pairs, merged with the user's metrics (user keys win on a clash)."""
    metrics = {"rougeL": rouge_l(predictions, references), "bleu": bleu(predictions, references)}
    metrics.update(call_compute_metrics(hook, predictions, references, registry))
    return metrics
