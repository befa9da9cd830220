"""Checks for single argument values: names (with did-you-mean), kinds and ranges."""
from __future__ import annotations

import difflib
import json
import math
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

from rftui.config.problems import Problem

_FLOAT_TEXT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")

# `none` marks arguments whose null means "the library's default": every GenerationConfig field
# defaults to None, except the ones rftui fills in itself (max_new_tokens, do_sample, num_samples, seed).
# The SFTConfig/LoraConfig kinds in arg_fields.json carry `none` where the dataclass field is Optional.
GENERATION_KINDS = {
    "max_new_tokens": "int", "min_new_tokens": "int|none", "max_length": "int|none", "do_sample": "bool",
    "temperature": "float|none", "top_p": "float|none", "top_k": "int|none", "min_p": "float|none",
    "repetition_penalty": "float|none", "no_repeat_ngram_size": "int|none", "num_beams": "int|none",
    "length_penalty": "float|none", "typical_p": "float|none", "early_stopping": "bool|none|str",
    "num_samples": "int", "seed": "int",
}

LR_SCHEDULERS = (
    "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
    "inverse_sqrt", "reduce_lr_on_plateau", "cosine_with_min_lr", "cosine_warmup_with_min_lr",
    "warmup_stable_decay",
)


@lru_cache(maxsize=1)
def _arg_fields() -> dict[str, dict[str, str]]:
    return json.loads((Path(__file__).with_name("arg_fields.json")).read_text())


def known_args(section: str) -> dict[str, str]:
    """Argument name -> kind for "training" (SFTConfig), "lora" (LoraConfig) or "generation"."""
    if section == "training":
        return _arg_fields()["sft"]
    if section == "lora":
        return _arg_fields()["lora"]
    if section == "generation":
        return GENERATION_KINDS
    raise KeyError(section)


def did_you_mean(name: str, candidates) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f"did you mean `{close[0]}`?" if close else ""


def coerce(kind: str, value: Any) -> Any:
    """YAML reads `1e-3` as text; take it as the number the user meant when a number is expected."""
    if isinstance(value, str) and ("float" in kind or "int" in kind) and _FLOAT_TEXT.match(value.strip()):
        number = float(value)
        return int(number) if "float" not in kind and number.is_integer() else number
    return value


def kind_ok(kind: str, value: Any) -> bool:
    """Whether `value` has `kind`; null only where the kind includes `none` (or is `any`)."""
    for part in kind.split("|"):
        if part == "any" or (part == "none" and value is None):
            return True
        if part == "bool" and isinstance(value, bool):
            return True
        if part == "int" and isinstance(value, int) and not isinstance(value, bool):
            return True
        if part == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if part == "str" and isinstance(value, str):
            return True
        if part == "list" and isinstance(value, (list, tuple)):
            return True
        if part == "dict" and isinstance(value, dict):
            return True
    return False


def _kind_words(kind: str) -> str:
    words = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string",
             "list": "a list", "dict": "a mapping", "any": "a value"}
    return " or ".join(words.get(p, p) for p in kind.split("|") if p != "none")


def _got(value: Any) -> str:
    """How a wrong value reads in a message: `null`, or its type and repr."""
    return "null" if value is None else f"{type(value).__name__} {value!r}"


Check = Callable[[Any], "tuple[str, str] | None"]


def _at_least(low: float, fix: str) -> Check:
    return lambda v: None if v >= low else (f"must be ≥ {low:g}, got {v!r}", fix)


def _above(low: float, fix: str) -> Check:
    return lambda v: None if v > low else (f"must be > {low:g}, got {v!r}", fix)


def _within(low: float, high: float, fix: str, high_open: bool = False) -> Check:
    def check(v):
        ok = low <= v < high if high_open else low <= v <= high
        bracket = ")" if high_open else "]"
        return None if ok else (f"must be in [{low:g}, {high:g}{bracket}, got {v!r}", fix)
    return check


def _one_of(choices, fix: str = "") -> Check:
    def check(v):
        if v in choices:
            return None
        hint = did_you_mean(str(v), choices) or fix or f"use one of: {', '.join(map(str, choices))}"
        return (f"unknown value {v!r}", hint)
    return check


