"""Read a YAML experiment file into an ExperimentSpec, reporting every problem in one pass."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from rftui.config.expand import expand
from rftui.config.experiment import DEFAULT_SYSTEM_PROMPT, DEFAULT_WORKDIR, DataSpec, ExperimentSpec
from rftui.config.hooks import check_hook_ref, unfound_hook_hint
from rftui.config.keymap import check_keymap
from rftui.config.knobs import (
    TRAINER_TYPES, List, Range, RFGridSearch, RFLoraConfig, RFModelConfig, RFRandomSearch, RFSFTConfig,
    trainer_name,
)
from rftui.config.problems import ConfigError, Problem
from rftui.config.rules import coerce, did_you_mean, known_args
from rftui.config.validate import check_value, dtype_key, half_precision_problem, tokenizer_kwargs_problems
from rftui.config.yaml_lines import duplicate_keys, line_map, line_of

TOP_KEYS = ("name", "description", "trainer", "num_chunks", "seed", "model", "data", "training", "lora",
            "generation", "eval", "grid", "random", "workdir", "tracking_uri", "ui")
MODEL_KEYS = ("name", "type", "kwargs", "tokenizer", "tokenizer_kwargs", "create")
DATA_KEYS = ("train", "eval", "formatting", "system_prompt", "prompt_field", "completion_field")
SOURCE_KEYS = ("path", "hub", "split", "select", "shuffle_seed")
EVAL_KEYS = ("metrics", "num_samples")
UI_KEYS = ("theme", "keymap")
SPACE_KEYS = ("training", "lora", "generation", "model", "num_runs", "seed")
NAME_MAX = 100
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,%d}$" % (NAME_MAX - 1))


def name_problem(name: Any, path: str = "name", example: str = "name: chatqa-lite") -> Problem | None:
    """What is wrong with an experiment name (it becomes a directory name), or None."""
    if not isinstance(name, str):
        return Problem(path, f"experiment name must be a string, got {type(name).__name__} {name!r}", f"e.g. {example}")
    if len(name) > NAME_MAX:
        return Problem(path, f"experiment name is too long: {len(name)} characters, at most {NAME_MAX}",
                       f"use a shorter name, e.g. {example}")
    if not NAME_PATTERN.match(name):
        return Problem(path, f"experiment name {name!r} must be letters, digits, '.', '_' or '-', "
                       "starting with a letter or digit", f"e.g. {example}")
    return None


class _Reader:
    """Collects problems while reading sections of one document."""

    def __init__(self, file: str, text: str, base_dir: Path):
        self.file, self.base_dir = file, base_dir
        self.lines = line_map(text)
        self.problems: list[Problem] = []

    def add(self, path: str, message: str, hint: str = "", line: int | None = None) -> None:
        self.problems.append(Problem(path, message, hint, self.file, line or line_of(self.lines, path)))

    def extend(self, problems: list[Problem]) -> None:
        for p in problems:
            self.add(p.path, p.message, p.hint)

    def mapping(self, value: Any, path: str, keys: tuple[str, ...], required: tuple[str, ...] = ()) -> dict:
        if value is None:
            value = {}
        if not isinstance(value, dict):
            self.add(path, f"expected a mapping, got {type(value).__name__}", f"write `{path}:` as key: value lines")
            return {}
        for key in value:
            if key not in keys:
                hint = did_you_mean(str(key), keys) or f"known keys: {', '.join(keys)}"
                self.add(f"{path}.{key}" if path else str(key), f"unknown key `{key}`", hint)
        for key in required:
            if value.get(key) is None:
                self.add(f"{path}.{key}" if path else key, f"`{key}` is required", "")
        return {k: v for k, v in value.items() if k in keys}

    def integer(self, value: Any, path: str, default: int, low: int, example: int | None = None) -> int:
        if value is None:
            return default
        value = coerce("int", value)
        if not isinstance(value, int) or isinstance(value, bool):
            key = path.rsplit(".", 1)[-1]
            self.add(path, f"expected an integer, got {type(value).__name__} {value!r}",
                     f"write `{key}` as an integer, e.g. {key}: {max(default, low) if example is None else example}")
            return default
        if value < low:
            self.add(path, f"must be ≥ {low}, got {value}", f"use {path.rsplit('.', 1)[-1]} ≥ {low}")
        return value

    def hook(self, value: Any, path: str) -> str | None:
        if value is None:
            return None
        problem = check_hook_ref(value, self.base_dir)
        if problem:
            self.add(path, f"hook {value!r} {problem}", unfound_hook_hint(value))
            return None
        return value

    def args(self, section: str, value: Any, path: str) -> dict:
        args = self.mapping(value, path, tuple(value or {}) if isinstance(value, dict) else ())
        fields = known_args(section)
        out = {}
        for name, raw in args.items():
            plain = coerce(fields.get(name, "any"), raw)
            self.extend(check_value(section, name, plain, f"{path}.{name}", allow_range=False))
            out[name] = plain
        return out

    def source(self, value: Any, path: str) -> dict | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = {"path": value}
        if not isinstance(value, dict):
            self.add(path, f"expected a data source, got {type(value).__name__} {value!r}",
                     "e.g. {path: data/train.jsonl} or {hub: org/dataset, split: train}")
            return {}
        src = self.mapping(value, path, SOURCE_KEYS)
        if ("path" in src) == ("hub" in src):
            self.add(path, "give exactly one of `path` (a local JSONL/CSV/Parquet file) or `hub` (a datasets id)", "")
        for key, example in (("path", "data/train.jsonl"), ("hub", "org/dataset"), ("split", "train")):
            if key in src and (not isinstance(src[key], str) or not src[key].strip()):
                self.add(f"{path}.{key}", f"expected text, got {type(src[key]).__name__} {src[key]!r}",
                         f"e.g. {key}: {example}")
        if isinstance(src.get("path"), str) and src["path"].strip():
            self._data_file(src, path)
        if "path" in src and src.get("split") is not None:
            self.add(f"{path}.split", "`split` applies to `hub:` datasets only; a local file has no splits",
                     "remove it, or point `path` at the file that holds that split")
        select = src.get("select")
        if select is not None and not (isinstance(select, list) and len(select) == 2
                                       and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                               for v in select) and select[0] < select[1]):
            self.add(f"{path}.select", f"expected [start, end) with 0 ≤ start < end, got {select!r}", "e.g. select: [0, 128]")
        if src.get("shuffle_seed") is not None:
            self.integer(src["shuffle_seed"], f"{path}.shuffle_seed", 0, 0)
        return src

    def _data_file(self, src: dict, path: str) -> None:
        from rftui.data.sources import SUPPORTED_SUFFIXES

        file = (self.base_dir / Path(src["path"]).expanduser()).resolve()
        hint = "check the path (it is relative to the YAML file)"
        if file.is_dir():
            self.add(f"{path}.path", f"{file} is a folder, not a data file", f"name a {', '.join(SUPPORTED_SUFFIXES)} file")
        elif not file.is_file():
            self.add(f"{path}.path", f"data file {file} does not exist", hint)
        elif file.suffix.lower() not in SUPPORTED_SUFFIXES:
            self.add(f"{path}.path", f"data file {file} has an unsupported type {file.suffix or '(none)'!r}",
                     f"use a {', '.join(SUPPORTED_SUFFIXES)} file")
        src["path"] = str(file)

    def space(self, value: Any, path: str, random: bool) -> dict:
        keys = SPACE_KEYS if random else tuple(k for k in SPACE_KEYS if k not in ("num_runs", "seed"))
        space = self.mapping(value, path, keys)
        out: dict[str, Any] = {}
        for section in ("training", "generation"):
            if section in space:
                out[section] = self._axes(section, space[section], f"{path}.{section}", random)
        if "model" in space:
            model = self.mapping(space["model"], f"{path}.model", ("name",))
            if "name" in model:
                out["model_name"] = self._choices(model["name"], f"{path}.model.name", random)
        if "lora" in space:
            lora = space["lora"]
            if isinstance(lora, list):
                out["lora_list"] = [self.args("lora", item, f"{path}.lora[{i}]") for i, item in enumerate(lora)]
                if not lora:
                    self.add(f"{path}.lora", "an empty list of LoRA configs", "give at least one")
            else:
                out["lora"] = self._axes("lora", lora, f"{path}.lora", random)
        if random:
            out["num_runs"] = self.integer(space.get("num_runs"), f"{path}.num_runs", 0, 1, example=8)
            if space.get("num_runs") is None:
                self.add(f"{path}.num_runs", "`num_runs` is required for random search", "e.g. num_runs: 8")
            out["seed"] = None if space.get("seed") is None else \
                self.integer(space["seed"], f"{path}.seed", 0, 0, example=42)
        return out

    def _choices(self, raw: Any, path: str, random: bool) -> Any:
        if isinstance(raw, dict) and "low" in raw:
            if not random:
                self.add(path, "a range needs random search", "use `random:` instead of `grid:`, or list the values")
                return List([raw.get("low")])
            extra = set(raw) - {"low", "high", "log", "dtype"}
            if extra:
                self.add(path, f"unknown range keys {sorted(extra)}", "a range has low, high, log, dtype")
            return Range(coerce("float", raw.get("low")), coerce("float", raw.get("high")),
                         log=bool(raw.get("log", False)), dtype=raw.get("dtype", "float"))
        if not isinstance(raw, list):
            self.add(path, f"expected a list of choices, got {raw!r}",
                     "write the choices as a list, e.g. [1e-3, 1e-4]; fixed values belong in the top-level section")
            return List([raw])
        return List(raw)

    def _axes(self, section: str, raw: Any, path: str, random: bool) -> dict:
        axes = {}
        fields = known_args(section)
        for name, choices in self.mapping(raw, path, tuple(raw or {}) if isinstance(raw, dict) else ()).items():
            knob = self._choices(choices, f"{path}.{name}", random)
            if isinstance(knob, List):
                knob = List([coerce(fields.get(name, "any"), v) for v in knob.values])
            self.extend(check_value(section, name, knob, f"{path}.{name}", allow_range=random))
            axes[name] = knob
        return axes


def _check_model(r: _Reader, model: dict) -> None:
    """What the model loader would refuse in every run's worker, said at its line instead."""
    from rftui.training.model_loading import dtype_problem

    if model.get("type") is not None and model["type"] != "causal_lm":
        r.add("model.type", f"unknown model type {model['type']!r}", "use causal_lm (the one type rftui trains), "
              "or leave `type` out")
    found = dtype_problem(model.get("kwargs"))
    if found is not None:
        r.add(f"model.kwargs.{found[0]}", found[1], "")


