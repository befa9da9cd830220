"""A toy causal LM and word-level chat tokenizer, built in memory, for tests and benchmarks of the training host.

Nothing is downloaded or cached: `toy_loader` has the model-loader signature the `TrainingHost`
expects (`loader(name, model_kwargs=None, tokenizer_name=None) -> (model, tokenizer)`) and builds a
deterministic random `LlamaForCausalLM` (hidden 64, 2 layers, 4 heads by default) every call, so
two calls give bitwise-identical weights. `write_toy_split` writes prompt/completion JSONL rows
like the experiment's data snapshots.
"""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Mapping

WORDS = (
    "hello world how are you i am fine thanks order refund cancel please help my account password "
    "reset the a to is what can do ship track card pay bill email phone change address when where "
    "why item box late lost new old"
).split()
SPECIAL = ("<pad>", "<unk>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>")
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def make_toy_tokenizer():
    """A word-level fast tokenizer over `WORDS` with chat markers as special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIAL + tuple(WORDS))}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.decoder = decoders.WordPiece(prefix="##")  # joins words with single spaces
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        unk_token="<unk>",
        eos_token="<|end|>",
        additional_special_tokens=list(SPECIAL[2:]),
    )
    tok.chat_template = CHAT_TEMPLATE
    return tok


def make_toy_model(tokenizer, *, seed: int = 0, hidden_size: int = 64, num_hidden_layers: int = 2,
                   num_attention_heads: int = 4, intermediate_size: int = 128):
    """A random LlamaForCausalLM sized for `tokenizer`; same seed, same weights."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=num_attention_heads,
        max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=False,
    )
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    finally:
        torch.random.set_rng_state(state)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def toy_loader(name: str, model_kwargs: Mapping[str, Any] | None = None, tokenizer_name: str | None = None):
    """Model-loader hook: any name gives the toy model; `model_kwargs` may hold `seed` and size knobs."""
    kwargs = dict(model_kwargs or {})
    tok = make_toy_tokenizer()
    return make_toy_model(tok, **kwargs), tok


def toy_rows(n: int, *, seed: int = 0, min_words: int = 3, max_words: int = 8) -> list[dict]:
    """`n` conversational prompt/completion rows of random toy words; the answer echoes part of the question."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        question = [rng.choice(WORDS) for _ in range(rng.randint(min_words, max_words))]
        answer = question[: max(2, len(question) // 2)] + [rng.choice(WORDS) for _ in range(rng.randint(1, 3))]
        rows.append({
            "prompt": [
                {"role": "system", "content": "help"},
                {"role": "user", "content": " ".join(question)},
            ],
            "completion": [{"role": "assistant", "content": " ".join(answer)}],
        })
    return rows


def write_toy_split(path: str | Path, n: int, *, seed: int = 0) -> str:
    """Write `toy_rows(n, seed=seed)` as JSONL to `path`; returns the path as a string."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for row in toy_rows(n, seed=seed):
            fh.write(json.dumps(row) + "\n")
    return str(path)
