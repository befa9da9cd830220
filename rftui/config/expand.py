"""Expand a grid or random search into RunSpecs with stable ids and short labels."""
from __future__ import annotations

import itertools
import math
import random
from typing import Any, Iterable

from rftui.config.knobs import (
    List, Range, RFGridSearch, RFModelConfig, RFRandomSearch, _ArgsConfig, as_choices, children,
)
from rftui.config.problems import ConfigError, Problem
from rftui.config.runspec import RunSpec, hook_name


def _grid(value: Any) -> list[Any]:
    """Every resolved variant of `value`, first List axis slowest."""
    if isinstance(value, List):
        return [variant for choice in value.values for variant in _grid(choice)]
    if isinstance(value, Range):
        raise ValueError("a Range needs random search (RFRandomSearch / `random:`); use a List for a grid")
    return _rebuild_product(value, _grid)


def _rebuild_product(value: Any, expand) -> list[Any]:
    named = children(value)
    if named is None:
        return [value]
    keys = list(named)
    axes = [expand(named[k]) for k in keys]
    return [_rebuild(value, dict(zip(keys, combo))) for combo in itertools.product(*axes)]


def _sample(value: Any, rng: random.Random) -> Any:
    if isinstance(value, List):
        return _sample(rng.choice(value.values), rng)
    if isinstance(value, Range):
        return value.sample(rng)
    named = children(value)
    if named is None:
        return value
    return _rebuild(value, {k: _sample(v, rng) for k, v in named.items()})


def _rebuild(template: Any, resolved: dict[str, Any]) -> Any:
    """Plain data from a config node whose children are resolved."""
    if isinstance(template, RFModelConfig):
        return {"__model__": True, **resolved}
    if isinstance(template, _ArgsConfig):
        return {"__section__": template.section, **resolved}
    return dict(resolved)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if not k.startswith("__")}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# Enumerate a finite space (Lists, int Ranges) to count its distinct configs only up to this size.
_MAX_ENUMERATED = 10_000


def _space_size(value: Any) -> float:
    """An upper bound on the number of variants of `value` (inf for a float Range)."""
    if isinstance(value, List):
        return sum(_space_size(choice) for choice in value.values)
    if isinstance(value, Range):
        if value.dtype is int:
            return max(int(value.high) - int(value.low) + 1, 1)
        return 1 if value.low == value.high else math.inf
    named = children(value)
    return math.prod(_space_size(v) for v in named.values()) if named else 1


def _enumerate(value: Any) -> list[Any]:
    """Every variant of a finite space: an int Range counts as the List of its integers."""
    if isinstance(value, Range):
        if value.dtype is int:
            return list(range(int(value.low), int(value.high) + 1))
        return [value.low]
    if isinstance(value, List):
        return [variant for choice in value.values for variant in _enumerate(choice)]
    return _rebuild_product(value, _enumerate)


def distinct_count(configs: Any) -> int | None:
    """How many distinct configs a random search can draw, or None when too many to count."""
    if _space_size(configs) > _MAX_ENUMERATED:
        return None
    return len({repr(v) for v in _enumerate(configs)})


def too_few_problem(group: RFRandomSearch) -> Problem | None:
    """A random search asking for more distinct runs than its space holds."""
    distinct = distinct_count(group.configs)
    if distinct is None or distinct >= group.num_runs:
        return None
    return Problem("num_runs", f"random search asks for {group.num_runs} distinct configs, but the search "
                               f"space has only {distinct}",
                   f"use num_runs={distinct} or fewer, RFGridSearch to run all {distinct}, or add choices")


def _sample_distinct(group: RFRandomSearch, space_checked: bool = False) -> list[Any]:
    """`num_runs` distinct draws in draw order; a draw equal to an earlier one is skipped
    (two identical runs would only spend compute twice). `space_checked`: the caller has already
    asked too_few_problem (validate_search does), so the space is not counted again."""
    problem = None if space_checked else too_few_problem(group)
    if problem is not None:
        raise ConfigError([problem])
    rng = random.Random(group.seed)
    seen: set[str] = set()
    variants: list[Any] = []
    attempts = max(1000, 50 * group.num_runs)  # bounded: a space may hold fewer than it seems
    for _ in range(attempts):
        if len(variants) == group.num_runs:
            break
        variant = _sample(group.configs, rng)
        key = repr(variant)
        if key not in seen:
            seen.add(key)
            variants.append(variant)
    if len(variants) < group.num_runs:
        raise ConfigError([Problem(
            "num_runs", f"random search found only {len(variants)} distinct configs in {attempts} draws, "
                        f"{group.num_runs} asked", "lower num_runs, or widen the Lists and Ranges")])
    return variants


def resolved_configs(group: RFGridSearch | RFRandomSearch | Any, space_checked: bool = False) -> list[dict[str, Any]]:
    """The plain model configs of a search (a bare RFModelConfig or List counts as a grid)."""
    if isinstance(group, RFRandomSearch):
        variants = _sample_distinct(group, space_checked)
    else:
        variants = _grid(group.configs if isinstance(group, RFGridSearch) else as_choices(group))
    configs = []
    for variant in variants:
        if not (isinstance(variant, dict) and variant.get("__model__")):
            raise ValueError(f"configs must be RFModelConfig objects (or Lists of them), got {variant!r}")
        configs.append(variant)
    return configs


