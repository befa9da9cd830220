"""The search-space vocabulary users already write: List, Range and the RF*Config wrappers."""
from __future__ import annotations

import math
import random
from typing import Any, Iterable, Mapping


class List:
    """A discrete set of choices: a grid axis, or sampled uniformly by random search."""

    def __init__(self, values: Iterable[Any]):
        self.values = list(values)

    def __repr__(self) -> str:
        return f"List({self.values!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, List) and other.values == self.values

    def __len__(self) -> int:
        return len(self.values)


class Range:
    """An interval for random search, named as RapidFire AI names it: `Range(start, end, dtype=None)`.

    Without a dtype, two int bounds sample ints and anything else samples floats (RapidFire AI's
    rule); `dtype` is "int"/"float" (or int/float). `log=True` samples log-uniformly.
    """

    def __init__(self, start: float, end: float, dtype: type | str | None = None, log: bool = False):
        self.start, self.end, self.log = start, end, log
        self.dtype_inferred = dtype is None
        if dtype is None:
            dtype = int if all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end)) else float
        self.dtype = {"int": int, "float": float}.get(dtype, dtype) if isinstance(dtype, str) else dtype

    # The names the rest of rftui (and YAML's {low:, high:}) use.
    low = property(lambda self: self.start)
    high = property(lambda self: self.end)

    def __repr__(self) -> str:
        return f"Range({self.start!r}, {self.end!r}, dtype={getattr(self.dtype, '__name__', self.dtype)}, log={self.log!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Range) and (other.start, other.end, other.log, other.dtype) == (
            self.start, self.end, self.log, self.dtype)

    def sample(self, rng: random.Random) -> float | int:
        if self.dtype is int:
            if self.log:
                value = math.exp(rng.uniform(math.log(self.start), math.log(self.end + 1)))
                return min(int(value), int(self.end))
            return rng.randint(int(self.start), int(self.end))
        if self.log:
            return math.exp(rng.uniform(math.log(self.start), math.log(self.end)))
        return rng.uniform(self.start, self.end)


def as_choices(value: Any) -> Any:
    """A plain list where a config is expected means a choice of configs, as in RapidFire AI
    (`peft_config=[RFLoraConfig(...), ...]`, `RFGridSearch([config_1, config_2])`). Plain lists
    inside a config stay literal values (`target_modules=["q_proj", "v_proj"]`)."""
    return List(value) if isinstance(value, list) else value


class _ArgsConfig:
    """Keyword arguments for a library config class, any of which may be a List or a Range."""

    section = ""

    def __init__(self, **kwargs: Any):
        self.kwargs = dict(kwargs)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.kwargs == self.kwargs


class RFLoraConfig(_ArgsConfig):
    """PEFT `LoraConfig` arguments (r, lora_alpha, lora_dropout, target_modules, bias, ...)."""

    section = "lora"


class RFSFTConfig(_ArgsConfig):
    """TRL `SFTConfig` arguments (learning_rate, per_device_train_batch_size, max_steps, ...)."""

    section = "training"


MODEL_FIELDS = (
    # Expansion order: earlier fields vary slowest. Training arguments before LoRA configs
    # reproduces the cookbook's run order (r=8 lr=1e-3, r=32 lr=1e-3, r=8 lr=1e-4, ...).
    "model_name", "tokenizer", "tokenizer_kwargs", "model_type", "model_kwargs", "formatting_func",
    "compute_metrics", "generation_config", "training_args", "peft_config",
)


class RFModelConfig:
    """One model configuration; any argument may be a List (grid) or a Range (random search)."""

    def __init__(
        self,
        model_name: Any,
        tokenizer: Any = None,
        peft_config: Any = None,
        training_args: Any = None,
        model_type: Any = "causal_lm",
        model_kwargs: Any = None,
        formatting_func: Any = None,
        compute_metrics: Any = None,
        generation_config: Any = None,
        tokenizer_kwargs: Any = None,
    ):
        self.fields: dict[str, Any] = {
            "model_name": model_name,
            "tokenizer": tokenizer,
            # AutoTokenizer.from_pretrained keyword arguments, as RapidFire AI's RFModelConfig takes them
            "tokenizer_kwargs": {} if tokenizer_kwargs is None else tokenizer_kwargs,
            "model_type": model_type,
            "model_kwargs": {} if model_kwargs is None else model_kwargs,
            "formatting_func": formatting_func,
            "compute_metrics": compute_metrics,
            "generation_config": {} if generation_config is None else generation_config,
            "training_args": RFSFTConfig() if training_args is None else training_args,
            "peft_config": as_choices(peft_config),
        }

    def __getitem__(self, key: str) -> Any:
        return self.fields[key]

    def __repr__(self) -> str:
        return f"RFModelConfig({self.fields!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RFModelConfig) and other.fields == self.fields


TRAINER_TYPES = ("SFT",)


def trainer_name(trainer_type: Any) -> Any:
    """"sft" and "SFT" name the same trainer, as in RapidFire AI; the Python API and the config file's
    `trainer:` both read it here (anything not text is left for validation)."""
    return trainer_type.strip().upper() if isinstance(trainer_type, str) else trainer_type


class RFGridSearch:
    """Every combination of every List (the Cartesian product), in declaration order."""

    def __init__(self, configs: Any, trainer_type: str = "SFT"):
        self.configs = as_choices(configs)
        self.trainer_type = trainer_name(trainer_type)

    def __repr__(self) -> str:
        return f"RFGridSearch(configs={self.configs!r}, trainer_type={self.trainer_type!r})"


class RFRandomSearch:
    """`num_runs` distinct configurations sampled from Lists and Ranges, reproducibly by `seed`.

    The argument order and the default of one run are RapidFire AI's.
    """

    def __init__(self, configs: Any, trainer_type: str = "SFT", num_runs: int = 1, seed: int = 42):
        self.configs = as_choices(configs)
        self.num_runs = num_runs
        self.seed = seed
        self.trainer_type = trainer_name(trainer_type)

    def __repr__(self) -> str:
        return (f"RFRandomSearch(configs={self.configs!r}, trainer_type={self.trainer_type!r}, "
                f"num_runs={self.num_runs!r}, seed={self.seed!r})")


def is_knob(value: Any) -> bool:
    return isinstance(value, (List, Range))


def children(value: Any) -> Mapping[str, Any] | None:
    """The named sub-values of a config node (None for a leaf)."""
    if isinstance(value, RFModelConfig):
        return value.fields
    if isinstance(value, _ArgsConfig):
        return value.kwargs
    if isinstance(value, dict):
        return value
    return None
