"""Validate a Python-API search and single-run knobs (clone edits) with the same argument rules."""
from __future__ import annotations

import copy
import math
from dataclasses import replace
from typing import Any

from rftui.config.expand import too_few_problem
from rftui.config.knobs import (
    TRAINER_TYPES, List, Range, RFGridSearch, RFLoraConfig, RFModelConfig, RFRandomSearch,
    RFSFTConfig, _ArgsConfig, as_choices,
)
from rftui.config.problems import Problem
from rftui.config.rules import check_arg, coerce, known_args, knob_section, value_kind


def check_range(knob: Range, path: str, allow_range: bool) -> list[Problem]:
    if not allow_range:
        return [Problem(path, "a Range needs random search", "use List([...]) for a grid, or RFRandomSearch")]
    problems = []
    if knob.dtype not in (int, float):
        problems.append(Problem(path, f"Range dtype must be int or float, got {knob.dtype!r}", "use dtype=int or dtype=float"))
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (knob.low, knob.high)):
        return problems + [Problem(path, "Range bounds must be numbers", "e.g. Range(1e-5, 1e-3, log=True)")]
    if not all(math.isfinite(v) for v in (knob.low, knob.high)):
        return problems + [Problem(path, f"Range bounds must be finite numbers, got {knob.low!r} and {knob.high!r}",
                                   "e.g. Range(1e-5, 1e-3, log=True)")]
    if knob.low > knob.high:
        problems.append(Problem(path, f"Range low {knob.low!r} > high {knob.high!r}", "swap the bounds"))
    if knob.log and knob.low <= 0:
        problems.append(Problem(path, "a log Range needs low > 0", "use a positive lower bound or log=False"))
    return problems


def _int_range_problems(section: str, name: str, knob: Range, path: str) -> list[Problem]:
    """Range(0, 1) samples only 0 or 1 (two int bounds make an int Range, RapidFire AI's rule):
    on a float argument that is almost surely a mistake, and a silent one."""
    if not (knob.dtype_inferred and knob.dtype is int and known_args(section).get(name) == "float"):
        return []
    if not (isinstance(knob.start, int) and isinstance(knob.end, int) and 0 <= knob.end - knob.start <= 1):
        return []
    values = " or ".join(str(v) for v in sorted({knob.start, knob.end}))
    return [Problem(path, f"Range({knob.start}, {knob.end}) has two int bounds, so it samples only {values}, "
                          f"but `{name}` takes a float",
                    f"write the bounds as floats ({float(knob.start)}, not {knob.start}), or dtype=\"int\" if whole "
                    "numbers are meant")]


def check_value(section: str, name: str, value: Any, path: str, allow_range: bool) -> list[Problem]:
    """Problems with an argument that may be a List of choices or a Range."""
    if isinstance(value, List):
        if not value.values:
            return [Problem(path, "an empty List has nothing to choose", "give at least one value")]
        problems = []
        for i, choice in enumerate(value.values):
            problems += check_value(section, name, choice, f"{path}[{i}]", allow_range)
        return problems
    if isinstance(value, Range):
        problems = check_range(value, path, allow_range) + _int_range_problems(section, name, value, path)
        if not problems:
            for bound in (value.low, value.high):
                problems += [p for p in check_arg(section, name, value.dtype(bound), path) if p not in problems]
        return problems
    return check_arg(section, name, coerce(value_kind(section, name), value), path)


def _check_args(section: str, args: Any, path: str, allow_range: bool) -> list[Problem]:
    if isinstance(args, List):
        problems = []
        for i, choice in enumerate(args.values):
            problems += _check_args(section, choice, f"{path}[{i}]", allow_range)
        return problems or ([] if args.values else [Problem(path, "an empty List", "give at least one value")])
    wrapper = RFLoraConfig if section == "lora" else RFSFTConfig
    if isinstance(args, _ArgsConfig):
        if section in ("lora", "training") and not isinstance(args, wrapper):
            return [Problem(path, f"expected {wrapper.__name__}, got {type(args).__name__}", "")]
        args = args.kwargs
    if not isinstance(args, dict):
        hint = f"to try several, write List([{wrapper.__name__}(...), ...])" if isinstance(args, (list, tuple)) else ""
        return [Problem(path, f"expected {wrapper.__name__} or a dict, got {type(args).__name__}", hint)]
    problems = []
    for name, value in args.items():
        found = check_value(section, name, value, f"{path}.{name}", allow_range)
        if isinstance(value, list) and found:  # a plain list is one literal value, not a knob
            found = [replace(p, hint=f"a plain list is one value; to try each, write List({value!r})")
                     if p.message.startswith("expected") else p for p in found]
        problems += found
    return problems