def parse_experiment(text: str, file: str = "<config>", base_dir: Path | None = None) -> ExperimentSpec:
    """An ExperimentSpec from YAML text; raises ConfigError listing every problem."""
    base = (base_dir or Path(".")).resolve()
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        reason = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([Problem("", f"malformed YAML: {reason}", "fix the syntax at that line", file, line)]) from None
    r = _Reader(file, text, base)
    for dup in duplicate_keys(text):
        key = dup.path.rsplit(".", 1)[-1]
        r.add(dup.path, f"duplicate key `{key}`: given on line {dup.first} and again on line {dup.line}",
              "keep one of them (YAML would silently use the last)", line=dup.line)
    top = r.mapping(doc, "", TOP_KEYS, required=("name", "model", "data"))
    name = top.get("name")
    problem = None if name is None else name_problem(name)
    if problem is not None:
        r.add(problem.path, problem.message, problem.hint)
    trainer = trainer_name(top.get("trainer", "SFT"))
    if trainer not in TRAINER_TYPES:
        r.add("trainer", f"unknown trainer type {trainer!r}", f"use one of: {', '.join(TRAINER_TYPES)}")
    num_chunks = r.integer(top.get("num_chunks"), "num_chunks", 4, 1)
    seed = r.integer(top.get("seed"), "seed", 42, 0)
    raw_model = {"name": top["model"]} if isinstance(top.get("model"), str) else top.get("model")
    model = r.mapping(raw_model, "model", MODEL_KEYS, required=("name",) if "model" in top else ())
    if model.get("kwargs") is not None and not isinstance(model["kwargs"], dict):
        r.add("model.kwargs", "expected a mapping", "e.g. kwargs: {torch_dtype: auto}")
    if model.get("tokenizer_kwargs") is not None:
        r.extend(tokenizer_kwargs_problems(model["tokenizer_kwargs"], "model.tokenizer_kwargs",
                                           "e.g. tokenizer_kwargs: {use_fast: true}"))
    _check_model(r, model)
    data = r.mapping(top.get("data"), "data", DATA_KEYS, required=("train",) if "data" in top else ())
    train_src = r.source(data.get("train"), "data.train")
    eval_src = r.source(data.get("eval"), "data.eval")
    formatting = r.hook(data.get("formatting"), "data.formatting")
    for key in ("system_prompt", "prompt_field", "completion_field"):
        value = data.get(key)
        if key in data and not (isinstance(value, str) and (value.strip() or key == "system_prompt")) and not (
                key == "system_prompt" and value is None):
            r.add(f"data.{key}", f"expected text, got {type(value).__name__} {value!r}",
                  "a column name, e.g. prompt_field: question" if key != "system_prompt"
                  else "e.g. system_prompt: You are a helpful assistant. (null for none)")
    training = r.args("training", top.get("training"), "training")
    lora = None if top.get("lora") is None and "lora" in top else r.args("lora", top.get("lora"), "lora")
    generation = r.args("generation", top.get("generation"), "generation")
    evals = r.mapping(top.get("eval"), "eval", EVAL_KEYS)
    metrics = r.hook(evals.get("metrics"), "eval.metrics")
    num_samples = r.integer(evals.get("num_samples"), "eval.num_samples", 8, 0)
    create = r.hook(model.get("create"), "model.create")
    ui = r.mapping(top.get("ui"), "ui", UI_KEYS)
    r.extend(check_keymap(ui.get("keymap"), "ui.keymap"))
    if "grid" in top and "random" in top:
        r.add("random", "give either `grid:` or `random:`, not both", "")
    is_random = "random" in top
    space = r.space(top.get("random" if is_random else "grid"), "random" if is_random else "grid", is_random)
    if r.problems:
        raise ConfigError(sorted(r.problems, key=lambda p: p.line or 0))

    training_args = RFSFTConfig(**{**training, **space.get("training", {})})
    if "lora_list" in space:
        peft = List([RFLoraConfig(**{**(lora or {}), **item}) for item in space["lora_list"]])
    elif "lora" in space or lora is not None:
        peft = RFLoraConfig(**{**(lora or {}), **space.get("lora", {})})
    else:
        peft = None
    config = RFModelConfig(
        model_name=space.get("model_name", model["name"]), tokenizer=model.get("tokenizer"),
        tokenizer_kwargs=model.get("tokenizer_kwargs") or {},
        model_type=model.get("type", "causal_lm"), model_kwargs=model.get("kwargs") or {},
        formatting_func=formatting, compute_metrics=metrics,
        generation_config={**generation, **space.get("generation", {})},
        training_args=training_args, peft_config=peft,
    )
    space_name = "random" if is_random else "grid"
    axes = space.get("training", {})
    half = half_precision_problem(f"{space_name}.training.fp16" if "fp16" in axes else "training.fp16",
                                  axes.get("fp16", training.get("fp16")), peft, model.get("kwargs"),
                                  f"model: {{kwargs: {{{dtype_key(model.get('kwargs'))}: float32}}}}", "a `lora:` section")
    if half is not None:
        r.add(half.path, half.message, half.hint)
        raise ConfigError(r.problems)
    if is_random:
        group = RFRandomSearch(config, num_runs=space["num_runs"], seed=space.get("seed") or seed, trainer_type=trainer)
    else:
        group = RFGridSearch(config, trainer_type=trainer)
    try:
        runs = tuple(expand(group))
    except ConfigError as exc:  # the search's own problems, placed at their YAML keys
        for problem in exc.problems:
            hint = problem.hint.replace("RFGridSearch", "a `grid:` section")
            r.add(f"random.{problem.path}" if is_random else problem.path, problem.message, hint)
        raise ConfigError(r.problems) from None
    return ExperimentSpec(
        name=name, runs=runs, num_chunks=num_chunks, seed=seed, trainer_type=trainer,
        data=DataSpec(train=train_src, eval=eval_src, formatting=formatting,
                      system_prompt=data.get("system_prompt", DEFAULT_SYSTEM_PROMPT),
                      prompt_field=data.get("prompt_field", "instruction"),
                      completion_field=data.get("completion_field", "response"), base_dir=str(base)),
        workdir=top.get("workdir") or DEFAULT_WORKDIR, tracking_uri=top.get("tracking_uri"),
        create_model=create, eval_num_samples=num_samples, ui=ui, source_file=file,
    )


def load_experiment_file(path: str | Path) -> ExperimentSpec:
    """Read and validate an experiment YAML file."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError([Problem("", f"config file {file} does not exist",
                                   "check the path, e.g. sample_configs/chatqa_lite.yaml", str(file))])
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem("", f"cannot read {file}: {exc}", "", str(file))]) from None
    return parse_experiment(text, str(file), file.resolve().parent)
