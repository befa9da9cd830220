"""Evaluation that leaves training untouched: eval loss as transformers' evaluation_loop computes it, and greedy or
seeded-sampling generation over eval prompts for ROUGE/BLEU. Callers wrap both in `preserved_rng()`."""
from __future__ import annotations

import contextlib
from typing import Any, Mapping

import numpy as np
import torch

# Keys of RunSpec.generation that configure us rather than `model.generate`.
GENERATION_OWN_KEYS = ("num_samples", "batch_size", "seed", "enabled")


def autocast_for(device: str, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None or not device.startswith("cuda"):
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=dtype)


def eval_loss(trainer: Any, model: Any, amp_dtype: torch.dtype | None = None) -> dict[str, float]:
    """eval_loss over the whole eval set, like `Trainer.evaluation_loop`: every batch's mean loss is repeated
    `eval_batch_size` times and averaged; TRL's eval token metrics are averaged like `SFTTrainer.log` does."""
    args = trainer.args
    was_training = model.training
    dataloader = trainer.get_eval_dataloader()
    model.eval()
    losses = []
    trainer._metrics["eval"].clear()
    try:
        for inputs in dataloader:
            with autocast_for(str(args.device), amp_dtype):
                loss, _, _ = trainer.prediction_step(model, inputs, prediction_loss_only=True)
            if loss is not None:
                losses.append(loss.detach().float().repeat(args.eval_batch_size).cpu().numpy())
    finally:
        model.train(was_training)
    metrics: dict[str, float] = {}
    if losses:
        all_losses = np.concatenate(losses)
        finite = np.isfinite(all_losses)
        if args.logging_nan_inf_filter and finite.any():
            all_losses = all_losses[finite]
        metrics["eval_loss"] = all_losses.mean().item()
    for key, values in trainer._metrics["eval"].items():
        if values and key != "num_tokens":
            metrics[f"eval_{key}"] = float(sum(values) / len(values))
    trainer._metrics["eval"].clear()
    return metrics


def prompt_and_reference(row: Mapping[str, Any]) -> tuple[Any, str]:
    """The prompt (messages or text) to generate from and the reference completion text of a data row."""
    prompt, completion = row.get("prompt"), row.get("completion")
    if prompt is None or completion is None:
        if "messages" in row:
            messages = list(row["messages"])
            cut = max(i for i, m in enumerate(messages) if m.get("role") != "assistant") + 1
            prompt, completion = messages[:cut], messages[cut:]
        else:
            raise ValueError("a row needs 'prompt' and 'completion' (or 'messages') to generate from")
    if isinstance(completion, list):
        reference = "\n".join(str(m.get("content", "")) for m in completion if m.get("role", "assistant") == "assistant")
    else:
        reference = str(completion)
    return prompt, reference.strip()


def can_generate(row: Mapping[str, Any]) -> bool:
    """Whether a data row has a prompt to generate from and a reference to compare with (plain text has not)."""
    if row.get("prompt") is not None and row.get("completion") is not None:
        return True
    messages = row.get("messages")
    return isinstance(messages, list) and any(m.get("role") != "assistant" for m in messages if isinstance(m, Mapping))


def _prompt_ids(tokenizer: Any, prompt: Any) -> list[int]:
    if isinstance(prompt, list):
        out = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True)
        ids = out["input_ids"] if isinstance(out, Mapping) or hasattr(out, "keys") else out
    else:
        ids = tokenizer(str(prompt), add_special_tokens=True)["input_ids"]
    return list(ids)


@torch.no_grad()
def generate_predictions(model: Any, tokenizer: Any, rows: list[Mapping[str, Any]], generation: Mapping[str, Any],
                         *, device: str, amp_dtype: torch.dtype | None = None,
                         default_seed: int = 0, max_length: int | None = None) -> tuple[list[str], list[str]]:
    """Generate completions for up to `generation["num_samples"]` (default 8) rows, left-padded batches of
    `generation["batch_size"]` (default 8). Sampling draws from a generator seeded with `generation["seed"]`
    (default: the run's seed) so it is reproducible; the caller restores the training RNG afterwards.
    With `max_length` (the training one), a longer prompt keeps its last tokens so that prompt and answer fit in
    it: the model never trained on more, and an untruncated long prompt could need more memory than there is."""
    num = int(generation.get("num_samples", 8))
    batch_size = max(1, int(generation.get("batch_size", 8)))
    gen_kwargs = {k: v for k, v in generation.items() if k not in GENERATION_OWN_KEYS}
    gen_kwargs.setdefault("max_new_tokens", 64)
    gen_kwargs.setdefault("do_sample", False)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    gen_kwargs.setdefault("pad_token_id", pad_id)
    if tokenizer.eos_token_id is not None:
        gen_kwargs.setdefault("eos_token_id", tokenizer.eos_token_id)
    keep = max(int(max_length) - int(gen_kwargs["max_new_tokens"]), 1) if max_length else None
    pairs = [prompt_and_reference(r) for r in rows[: max(0, num)]]
    predictions: list[str] = []
    references = [ref for _, ref in pairs]
    torch.manual_seed(int(generation.get("seed", default_seed)))
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(pairs), batch_size):
            encoded = [_prompt_ids(tokenizer, p) for p, _ in pairs[start:start + batch_size]]
            if keep is not None:
                encoded = [ids[-keep:] for ids in encoded]  # the end holds the question and the generation prompt
            width = max(len(ids) for ids in encoded)
            input_ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
            attention = torch.zeros((len(encoded), width), dtype=torch.long)
            for i, ids in enumerate(encoded):  # left padding, as decoder-only generation needs
                input_ids[i, width - len(ids):] = torch.tensor(ids, dtype=torch.long)
                attention[i, width - len(ids):] = 1
            with autocast_for(device, amp_dtype):
                out = model.generate(input_ids=input_ids.to(device), attention_mask=attention.to(device), **gen_kwargs)
            for row in out[:, width:]:
                predictions.append(tokenizer.decode(row.tolist(), skip_special_tokens=True).strip())
    finally:
        model.train(was_training)
    return predictions, references