def tokenizer_kwargs_problems(kwargs: Any, path: str, example: str) -> list[Problem]:
    """Tokenizer kwargs go to `AutoTokenizer.from_pretrained(**kwargs)` and are stored with the experiment."""
    if not isinstance(kwargs, dict) or not all(isinstance(key, str) for key in kwargs):
        got = f"got {type(kwargs).__name__} {kwargs!r}" if not isinstance(kwargs, dict) else "got a key that is not text"
        return [Problem(path, f"must be a dict of AutoTokenizer.from_pretrained keyword arguments, {got}", example)]
    return unstorable_problems(kwargs, path)


def unstorable_problems(kwargs: dict, path: str) -> list[Problem]:
    """Model or tokenizer kwargs whose values could not be read back from the experiment's files."""
    from rftui.training.model_loading import unportable_kwargs

    return [Problem(f"{path}.{key}", f"a value of type {type(kwargs[key]).__name__} cannot be stored with the "
                    "experiment (a resume reads it back)", "give plain values: strings, numbers, lists and dicts")
            for key in unportable_kwargs(kwargs)]


def dtype_key(model_kwargs: Any) -> str:
    """The dtype keyword the user writes (`dtype`, or the older `torch_dtype`), for hints in their words."""
    return "dtype" if isinstance(model_kwargs, dict) and "dtype" in model_kwargs else "torch_dtype"


def _check_model_config(config: Any, path: str, allow_range: bool) -> list[Problem]:
    if isinstance(config, List):
        problems = []
        for i, choice in enumerate(config.values):
            problems += _check_model_config(choice, f"{path}[{i}]", allow_range)
        return problems if config.values else [Problem(path, "an empty List of configs", "give at least one RFModelConfig")]
    if not isinstance(config, RFModelConfig):
        return [Problem(path, f"expected RFModelConfig, got {type(config).__name__}", "wrap each config in RFModelConfig(...)")]
    fields = config.fields
    problems = []
    names = fields["model_name"].values if isinstance(fields["model_name"], List) else [fields["model_name"]]
    if not all(isinstance(n, str) and n.strip() for n in names):
        problems.append(Problem(f"{path}.model_name", "must be a model name or path", "e.g. rftui/tiny-llama"))
    if fields["model_type"] not in ("causal_lm",):
        problems.append(Problem(f"{path}.model_type", f"unknown model_type {fields['model_type']!r}", "use causal_lm"))
    if not isinstance(fields["model_kwargs"], dict):
        problems.append(Problem(f"{path}.model_kwargs", "must be a dict", "e.g. {'torch_dtype': 'auto'}"))
    else:
        from rftui.training.model_loading import dtype_problem

        found = dtype_problem(fields["model_kwargs"])
        if found is not None:
            problems.append(Problem(f"{path}.model_kwargs.{found[0]}", found[1], ""))
        problems += unstorable_problems(fields["model_kwargs"], f"{path}.model_kwargs")
    problems += tokenizer_kwargs_problems(fields["tokenizer_kwargs"], f"{path}.tokenizer_kwargs",
                                          "e.g. tokenizer_kwargs={'use_fast': True}")
    problems += _check_args("training", fields["training_args"], f"{path}.training_args", allow_range)
    if fields["peft_config"] is not None:
        problems += _check_args("lora", fields["peft_config"], f"{path}.peft_config", allow_range)
    problems += _check_args("generation", fields["generation_config"], f"{path}.generation_config", allow_range)
    key = dtype_key(fields["model_kwargs"])
    for args_path, args in _training_choices(fields["training_args"], f"{path}.training_args"):
        found = half_precision_problem(f"{args_path}.fp16", args.get("fp16"), fields["peft_config"],
                                       fields["model_kwargs"], f"model_kwargs={{'{key}': 'float32'}}",
                                       "peft_config=RFLoraConfig(...)")
        problems += [found] if found else []
    return problems


def _choices(value: Any) -> list[Any]:
    """The plain values a knob can take (a Range only ever gives numbers, which no check below reads)."""
    if isinstance(value, List):
        return [v for choice in value.values for v in _choices(choice)]
    return [] if isinstance(value, Range) else [value]


