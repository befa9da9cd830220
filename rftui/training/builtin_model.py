"""The built-in model `rftui/tiny-llama` (loading any model by name: rftui.training.model_loading).

`rftui/tiny-llama` is made locally from the bundled customer-support corpus: a byte-level BPE
tokenizer with a chat template, and a small Llama-architecture causal LM briefly pretrained on the
corpus rendered through that template. It is built once (deterministically: fixed seed, one
thread) into ``${RFTUI_CACHE:-~/.cache/rftui}/models/tiny-llama-<recipe-hash>/`` and loaded from
there with the ordinary ``from_pretrained`` calls afterwards, so a user's ``create_model_fn`` can
load it with ``AutoModelForCausalLM.from_pretrained(resolve_model_path("rftui/tiny-llama"))``.

Chat format (one token per marker, markers are special tokens)::

    <|system|>\\n{content}<|end|><|user|>\\n{content}<|end|><|assistant|>\\n{content}<|end|>

and the generation prompt is ``<|assistant|>\\n``. Newlines are always single tokens (they are
split off before byte-level BPE), and every marker is a special token, so a prompt rendered with the
generation prompt is always a token prefix of the prompt followed by the completion, and only the
completion (assistant content + ``<|end|>``) is labelled by TRL's prompt/completion SFT path. The
assistant turn is wrapped in ``{% generation %}`` so ``assistant_only_loss=True`` works too.

Nothing here prints; progress goes to an optional callback.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from rftui.errors import ModelLoadError
from rftui.training import builtin_tokenizer

TINY_LLAMA = "rftui/tiny-llama"
BUILTIN_MODELS: tuple[str, ...] = (TINY_LLAMA,)

SYSTEM_PROMPT = (
    "You are a helpful and friendly customer support assistant. "
    "Please answer the user's query to the best of your ability."
)

PAD_TOKEN, SPECIAL_TOKENS = builtin_tokenizer.PAD_TOKEN, builtin_tokenizer.SPECIAL_TOKENS  # used by loaders, tests
CHAT_TEMPLATE = builtin_tokenizer.CHAT_TEMPLATE
_render = builtin_tokenizer.render_chat


# Everything that determines the built artefact. Bump BUILD_VERSION when the build code changes.
BUILD_VERSION = 1
RECIPE: dict[str, Any] = {
    "build_version": BUILD_VERSION,
    "vocab_size": 2048,
    "min_frequency": 2,
    "hidden_size": 128,
    "intermediate_size": 384,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "max_position_embeddings": 512,
    "rope_theta": 10000.0,
    "rms_norm_eps": 1e-5,
    "initializer_range": 0.02,
    "seed": 1234,
    "pretrain_steps": 120,
    "batch_size": 8,
    "block_size": 128,
    "learning_rate": 3e-3,
    "warmup_steps": 10,
    "min_lr_ratio": 0.1,
    "weight_decay": 0.01,
    "grad_clip": 1.0,
    "system_prompt": SYSTEM_PROMPT,
    "chat_template": CHAT_TEMPLATE,
}

_MARKER_FILE = "rftui_builtin.json"


# ----------------------------------------------------------------------------------------- names


def is_builtin(name: str | os.PathLike | None) -> bool:
    """Whether `name` names a model that rftui builds itself (no network needed)."""
    return isinstance(name, str) and name.strip() in BUILTIN_MODELS


def cache_root() -> Path:
    """``$RFTUI_CACHE`` or ``~/.cache/rftui``."""
    env = os.environ.get("RFTUI_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "rftui"


def _corpus_file() -> Path:
    from rftui.resources import sample_data_file

    return sample_data_file()


def _read_corpus_bytes() -> bytes:
    path = _corpus_file()
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ModelLoadError(
            f"Cannot build the built-in model {TINY_LLAMA!r}: its bundled corpus {str(path)!r} "
            f"cannot be read ({exc.strerror or exc}). Reinstall rftui, or use another model."
        ) from exc


def recipe_hash(corpus: bytes | None = None) -> str:
    """Short hash of the recipe and the corpus bytes: the cache key of the built model."""
    if corpus is None:
        corpus = _read_corpus_bytes()
    h = hashlib.sha256()
    h.update(json.dumps(RECIPE, sort_keys=True).encode("utf-8"))
    h.update(b"\0corpus\0")
    h.update(corpus)
    return h.hexdigest()[:16]


def builtin_dir(name: str = TINY_LLAMA) -> Path:
    """Where the built-in model `name` lives (or will live) in the cache."""
    _check_builtin(name)
    return cache_root() / "models" / f"tiny-llama-{recipe_hash()}"


def _check_builtin(name: str) -> None:
    if not is_builtin(name):
        raise ModelLoadError(
            f"{name!r} is not a built-in model; the built-in models are: {', '.join(BUILTIN_MODELS)}."
        )


def _is_complete(path: Path) -> bool:
    return (path / _MARKER_FILE).is_file()


# ----------------------------------------------------------------------------------------- build


def ensure_builtin(name: str, progress: Callable[[str], None] | None = None) -> Path:
    """The cached directory of built-in model `name`, building it first if it is missing.

    Safe to call from several processes at once: one builds (under an ``fcntl`` lock, into a
    temporary directory that is renamed into place when complete), the others wait and reuse it.
    """
    name = name.strip() if isinstance(name, str) else name
    _check_builtin(name)
    report = progress or (lambda _msg: None)
    corpus = _read_corpus_bytes()
    final = cache_root() / "models" / f"tiny-llama-{recipe_hash(corpus)}"
    if _is_complete(final):
        return final

    lock_path = final.parent / f".{final.name}.lock"
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        lock_file = open(lock_path, "a+")
    except OSError as exc:
        raise ModelLoadError(
            f"Cannot build the built-in model {name!r}: its cache folder {str(final.parent)!r} is not "
            f"writable ({exc.strerror or exc}). Point RFTUI_CACHE at a writable folder."
        ) from exc
    with lock_file:
        try:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            report(f"waiting for another process to build {name}")
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX)
        try:
            if _is_complete(final):
                return final
            if final.exists():  # a leftover without its marker: never a finished build
                shutil.rmtree(final, ignore_errors=True)
            for stale in final.parent.glob(f".{final.name}.tmp-*"):  # from a builder that was killed
                shutil.rmtree(stale, ignore_errors=True)
            report(f"building {name} (first use only)")
            tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
            try:
                os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache may be shared
                _build(tmp, corpus, report)
                os.replace(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            report(f"{name} ready")
            return final
        finally:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)


def _corpus_rows(corpus: bytes) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for lineno, line in enumerate(corpus.decode("utf-8").splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ModelLoadError(
                f"Cannot build {TINY_LLAMA!r}: line {lineno} of its bundled corpus is not JSON ({exc.msg})."
            ) from exc
        instruction, response = row.get("instruction"), row.get("response")
        if isinstance(instruction, str) and isinstance(response, str) and instruction and response:
            rows.append((instruction, response))
    if not rows:
        raise ModelLoadError(f"Cannot build {TINY_LLAMA!r}: its bundled corpus has no instruction/response rows.")
    return rows


def _build(out_dir: Path, corpus: bytes, report: Callable[[str], None]) -> None:
    import torch

    t0 = time.perf_counter()
    rows = _corpus_rows(corpus)
    system = RECIPE["system_prompt"]
    texts = [_render(system, q, a) for q, a in rows]

    report(f"training tokenizer on {len(rows)} corpus rows")
    with builtin_tokenizer.tokenizers_serial():
        backend = builtin_tokenizer.train_tokenizer([t for q, a in rows for t in (q, a)] + [system],
                                                    RECIPE["vocab_size"], RECIPE["min_frequency"])
        tokenizer = builtin_tokenizer.wrap_tokenizer(backend, RECIPE["max_position_embeddings"])
        ids = [backend.encode(text).ids for text in texts]

    prev_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RECIPE["seed"])
            model, losses = _pretrain(tokenizer, ids, report)
    finally:
        torch.set_num_threads(prev_threads)

    report("saving")
    with quiet_loading():
        model.save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)
    n_params = sum(p.numel() for p in model.parameters())
    lengths = sorted(len(x) for x in ids)
    info = {
        "name": TINY_LLAMA,
        "recipe_hash": recipe_hash(corpus),
        "recipe": RECIPE,
        "corpus_rows": len(rows),
        "row_tokens": {
            "min": lengths[0],
            "median": lengths[len(lengths) // 2],
            "max": lengths[-1],
            "mean": round(sum(lengths) / len(lengths), 1),
        },
        "vocab_size": len(tokenizer),
        "parameters": n_params,
        "pretrain_losses": [round(x, 6) for x in losses],
        "build_seconds": round(time.perf_counter() - t0, 2),
    }
    # the marker is written last: a directory without it is not a finished build
    (out_dir / _MARKER_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


def recipe_config(vocab_size: int, pad_token_id: int | None = None, eos_token_id: int | None = None):
    """The LlamaConfig of the built-in model (its shape comes from RECIPE, its vocabulary from its tokenizer)."""
    from transformers import LlamaConfig

    r = RECIPE
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=r["hidden_size"],
        intermediate_size=r["intermediate_size"],
        num_hidden_layers=r["num_hidden_layers"],
        num_attention_heads=r["num_attention_heads"],
        num_key_value_heads=r["num_key_value_heads"],
        max_position_embeddings=r["max_position_embeddings"],
        rms_norm_eps=r["rms_norm_eps"],
        initializer_range=r["initializer_range"],
        rope_parameters={"rope_type": "default", "rope_theta": r["rope_theta"]},
        tie_word_embeddings=True,
        pad_token_id=pad_token_id,
        eos_token_id=eos_token_id,
        bos_token_id=None,
        use_cache=True,
    )


def _pretrain(tokenizer, ids: list[list[int]], report: Callable[[str], None]):
    import torch
    from transformers import GenerationConfig, LlamaForCausalLM

    r = RECIPE
    config = recipe_config(len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )

    # One token stream of all rows (each ends with <|end|>), cut into random blocks.
    stream = torch.tensor([t for row in ids for t in row], dtype=torch.long)
    block, batch, steps = r["block_size"], r["batch_size"], r["pretrain_steps"]
    if stream.numel() <= block + 1:
        stream = stream.repeat(math.ceil((block + 2) / max(1, stream.numel())))
    gen = torch.Generator().manual_seed(r["seed"])

    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": r["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}],
        lr=r["learning_rate"],
        betas=(0.9, 0.95),
    )

    def lr_at(step: int) -> float:
        if step < r["warmup_steps"]:
            return (step + 1) / r["warmup_steps"]
        frac = (step - r["warmup_steps"]) / max(1, steps - r["warmup_steps"])
        return r["min_lr_ratio"] + (1 - r["min_lr_ratio"]) * 0.5 * (1 + math.cos(math.pi * frac))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    model.train()
    losses: list[float] = []
    for step in range(steps):
        starts = torch.randint(0, stream.numel() - block - 1, (batch,), generator=gen)
        x = torch.stack([stream[s : s + block] for s in starts.tolist()])
        out = model(input_ids=x, labels=x)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), r["grad_clip"])
        opt.step()
        sched.step()
        losses.append(float(out.loss.detach()))
        if step == 0 or (step + 1) % 20 == 0 or step + 1 == steps:
            report(f"pretraining {step + 1}/{steps} (loss {losses[-1]:.2f})")
    model.eval()
    return model, losses


def builtin_info(name: str = TINY_LLAMA) -> dict:
    """The build record (recipe, sizes, pretrain losses, build time) of a built model."""
    path = ensure_builtin(name)
    return json.loads((path / _MARKER_FILE).read_text(encoding="utf-8"))


# ----------------------------------------------------------------------------------------- loading


def resolve_model_path(name: str) -> str:
    """A built-in name becomes its cached local directory (built if needed); anything else is unchanged."""
    if is_builtin(name):
        return str(ensure_builtin(name.strip()))
    return name


@contextlib.contextmanager
def quiet_loading():
    """Hide transformers' progress bars while loading or saving (this module never prints)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    if was_enabled:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
