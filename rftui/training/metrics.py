"""Generation metrics computed locally: ROUGE-L F1 and BLEU, plus the user's `compute_metrics` hook."""
from __future__ import annotations

import numbers
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from rftui.config.hooks import HookError
from rftui.config.hooks import resolve_hook as resolve_config_hook
from rftui.config.runspec import hook_name

__all__ = ["HookError", "bleu", "call_compute_metrics", "generation_metrics", "resolve_hook", "rouge_l"]


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


def resolve_hook(hook: Any, registry: Mapping[str, Callable] | None = None, *,
                 base_dir: str | Path | None = None) -> Callable | None:
    """Turn a hook into a callable: callables pass through; a "module:function" / "file.py:function" string is
    looked up in `registry` (hooks the worker was handed by name) first, then resolved like config hooks
    (relative to `base_dir`)."""
    if hook is None or callable(hook):
        return hook
    if registry and isinstance(hook, str) and hook in registry:
        return registry[hook]
    return resolve_config_hook(hook, base_dir)


def call_compute_metrics(hook: Any, predictions: list[str], references: list[str],
                         registry: Mapping[str, Callable] | None = None,
                         base_dir: str | Path | None = None) -> dict[str, float]:
    """Call the user's `compute_metrics((predictions, references))` and check it returns name -> number.
    Any failure raises HookError naming the hook."""
    fn = resolve_hook(hook, registry, base_dir=base_dir)
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
                       registry: Mapping[str, Callable] | None = None,
                       base_dir: str | Path | None = None) -> dict[str, float]:
    """ROUGE-L and BLEU over the pairs, merged with the user's metrics (user keys win on a clash)."""
    metrics = {"rougeL": rouge_l(predictions, references), "bleu": bleu(predictions, references)}
    metrics.update(call_compute_metrics(hook, predictions, references, registry, base_dir))
    return metrics
