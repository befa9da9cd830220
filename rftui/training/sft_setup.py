"""One run's TRL pieces: its sanitized `SFTConfig`, the data snapshots as prepared by TRL (cached per worker), and
the `SFTTrainer` whose dataloader, loss, optimizer and scheduler the host drives."""
from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from rftui.errors import DataError, RftuiError

# Keys the engine owns: the lead computes the run length, we checkpoint and evaluate ourselves.
_OWNED = {
    "output_dir", "logging_dir", "report_to", "run_name", "save_strategy", "save_steps", "save_total_limit",
    "save_only_model", "load_best_model_at_end", "metric_for_best_model", "greater_is_better", "push_to_hub",
    "hub_model_id", "hub_strategy", "hub_token", "hub_private_repo", "resume_from_checkpoint", "overwrite_output_dir",
    "do_train", "do_eval", "do_predict", "max_steps", "num_train_epochs", "use_cpu", "disable_tqdm", "eval_on_start",
    "warmup_ratio",
}
# SFTConfig fields that change what dataset preparation produces (the prepared-data cache key).
_PREP_FIELDS = (
    "max_length", "truncation_mode", "packing", "packing_strategy", "padding_free", "completion_only_loss",
    "assistant_only_loss", "dataset_text_field", "eos_token", "chat_template_path", "shuffle_dataset", "eval_packing",
    "dataset_kwargs",
)


@dataclass
class RunArgs:
    args: Any                      # trl.SFTConfig
    amp_dtype: torch.dtype | None  # autocast dtype on CUDA (fp16/bf16 requested), else None
    eval_strategy: str             # "no" | "steps" | "epoch" (as asked, kept out of SFTConfig)
    eval_steps: int
    warnings: list[str]


def build_sft_config(run_id: str, training: Mapping[str, Any], *, output_dir: str, total_steps: int, seed: int,
                     device: str, has_eval: bool) -> RunArgs:
    """`SFTConfig(**training)` with the engine-owned keys replaced; mixed precision is ours (autocast on CUDA,
    ignored with a warning on CPU); eval scheduling is read here and done by the host."""
    from trl import SFTConfig

    kwargs = {k: v for k, v in dict(training).items() if k not in _OWNED}
    notes: list[str] = []
    dropped = sorted(k for k in training if k in _OWNED and k not in ("max_steps", "num_train_epochs", "warmup_ratio"))
    if dropped:
        notes.append(f"run {run_id}: ignored training option(s) {', '.join(dropped)} (the engine sets them)")
    if training.get("warmup_ratio") and not training.get("warmup_steps"):
        kwargs["warmup_steps"] = float(training["warmup_ratio"])  # transformers 5: warmup_steps < 1 is a ratio
    want_fp16, want_bf16 = bool(kwargs.pop("fp16", False)), bool(kwargs.pop("bf16", False))
    on_cuda = device.startswith("cuda")
    amp_dtype = None
    if want_fp16 or want_bf16:
        if on_cuda:
            amp_dtype = torch.float16 if want_fp16 else torch.bfloat16
        else:
            notes.append(f"run {run_id}: {'fp16' if want_fp16 else 'bf16'} is ignored on {device}; training in fp32")
    eval_strategy = str(kwargs.pop("eval_strategy", kwargs.pop("evaluation_strategy", "no")) or "no").lower()
    if eval_strategy not in ("no", "steps", "epoch"):
        raise RftuiError(f"run {run_id}: eval_strategy {eval_strategy!r} must be 'no', 'steps' or 'epoch'")
    if eval_strategy != "no" and not has_eval:
        notes.append(f"run {run_id}: eval_strategy={eval_strategy} but the experiment has no eval data; not evaluating")
        eval_strategy = "no"
    eval_steps_raw = kwargs.pop("eval_steps", None)
    kwargs.update(
        output_dir=output_dir, report_to="none", save_strategy="no", eval_strategy="no", max_steps=int(total_steps),
        seed=int(seed), fp16=False, bf16=False, use_cpu=not on_cuda, disable_tqdm=True, push_to_hub=False,
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            args = _host_placed(SFTConfig)(**kwargs)
    except (TypeError, ValueError) as exc:
        raise RftuiError(f"run {run_id}: invalid training options: {exc}") from exc
    logging_steps = args.logging_steps
    if eval_steps_raw in (None, 0):
        eval_steps_raw = logging_steps
    eval_steps = _absolute_steps(eval_steps_raw, total_steps)
    return RunArgs(args=args, amp_dtype=amp_dtype, eval_strategy=eval_strategy, eval_steps=eval_steps, warnings=notes)


_PLACED_CLASSES: dict[type, type] = {}


def _host_placed(config_class: type) -> type:
    """`config_class` whose Trainer leaves the model where the host put it. A Trainer otherwise moves its whole
    model to the device when it is built, and the model is the base shared by every run of the worker: each new
    run would bring all offloaded adapters back onto the GPU, past the memory budget."""
    placed = _PLACED_CLASSES.get(config_class)
    if placed is None:
        placed = type(f"HostPlaced{config_class.__name__}", (config_class,), {
            "place_model_on_device": property(lambda self: False),
            "__doc__": config_class.__doc__,
        })
        _PLACED_CLASSES[config_class] = placed
    return placed


def _absolute_steps(value: float, total_steps: int) -> int:
    """Like TrainerState.compute_steps: a value below 1 is a fraction of the total."""
    import math

    value = float(value)
    return max(1, math.ceil(total_steps * value)) if value < 1 else int(value)


def read_jsonl(path: str) -> list[dict]:
    """Rows of a JSONL data snapshot; a bad line raises DataError naming file and line."""
    rows = []
    try:
        with open(path, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line))
                except ValueError as exc:
                    raise DataError(f"{path}:{lineno}: not valid JSON ({exc})") from exc
    except OSError as exc:
        raise DataError(f"cannot read data snapshot {path}: {exc}") from exc
    if not rows:
        raise DataError(f"data snapshot {path} has no rows")
    return rows