RANGE_RULES: dict[tuple[str, str], Check] = {
    ("training", "learning_rate"): _above(0, "use a positive learning rate such as 1e-4"),
    ("training", "max_steps"): _at_least(1, "use max_steps ≥ 1, or leave it out to train by num_train_epochs"),
    ("training", "num_train_epochs"): _above(0, "use a positive number of epochs"),
    ("training", "per_device_train_batch_size"): _at_least(1, "use a batch size ≥ 1"),
    ("training", "per_device_eval_batch_size"): _at_least(1, "use a batch size ≥ 1"),
    ("training", "gradient_accumulation_steps"): _at_least(1, "use ≥ 1 (1 means no accumulation)"),
    ("training", "logging_steps"): _above(0, "log every N ≥ 1 steps"),
    ("training", "eval_steps"): _above(0, "evaluate every N ≥ 1 steps"),
    ("training", "warmup_ratio"): _within(0, 1, "use a fraction of the total steps, e.g. 0.1"),
    ("training", "warmup_steps"): _at_least(0, "use ≥ 0 warmup steps"),
    ("training", "weight_decay"): _at_least(0, "use ≥ 0, e.g. 0.01"),
    ("training", "max_grad_norm"): _at_least(0, "use ≥ 0 (0 disables clipping)"),
    ("training", "max_length"): _at_least(1, "use a positive token count, e.g. 512"),
    ("training", "seed"): _at_least(0, "use a non-negative seed"),
    ("training", "lr_scheduler_type"): _one_of(LR_SCHEDULERS),
    ("training", "eval_strategy"): _one_of(("no", "steps", "epoch")),
    ("lora", "r"): _at_least(1, "use a LoRA rank ≥ 1, e.g. 8"),
    ("lora", "lora_alpha"): _above(0, "use a positive alpha, often 2 × r"),
    ("lora", "lora_dropout"): _within(0, 1, "use a probability in [0, 1), e.g. 0.05", high_open=True),
    ("lora", "bias"): _one_of(("none", "all", "lora_only")),
    ("generation", "max_new_tokens"): _at_least(1, "generate at least 1 token"),
    ("generation", "temperature"): _above(0, "use a positive temperature, e.g. 0.8"),
    ("generation", "top_p"): _within(0, 1, "use a probability in (0, 1]"),
    ("generation", "top_k"): _at_least(0, "use ≥ 0 (0 disables top-k)"),
    ("generation", "repetition_penalty"): _above(0, "use a positive penalty, e.g. 1.05"),
    ("generation", "num_beams"): _at_least(1, "use ≥ 1 beams"),
    ("generation", "num_samples"): _at_least(0, "use ≥ 0 eval rows for generation metrics"),
}

RENAMED = {
    ("training", "warmup_ratio"): "transformers 5 folds it into `warmup_steps`: a value below 1 is a fraction of the total steps",
    ("training", "evaluation_strategy"): "it is called `eval_strategy` now",
}

INT_ONLY = {("lora", "r"), ("training", "max_steps"), ("training", "per_device_train_batch_size"),
            ("training", "per_device_eval_batch_size"), ("training", "gradient_accumulation_steps"),
            ("training", "seed"), ("generation", "max_new_tokens"), ("generation", "top_k")}


def value_kind(section: str, name: str) -> str:
    """The kind a value of an argument is read as (`coerce`): an INT_ONLY argument's text is read as an integer."""
    return "int" if (section, name) in INT_ONLY else known_args(section).get(name, "any")


def check_arg(section: str, name: str, value: Any, path: str) -> list[Problem]:
    """Problems with one plain argument value (not a List/Range) of a section."""
    fields = known_args(section)
    if name not in fields:
        hint = RENAMED.get((section, name)) or did_you_mean(name, fields) or \
            f"see the {section} arguments in the README's config reference"
        return [Problem(path, f"unknown {section} argument `{name}`", hint)]
    kind = fields[name]
    if value is None and kind_ok(kind, value):
        return []
    if (section, name) in INT_ONLY:
        kind = "int"
    if not kind_ok(kind, value):
        fix = f"write `{name}` as {_kind_words(kind)}"
        return [Problem(path, f"expected {_kind_words(kind)}, got {_got(value)}",
                        f"{fix}, or leave it out to use the default" if value is None else fix)]
    if isinstance(value, float) and not math.isfinite(value):
        return [Problem(path, f"expected a finite number, got {value!r}", f"write `{name}` as a finite number")]
    if section == "lora" and name == "target_modules":
        values = [value] if isinstance(value, str) else list(value)
        if not values or not all(isinstance(v, str) and v for v in values):
            return [Problem(path, "must be a module name or a non-empty list of module names",
                            "e.g. [q_proj, v_proj]")]
    rule = RANGE_RULES.get((section, name))
    if rule is not None and isinstance(value, (int, float, str)) and not isinstance(value, bool):
        failed = rule(value) if not (isinstance(value, str) and "float" in kind) else None
        if failed:
            return [Problem(path, failed[0], failed[1])]
    return []


KNOB_SECTIONS = {"lora": "lora", "generation": "generation"}


def knob_section(flat_name: str) -> tuple[str, str]:
    """Section and argument of a flat knob name: `lora.r` -> (lora, r), `learning_rate` -> (training, ...)."""
    if "." in flat_name:
        prefix, _, rest = flat_name.partition(".")
        if prefix in ("training",):
            return "training", rest
        if prefix in KNOB_SECTIONS:
            return KNOB_SECTIONS[prefix], rest
    return "training", flat_name