def _half_weights_trained(peft: Any) -> str | None:
    """What, on a model loaded in float16, trains float16 weights: full fine-tuning, or LoRA's modules_to_save
    (PEFT casts the adapters themselves to float32, but a saved module's trainable copy keeps the base's dtype)."""
    choices = _choices(peft)
    if any(choice is None for choice in choices):
        return "full fine-tuning"
    for choice in choices:
        kwargs = choice.kwargs if isinstance(choice, _ArgsConfig) else choice
        if isinstance(kwargs, dict) and any(_choices(kwargs.get("modules_to_save"))):
            return "LoRA modules_to_save"
    return None


def half_precision_problem(path: str, fp16: Any, peft: Any, model_kwargs: Any, float32_example: str,
                           lora_example: str) -> Problem | None:
    """fp16 on a model loaded in float16 whose float16 weights are trained fails on a GPU at the first optimizer
    step (torch's GradScaler refuses float16 gradients; HF Trainer fails the same way): said when the config is
    read instead. `fp16` and `peft` may be knobs (any choice that combines counts); `float32_example` and
    `lora_example` are the fixes as the user would write them."""
    from rftui.training.model_loading import model_dtype_name

    if not any(v is True for v in _choices(fp16)) or model_dtype_name(model_kwargs) != "float16":
        return None
    what = _half_weights_trained(peft)
    if what is None:
        return None
    other = f"train LoRA adapters instead ({lora_example})" if what == "full fine-tuning" else "leave out modules_to_save"
    return Problem(path, f"fp16 cannot train a model loaded in float16 with {what}: the optimizer would update "
                         "float16 weights, whose gradients fp16 mixed precision refuses (\"Attempting to unscale FP16 "
                         "gradients\"), so the run would fail at its first optimizer step on a GPU",
                   f"load the model in float32 ({float32_example}; fp16 autocast still computes in half "
                   f"precision and keeps float32 master weights), use bf16 instead of fp16 where the GPU supports "
                   f"it, or {other}")


def _training_choices(args: Any, path: str) -> list[tuple[str, dict]]:
    """(path, kwargs) of each training-arguments choice of a config."""
    if isinstance(args, List):
        return [found for i, choice in enumerate(args.values) for found in _training_choices(choice, f"{path}[{i}]")]
    if isinstance(args, _ArgsConfig):
        args = args.kwargs
    return [(path, args)] if isinstance(args, dict) else []


def _coerced_value(section: str, name: str, value: Any) -> Any:
    if isinstance(value, List):
        return List([_coerced_value(section, name, choice) for choice in value.values])
    kind = value_kind(section, name)
    if isinstance(value, Range):
        start, end = coerce(kind, value.start), coerce(kind, value.end)
        if (start, end) == (value.start, value.end):
            return value
        return Range(start, end, dtype=None if value.dtype_inferred else value.dtype, log=value.log)
    return coerce(kind, value)


def _coerced_args(section: str, args: Any) -> Any:
    if isinstance(args, List):
        return List([_coerced_args(section, choice) for choice in args.values])
    kwargs = args.kwargs if isinstance(args, _ArgsConfig) else args
    if not isinstance(kwargs, dict):
        return args  # not arguments: left for validation to name
    kwargs = {name: _coerced_value(section, name, value) for name, value in kwargs.items()}
    if isinstance(args, _ArgsConfig):
        args = copy.copy(args)
        args.kwargs = kwargs
        return args
    return kwargs


def _coerced_config(config: Any) -> Any:
    if isinstance(config, List):
        return List([_coerced_config(choice) for choice in config.values])
    if not isinstance(config, RFModelConfig):
        return config
    config = copy.copy(config)
    fields = config.fields = dict(config.fields)
    for field, section in (("training_args", "training"), ("peft_config", "lora"), ("generation_config", "generation")):
        if fields[field] is not None:
            fields[field] = _coerced_args(section, fields[field])
    return config


def coerced_search(group: Any) -> Any:
    """The search with numbers written as text (`max_steps="4"`, `List(["8", "16"])`) read as numbers, as a
    config file's are: what is checked is then what is expanded, stored and trained. The user's objects are
    not changed; anything not understood is left as it is, for validate_search to name."""
    if not isinstance(group, (RFGridSearch, RFRandomSearch)):
        return _coerced_config(as_choices(group))
    group = copy.copy(group)
    group.configs = _coerced_config(group.configs)
    if isinstance(group, RFRandomSearch):
        group.num_runs, group.seed = coerce("int", group.num_runs), coerce("int", group.seed)
    return group


