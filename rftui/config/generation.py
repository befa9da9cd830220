"""Generation settings that do nothing: evaluation generates greedily unless `do_sample` is true
(rftui/training/evaluation.py, as transformers' own default), so sampling-only keys written without
it are ignored. Said once per run as a warning, and on a clone edit that sets one."""
from __future__ import annotations

from typing import Any, Iterable, Mapping

# transformers' GenerationConfig flags "only used in sample-based generation modes" (its validate()),
# each with the value that changes nothing, which it does not warn about either.
SAMPLING_ONLY: dict[str, Any] = {
    "temperature": 1.0, "top_p": 1.0, "top_k": 50, "typical_p": 1.0, "min_p": None, "top_h": None,
    "epsilon_cutoff": 0.0, "eta_cutoff": 0.0,
}


def ignored_sampling_keys(generation: Mapping[str, Any], keys: Iterable[str] | None = None) -> list[str]:
    """The sampling-only keys of `generation` (or only those among `keys`) that greedy decoding ignores.
    An explicit `do_sample` (true, or false: greedy chosen knowingly) leaves nothing to say."""
    if generation.get("do_sample") is not None:
        return []
    names = [k for k in (keys if keys is not None else generation) if k in SAMPLING_ONLY]
    ignored = [k for k in names if generation.get(k) is not None and generation.get(k) != SAMPLING_ONLY[k]]
    if (generation.get("penalty_alpha") or 0) > 0:  # contrastive search, greedy too, reads top_k
        ignored = [k for k in ignored if k != "top_k"]
    return ignored


def greedy_note(keys: list[str]) -> str:
    """Why `keys` (ignored_sampling_keys' answer) change nothing, and the two ways to be clear."""
    names = ", ".join(f"generation.{k}" for k in keys)
    return (f"{names} {'has' if len(keys) == 1 else 'have'} no effect: evaluation generates greedily "
            "(deterministic ROUGE-L/BLEU) unless generation.do_sample is true; set do_sample: true to sample, "
            "or do_sample: false to keep greedy decoding without this message")