class PreparedDataCache:
    """Raw rows by file and TRL-prepared datasets by (file, tokenizer, preparation args), so runs sharing data and
    tokenizer tokenize it once per worker."""

    def __init__(self) -> None:
        self._rows: dict[tuple, list[dict]] = {}
        self._prepared: dict[tuple, Any] = {}

    @staticmethod
    def _file_key(path: str) -> tuple:
        st = os.stat(path)
        return (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)

    def rows(self, path: str) -> list[dict]:
        key = self._file_key(path)
        if key not in self._rows:
            self._rows[key] = read_jsonl(path)
        return self._rows[key]

    def prepared_key(self, path: str, tokenizer_key: Any, args: Any, split: str) -> tuple:
        prep = {f: _plain(getattr(args, f, None)) for f in _PREP_FIELDS}
        if getattr(args, "shuffle_dataset", False) or getattr(args, "packing", False):
            prep["seed"] = args.seed
        return (split, self._file_key(path), tokenizer_key, json.dumps(prep, sort_keys=True, default=str))

    def get(self, key: tuple) -> Any:
        return self._prepared.get(key)

    def put(self, key: tuple, dataset: Any) -> None:
        self._prepared[key] = dataset

    def clear(self) -> None:
        self._rows.clear()
        self._prepared.clear()


def _plain(value: Any) -> Any:
    return getattr(value, "value", value)