def validate_search(group: Any) -> list[Problem]:
    """Every problem in a Python-API search (RFGridSearch, RFRandomSearch, or bare configs)."""
    problems: list[Problem] = []
    random_search = isinstance(group, RFRandomSearch)
    if isinstance(group, (RFGridSearch, RFRandomSearch)):
        if random_search and isinstance(group.trainer_type, int) and not isinstance(group.trainer_type, bool):
            problems.append(Problem("trainer_type", f"got {group.trainer_type!r}: the second argument of "
                                    "RFRandomSearch is trainer_type (RapidFire AI's order)",
                                    f'name it: RFRandomSearch(configs, trainer_type="SFT", num_runs={group.trainer_type})'))
        elif group.trainer_type not in TRAINER_TYPES:
            problems.append(Problem("trainer_type", f"unknown trainer type {group.trainer_type!r}",
                                    f"use one of: {', '.join(TRAINER_TYPES)}"))
        configs = group.configs
    else:
        configs = as_choices(group)
    if random_search:
        if not isinstance(group.num_runs, int) or isinstance(group.num_runs, bool) or group.num_runs < 1:
            problems.append(Problem("num_runs", f"must be an integer ≥ 1, got {group.num_runs!r}", "e.g. num_runs=8"))
        if not isinstance(group.seed, int):
            problems.append(Problem("seed", f"must be an integer, got {group.seed!r}", "e.g. seed=42"))
    problems += _check_model_config(configs, "configs", random_search)
    if random_search and not problems:  # counting the space needs valid knobs
        too_few = too_few_problem(group)
        problems += [too_few] if too_few else []
    return problems


EDITABLE_PREFIXES = ("lora.", "generation.")

# Knobs `plan --json` shows that a clone keeps: a clone's run is its source's spec with only training
# arguments, lora.* and generation.* edited (engine/ops.py edited_spec), trained by the same workers.
_MODEL_KNOBS = ("model_name", "tokenizer")
_MODEL_PREFIXES = ("model_kwargs.", "tokenizer_kwargs.")
_HOOK_KNOBS = {"formatting_func": "formatting function", "compute_metrics": "metrics function"}


def _kept_by_clone(name: str, path: str) -> Problem | None:
    """Why a clone cannot change `name`, for a knob of the run a clone keeps (None for any other name)."""
    only = "only training arguments, lora.* and generation.* can change"
    if name in _MODEL_KNOBS or name.startswith(_MODEL_PREFIXES):
        return Problem(path, f"`{name}` cannot be changed by a clone: a clone trains its source run's model and "
                             f"tokenizer, loaded as the source's were; {only}",
                       "to try another model or loading, start an experiment with it (several models: a list under "
                       "`grid: model: name:`, or RFModelConfig(model_name=List([...])))")
    if name in _HOOK_KNOBS:
        return Problem(path, f"`{name}` cannot be changed by a clone: a clone keeps its source run's "
                             f"{_HOOK_KNOBS[name]}; {only}", "to use another function, start a new experiment with it")
    return None


def _other_section_hint(problem: Problem, arg: str) -> Problem:
    """A bare name that is no training argument but a LoRA or generation one (`top_p=0.9`): say the knob's name."""
    for section in ("lora", "generation"):
        if arg in known_args(section):
            return replace(problem, hint=f"`{arg}` is a {section} knob: write {section}.{arg}")
    return problem


def validate_knobs(knobs: dict[str, Any], path_prefix: str = "") -> list[Problem]:
    """Problems with flat knobs of one run (`learning_rate`, `lora.r`, ...), e.g. clone edits: the names of
    `plan --json`; the run's model, tokenizer and hooks are refused with the reason (a clone keeps them)."""
    problems = []
    for name, value in knobs.items():
        section, arg = knob_section(name)
        path = f"{path_prefix}{name}"
        kept = _kept_by_clone(name, path)
        if kept is not None:
            problems.append(kept)
            continue
        if "." in name and not name.startswith(EDITABLE_PREFIXES + ("training.",)):
            problems.append(Problem(path, f"`{name}` cannot be changed here",
                                    "edit training arguments (learning_rate=...), lora.* or generation.*"))
            continue
        found = check_arg(section, arg, coerce(value_kind(section, arg), value), path)
        if "." not in name and found and found[0].message.startswith("unknown training argument"):
            found[0] = _other_section_hint(found[0], arg)
        problems += found
    return problems
