"""The built-in model `rftui/tiny-llama`: offline build, determinism, fast reload, chat-template
masking under TRL's SFT preparation, the build lock, and the errors for unreachable models.

The model is built once per session into a temporary cache (or reused from ``$RFTUI_CACHE`` when
that is set, so a developer's machine builds it once for good).
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path

import pytest
import torch

from rftui.errors import ModelLoadError
from rftui.training import builtin_model as bm
from rftui.training import model_loading as ml

TINY = "rftui/tiny-llama"
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory) -> Path:
    """A cache directory holding the built model (built here unless $RFTUI_CACHE already has it)."""
    cache = os.environ.get("RFTUI_CACHE") or str(tmp_path_factory.mktemp("rftui-cache"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RFTUI_CACHE", cache)
        mp.setenv("HF_HUB_OFFLINE", "1")
        bm.ensure_builtin(TINY)
    return Path(cache)


@pytest.fixture(autouse=True)
def _offline_env(monkeypatch, tiny_cache):
    monkeypatch.setenv("RFTUI_CACHE", str(tiny_cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _chat(user: str, answer: str | None = None) -> list[dict]:
    msgs = [{"role": "system", "content": bm.SYSTEM_PROMPT}, {"role": "user", "content": user}]
    if answer is not None:
        msgs.append({"role": "assistant", "content": answer})
    return msgs


def _corpus_rows(n: int) -> list[dict]:
    lines = bm._corpus_file().read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines[:n]]


def test_names_and_paths(tiny_cache):
    assert bm.is_builtin(TINY) and TINY in bm.BUILTIN_MODELS
    assert not bm.is_builtin("gpt2") and not bm.is_builtin(None)
    path = Path(bm.resolve_model_path(TINY))
    assert path.parent == tiny_cache / "models" and path.name.startswith("tiny-llama-")
    assert bm.resolve_model_path("org/other-model") == "org/other-model"
    assert bm.resolve_model_path("/some/local/dir") == "/some/local/dir"
    for f in ("config.json", "model.safetensors", "generation_config.json", "tokenizer.json", "tokenizer_config.json"):
        assert (path / f).is_file(), f
    info = json.loads((path / "rftui_builtin.json").read_text())
    assert 1500 <= info["vocab_size"] <= 2100
    losses = info["pretrain_losses"]
    assert losses[-1] < losses[0] - 2.0 and min(losses) > 0.3  # learned something, not memorised


def test_builds_and_generates_offline_with_plain_from_pretrained(capfd):
    """A user's create_model_fn loads the resolved directory with the ordinary Auto classes."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = bm.resolve_model_path(TINY)
    model = AutoModelForCausalLM.from_pretrained(path, device_map="auto", torch_dtype="auto", use_cache=False)
    tok = AutoTokenizer.from_pretrained(path)
    capfd.readouterr()

    assert type(model).__name__ == "LlamaForCausalLM"
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    assert set(LORA_TARGETS) <= names
    assert tok.pad_token == "<|pad|>" and tok.eos_token == "<|end|>"
    assert model.config.eos_token_id == tok.eos_token_id == model.generation_config.eos_token_id
    assert model.generation_config.pad_token_id == tok.pad_token_id
    for special in bm.SPECIAL_TOKENS:
        assert len(tok.encode(special, add_special_tokens=False)) == 1

    enc = tok.apply_chat_template(
        _chat("how do I cancel my order?"), add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=6, do_sample=False)
    new = out[0, enc["input_ids"].shape[1]:]
    assert new.numel() >= 1
    assert isinstance(tok.decode(new, skip_special_tokens=True), str)


def test_load_is_fast_quiet_and_pads(capfd, record_property):
    ml.load_model_and_tokenizer(TINY)  # warm the import paths
    capfd.readouterr()
    t0 = time.perf_counter()
    model, tok = ml.load_model_and_tokenizer(
        TINY, model_kwargs={"device_map": "auto", "torch_dtype": "auto", "use_cache": False}
    )
    elapsed = time.perf_counter() - t0
    record_property("tiny_llama_load_s", round(elapsed, 3))
    assert elapsed < 3.0  # about 0.03 s; loose because CI machines are noisy
    assert tok.pad_token_id is not None and model.config.use_cache is False
    out, err = capfd.readouterr()
    assert out == "" and err == ""  # no progress bars or prints
    assert sum(p.numel() for p in model.parameters()) < 2_000_000


