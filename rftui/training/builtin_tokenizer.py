"""The built-in model's tokenizer: chat markers, the chat template, and the byte-level BPE trained on the corpus
(the model itself: rftui.training.builtin_model)."""
from __future__ import annotations

import contextlib
import os

PAD_TOKEN = "<|pad|>"
END_TOKEN = "<|end|>"
SYSTEM_TOKEN = "<|system|>"
USER_TOKEN = "<|user|>"
ASSISTANT_TOKEN = "<|assistant|>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD_TOKEN, END_TOKEN, SYSTEM_TOKEN, USER_TOKEN, ASSISTANT_TOKEN)

# One line, so no stray whitespace can end up in the rendering.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] not in ['system', 'user', 'assistant'] -%}"
    "{{- raise_exception('rftui/tiny-llama chat template: unsupported role ' + message['role']) -}}"
    "{%- endif -%}"
    "{{- '<|' + message['role'] + '|>\\n' -}}"
    "{%- if message['role'] == 'assistant' -%}"
    "{%- generation -%}{{- message['content'] + '<|end|>' -}}{%- endgeneration -%}"
    "{%- else -%}"
    "{{- message['content'] + '<|end|>' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|assistant|>\\n' -}}{%- endif -%}"
)


def render_chat(system: str, user: str, assistant: str | None) -> str:
    """The chat template, in Python (kept identical to CHAT_TEMPLATE; the tests check they agree)."""
    text = f"{SYSTEM_TOKEN}\n{system}{END_TOKEN}{USER_TOKEN}\n{user}{END_TOKEN}{ASSISTANT_TOKEN}\n"
    if assistant is not None:
        text += f"{assistant}{END_TOKEN}"
    return text


def train_tokenizer(texts: list[str], vocab_size: int, min_frequency: int):
    """A byte-level BPE tokenizer (the `tokenizers` object) trained on `texts`."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            # a newline is always its own token, so "<|assistant|>\n" never merges with the content after it
            pre_tokenizers.Split(Regex("\n"), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    return tok


def wrap_tokenizer(backend, max_length: int):
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD_TOKEN,
        eos_token=END_TOKEN,
        bos_token=None,
        unk_token=None,
        additional_special_tokens=[SYSTEM_TOKEN, USER_TOKEN, ASSISTANT_TOKEN],
        model_max_length=max_length,
        padding_side="right",
        clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


@contextlib.contextmanager
def tokenizers_serial():
    """Keep the `tokenizers` library off its thread pool while building.

    Once it has used parallelism, a later fork (worker processes) makes it print a warning to
    stderr and disable itself; building serially keeps the process fork-clean. The result is the
    same either way (the build is deterministic).
    """
    var = "TOKENIZERS_PARALLELISM"
    old = os.environ.get(var)
    os.environ[var] = "false"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(var, None)
        else:
            os.environ[var] = old