def flatten_knobs(config: dict[str, Any]) -> dict[str, Any]:
    """The flat knob view of one resolved config: training args bare, others prefixed.

    The names are the ones clone edits use: `learning_rate`, `lora.r`, `generation.top_p`.
    """
    flat: dict[str, Any] = {"model_name": config["model_name"]}
    if config.get("tokenizer") is not None:
        flat["tokenizer"] = config["tokenizer"]
    for key, value in _plain(config.get("model_kwargs") or {}).items():
        flat[f"model_kwargs.{key}"] = value
    for key, value in _plain(config.get("tokenizer_kwargs") or {}).items():
        flat[f"tokenizer_kwargs.{key}"] = value
    for key, value in _plain(config.get("training_args") or {}).items():
        flat[key] = value
    peft = config.get("peft_config")
    if peft is not None:
        for key, value in _plain(peft).items():
            flat[f"lora.{key}"] = value
    for key, value in _plain(config.get("generation_config") or {}).items():
        flat[f"generation.{key}"] = value
    for hook in ("formatting_func", "compute_metrics"):
        if config.get(hook) is not None:
            flat[hook] = hook_name(config[hook])
    return flat


_SHORT_NAMES = {
    "lora.r": "r",
    "learning_rate": "lr",
    "lora.lora_alpha": "alpha",
    "lora.lora_dropout": "dropout",
    "lora.target_modules": "modules",
    "per_device_train_batch_size": "bs",
    "gradient_accumulation_steps": "ga",
    "weight_decay": "wd",
    "lr_scheduler_type": "sched",
    "warmup_ratio": "warmup",
    "warmup_steps": "warmup",
    "max_steps": "steps",
    "num_train_epochs": "epochs",
    "model_name": "model",
}
_LABEL_PRIORITY = ("model_name", "lora.r", "learning_rate")


def format_value(value: Any) -> str:
    """Compact value text for labels and tables: 0.001 -> 1e-3, ["q_proj", "v_proj"] -> q,v."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value != 0 and (abs(value) < 1e-2 or abs(value) >= 1e5):
            mantissa, exponent = f"{value:.3g}".split("e") if "e" in f"{value:.3g}" else (f"{value:.3g}", "0")
            if exponent == "0":
                mantissa, exponent = f"{value:.2e}".split("e")
                mantissa = mantissa.rstrip("0").rstrip(".")
            return f"{mantissa}e{int(exponent)}"
        return f"{value:.3g}"
    if isinstance(value, (list, tuple)):
        return ",".join(format_value(v).removesuffix("_proj") for v in value)
    if isinstance(value, str) and "/" in value:
        return value.rsplit("/", 1)[-1]
    return str(value)


def short_name(knob: str) -> str:
    return _SHORT_NAMES.get(knob, knob.rsplit(".", 1)[-1])


def differing_knobs(flats: list[dict[str, Any]]) -> list[str]:
    """Knob names whose values are not the same in every run, in first-seen order."""
    names: list[str] = []
    for flat in flats:
        names.extend(k for k in flat if k not in names)
    return [n for n in names if len({repr(f.get(n)) for f in flats}) > 1]


def make_labels(flats: list[dict[str, Any]]) -> list[str]:
    """Short labels naming only the knobs needed to tell runs apart (e.g. `r=32 lr=1e-3`).

    Knobs are considered in priority order (model, LoRA rank, learning rate, then the rest);
    a knob that tells no two runs apart beyond the ones already chosen is left out.
    """
    candidates = differing_knobs(flats)
    candidates.sort(key=lambda k: (_LABEL_PRIORITY.index(k) if k in _LABEL_PRIORITY else len(_LABEL_PRIORITY)))
    chosen: list[str] = []
    groups = 1
    for knob in candidates:
        keyed = {tuple(repr(f.get(k)) for k in chosen + [knob]) for f in flats}
        if len(keyed) > groups:
            chosen.append(knob)
            groups = len(keyed)
    labels = [" ".join(f"{short_name(k)}={format_value(f.get(k))}" for k in chosen) for f in flats]
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if labels.count(label) == 1 else f"{label} #{seen[label]}".strip())
    return [label or "default" for label in out]


def run_spec(run_id: str, label: str, config: dict[str, Any], knobs: dict[str, Any]) -> RunSpec:
    peft = config.get("peft_config")
    return RunSpec(
        run_id=run_id,
        label=label,
        model_name=config["model_name"],
        model_type=config.get("model_type") or "causal_lm",
        model_kwargs=_plain(config.get("model_kwargs") or {}),
        tokenizer=config.get("tokenizer"),
        tokenizer_kwargs=_plain(config.get("tokenizer_kwargs") or {}),
        training=_plain(config.get("training_args") or {}),
        lora=None if peft is None else _plain(peft),
        generation=_plain(config.get("generation_config") or {}),
        formatting_func=config.get("formatting_func"),
        compute_metrics=config.get("compute_metrics"),
        knobs=knobs,
    )


def expand(group: Any, first_index: int = 1, *, space_checked: bool = False) -> list[RunSpec]:
    """RunSpecs for a search: ids r1, r2, ... in expansion order, labels from differing knobs.
    `space_checked`: validate_search has passed it (a random search's space is not counted twice)."""
    from rftui.training.model_loading import portable_model_kwargs

    # torch dtypes, BitsAndBytesConfig and such in model_kwargs: kept by name / as a dict, so they can be stored
    configs = [{**c, "model_kwargs": portable_model_kwargs(_plain(c.get("model_kwargs") or {}))}
               for c in resolved_configs(group, space_checked)]
    flats = [flatten_knobs(c) for c in configs]
    labels = make_labels(flats)
    return [
        run_spec(f"r{first_index + i}", labels[i], config, flats[i])
        for i, config in enumerate(configs)
    ]


def relabel(specs: Iterable[RunSpec]) -> list[RunSpec]:
    """Recompute labels over a changed set of runs (after a clone joins)."""
    specs = list(specs)
    labels = make_labels([dict(s.knobs) for s in specs])
    from dataclasses import replace

    return [replace(s, label=label) for s, label in zip(specs, labels)]