def test_ensure_builtin_reuses_cache_without_progress():
    seen: list[str] = []
    t0 = time.perf_counter()
    path = bm.ensure_builtin(TINY, progress=seen.append)
    assert time.perf_counter() - t0 < 1.0
    assert seen == [] and path == Path(bm.resolve_model_path(TINY))


def test_chat_template_matches_python_rendering():
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(bm.resolve_model_path(TINY))
    text = tok.apply_chat_template(_chat("hi there", "Hello!"), tokenize=False)
    assert text == bm._render(bm.SYSTEM_PROMPT, "hi there", "Hello!")
    prompt = tok.apply_chat_template(_chat("hi there"), tokenize=False, add_generation_prompt=True)
    assert prompt == bm._render(bm.SYSTEM_PROMPT, "hi there", None)
    assert prompt.endswith("<|assistant|>\n")
    with pytest.raises(Exception):
        tok.apply_chat_template([{"role": "tool", "content": "x"}], tokenize=False)


@pytest.mark.parametrize(
    "answer", ["Sure, happy to help.", " leading space", "\n\nleading newlines", "trailing space ", "x"]
)
def test_prompt_is_token_prefix_of_full_conversation(answer):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(bm.resolve_model_path(TINY))
    rows = [(r["instruction"], r["response"]) for r in _corpus_rows(40)] + [("what's up?\n", answer)]
    for user, resp in rows:
        prompt_ids = tok.apply_chat_template(_chat(user), add_generation_prompt=True, return_dict=True)["input_ids"]
        full_ids = tok.apply_chat_template(_chat(user, resp), return_dict=True)["input_ids"]
        assert full_ids[: len(prompt_ids)] == prompt_ids
        assert tok.decode(full_ids[len(prompt_ids):]) == resp + "<|end|>"


def test_trl_sft_labels_only_the_completion(tmp_path, caplog):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    model, tok = ml.load_model_and_tokenizer(TINY)
    rows = _corpus_rows(3)
    ds = Dataset.from_list(
        [
            {
                "prompt": _chat(r["instruction"]),
                "completion": [{"role": "assistant", "content": r["response"]}],
            }
            for r in rows
        ]
    )
    args = SFTConfig(
        output_dir=str(tmp_path / "sft"),
        report_to="none",
        max_length=256,
        per_device_train_batch_size=2,
        use_cpu=True,
        save_strategy="no",
        disable_tqdm=True,
    )
    with caplog.at_level("WARNING"):
        trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
    assert "is not a prefix" not in caplog.text

    for i, r in enumerate(rows):
        ex = trainer.train_dataset[i]
        ids, labels = ex["input_ids"], ex["labels"]
        first = next(j for j, lab in enumerate(labels) if lab != -100)
        assert all(lab != -100 for lab in labels[first:])  # one contiguous labelled tail
        assert [t for t, lab in zip(ids, labels) if lab != -100] == ids[first:]
        assert tok.decode(ids[first:]) == r["response"] + "<|end|>"
        assert tok.decode(ids[:first]) == bm._render(bm.SYSTEM_PROMPT, r["instruction"], None)


def test_assistant_only_mask_covers_answer_and_end():
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(bm.resolve_model_path(TINY))
    out = tok.apply_chat_template(
        _chat("where is my parcel?", "It is on its way."), return_dict=True, return_assistant_tokens_mask=True
    )
    ids, mask = out["input_ids"], out["assistant_masks"]
    assert tok.decode([t for t, m in zip(ids, mask) if m]) == "It is on its way.<|end|>"