def build_trainer(model: Any, tokenizer: Any, run_args: RunArgs, *, train_path: str, eval_path: str | None,
                  tokenizer_key: Any, cache: PreparedDataCache) -> Any:
    """An `SFTTrainer` over the run's model with TRL-prepared datasets (prepared once per cache key)."""
    from datasets import Dataset
    from trl import SFTTrainer

    args = run_args.args
    train_key = cache.prepared_key(train_path, tokenizer_key, args, "train")
    eval_key = cache.prepared_key(eval_path, tokenizer_key, args, "eval") if eval_path else None
    train_ds, eval_ds = cache.get(train_key), (cache.get(eval_key) if eval_key else None)
    cached = train_ds is not None and (eval_key is None or eval_ds is not None)
    if cached:
        # Already TRL-prepared: tell TRL not to run preparation (a second pass could e.g. re-shuffle).
        args.dataset_kwargs = {**(args.dataset_kwargs or {}), "skip_prepare_dataset": True}
    else:
        rows, eval_rows = cache.rows(train_path), (cache.rows(eval_path) if eval_path else None)
        for first in (rows[0], *(eval_rows[:1] if eval_rows else ())):
            _check_chat_template(tokenizer, args, first)
        train_ds = Dataset.from_list(rows)
        eval_ds = Dataset.from_list(eval_rows) if eval_rows else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", UserWarning)
        try:
            trainer = SFTTrainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                                 processing_class=tokenizer)
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"TRL could not prepare {train_path}"
                            f"{' / ' + eval_path if eval_path else ''}: {type(exc).__name__}: {exc}") from exc
    if not cached:
        _check_not_emptied(trainer.train_dataset, "training", len(train_ds), args)
        if eval_ds is not None:
            _check_not_emptied(trainer.eval_dataset, "eval", len(eval_ds), args)
        cache.put(train_key, trainer.train_dataset)
        if eval_key is not None:
            cache.put(eval_key, trainer.eval_dataset)
    return trainer


def _check_chat_template(tokenizer: Any, args: Any, row: Mapping[str, Any]) -> None:
    """Conversational rows need the tokenizer's chat template; TRL's own message names neither model nor fix."""
    conversational = isinstance(row.get("prompt"), list) or isinstance(row.get("messages"), list)
    if not conversational or getattr(tokenizer, "chat_template", None) or getattr(args, "chat_template_path", None):
        return
    name = getattr(tokenizer, "name_or_path", "") or "the model"
    raise DataError(f"the tokenizer of {name!r} has no chat template, so the rows' chat messages cannot be turned into "
                    "text. Use a model (or model.tokenizer) that has one, such as an -Instruct or -chat variant; set "
                    "training.chat_template_path to a template file; or format the rows as plain text with a "
                    'formatting function returning {"prompt": str, "completion": str} or {"text": str}')


def _check_not_emptied(dataset: Any, split: str, given: int, args: Any) -> None:
    """TRL drops rows whose prompt alone fills max_length (nothing left to learn); all of them gone used to fail
    later with `num_samples=0` or a bare StopIteration."""
    try:
        kept = len(dataset)
    except TypeError:  # an iterable dataset: not counted
        return
    if kept == 0 and given > 0:
        raise DataError(f"all {given} {split} rows were dropped: with max_length={args.max_length} "
                        f"(training.max_length) each one's prompt fills every token, leaving no completion token to "
                        "learn from. Raise training.max_length, shorten the prompts, or set training.truncation_mode: "
                        "keep_end")


def dropped_rows(trainer: Any, cache: PreparedDataCache, train_path: str) -> tuple[int, int]:
    """(rows TRL dropped as too long, rows given) of a trainer's training data."""
    given = len(cache.rows(train_path))
    if getattr(trainer.args, "packing", False):  # packed rows are merged, not dropped
        return 0, given
    try:
        return max(given - len(trainer.train_dataset), 0), given
    except TypeError:
        return 0, given


def seed_train_sampler(dataloader: Any, seed: int) -> None:
    """Pin accelerate's SeedableRandomSampler to `seed` (it otherwise reads torch's initial seed at creation)."""
    seen = set()
    stack = [dataloader]
    while stack:
        obj = stack.pop()
        if obj is None or id(obj) in seen:
            continue
        seen.add(id(obj))
        if hasattr(obj, "initial_seed") and hasattr(obj, "set_epoch"):
            obj.initial_seed = seed
        for attr in ("batch_sampler", "sampler", "base_dataloader"):
            stack.append(getattr(obj, attr, None))