def test_build_is_deterministic(tmp_path, tiny_cache, monkeypatch, capfd):
    from safetensors.torch import load_file

    first = Path(bm.resolve_model_path(TINY))
    monkeypatch.setenv("RFTUI_CACHE", str(tmp_path / "second-cache"))
    stale = tmp_path / "second-cache" / "models" / f".{first.name}.tmp-killed"
    stale.mkdir(parents=True)  # left by a builder that was killed
    seen: list[str] = []
    capfd.readouterr()
    second = bm.ensure_builtin(TINY, progress=seen.append)
    assert capfd.readouterr() == ("", "")  # progress goes to the callback only
    assert second != first and second.name == first.name  # same recipe hash, other cache
    assert seen[0].startswith("building") and any("pretraining" in s for s in seen)
    assert seen[-1].endswith("ready")

    a, b = load_file(first / "model.safetensors"), load_file(second / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    digest = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()  # noqa: E731
    assert digest(first / "tokenizer.json") == digest(second / "tokenizer.json")
    info = lambda p: json.loads((p / "rftui_builtin.json").read_text())  # noqa: E731
    assert info(first)["pretrain_losses"] == info(second)["pretrain_losses"]
    assert not [p for p in (tmp_path / "second-cache" / "models").iterdir() if ".tmp-" in p.name]


def test_unwritable_cache_raises_clear_error(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("RFTUI_CACHE", str(blocker))
    with pytest.raises(ModelLoadError, match="RFTUI_CACHE"):
        bm.ensure_builtin(TINY)


def test_concurrent_builders_build_once(tmp_path, monkeypatch):
    """Two builders at once: the lock makes one build and the other wait and reuse it."""
    monkeypatch.setenv("RFTUI_CACHE", str(tmp_path / "race"))
    builds: list[int] = []

    def fake_build(out_dir: Path, corpus: bytes, report) -> None:
        builds.append(1)
        time.sleep(0.3)
        (out_dir / bm._MARKER_FILE).write_text("{}")

    monkeypatch.setattr(bm, "_build", fake_build)
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(bm.ensure_builtin(TINY))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(builds) == 1 and len(set(results)) == 1 and len(results) == 3


def test_failed_build_leaves_nothing_behind(tmp_path, monkeypatch):
    monkeypatch.setenv("RFTUI_CACHE", str(tmp_path / "fail"))

    def broken_build(out_dir: Path, corpus: bytes, report) -> None:
        (out_dir / "config.json").write_text("{}")
        raise RuntimeError("boom")

    monkeypatch.setattr(bm, "_build", broken_build)
    with pytest.raises(RuntimeError):
        bm.ensure_builtin(TINY)
    assert [p.name for p in (tmp_path / "fail" / "models").iterdir() if not p.name.endswith(".lock")] == []


@pytest.mark.parametrize("name", ["someorg/no-such-model-rftui", "gpt2"])
def test_unknown_model_offline_raises_clear_error(name):
    with pytest.raises(ModelLoadError) as err:
        ml.load_model_and_tokenizer(name)
    msg = str(err.value)
    assert repr(name) in msg and TINY in msg and f"huggingface-cli download {name}" in msg
    assert "offline" in msg.lower()


def test_missing_local_path_raises_clear_error(tmp_path):
    missing = str(tmp_path / "nope")
    with pytest.raises(ModelLoadError, match="no such directory") as err:
        ml.load_model_and_tokenizer(missing)
    assert TINY in str(err.value)
    with pytest.raises(ModelLoadError):
        ml.load_model_and_tokenizer(str(tmp_path))  # exists, but holds no model


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU-only translation")
def test_model_kwargs_translated_for_cpu():
    out = ml._translate_model_kwargs(
        {"device_map": "auto", "torch_dtype": "auto", "load_in_4bit": True, "use_cache": False,
         "attn_implementation": "flash_attention_2"}
    )
    assert out == {"dtype": "auto", "use_cache": False}
    assert ml._translate_model_kwargs({"torch_dtype": "float16"}) == {"dtype": torch.float32}
    assert ml._translate_model_kwargs({"dtype": "bf16"}) == {"dtype": torch.bfloat16}
    with pytest.raises(ModelLoadError):
        ml._translate_model_kwargs({"dtype": "float13"})


def test_model_kwargs_on_a_cuda_worker_map_the_model_to_its_one_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert ml._translate_model_kwargs({"device_map": "auto", "dtype": "bf16"}) == {
        "device_map": {"": 0}, "dtype": torch.bfloat16}
    assert ml._translate_model_kwargs({"load_in_4bit": True})["device_map"] == {"": 0}
    assert ml._translate_model_kwargs({"torch_dtype": "float16"}) == {"dtype": torch.float16}
    assert "device_map" not in ml._translate_model_kwargs({"use_cache": False})


def test_place_model_leaves_models_that_loading_placed():
    from rftui.training.bases import place_model

    class Model:
        def __init__(self, **attrs):
            self.__dict__.update(attrs)
            self.moved_to = None

        def to(self, device):
            self.moved_to = device

    plain, mapped, quantized = Model(), Model(hf_device_map={"": 0}), Model(quantization_method="bitsandbytes")
    for model in (plain, mapped, quantized):
        place_model(model, "cuda")
    assert (plain.moved_to, mapped.moved_to, quantized.moved_to) == ("cuda", None, None)
