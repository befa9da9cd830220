"""ROUGE-L / BLEU, the user's compute_metrics hook, and generation that leaves the training RNG alone."""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import random

import numpy as np
import pytest
import torch

torch.set_num_threads(1)

from rftui.training.metrics import HookError, bleu, call_compute_metrics, generation_metrics, rouge_l

SENTENCE = "please reset the password on my account today"


def test_identical_strings_score_one():
    assert rouge_l([SENTENCE], [SENTENCE]) == 1.0
    assert bleu([SENTENCE], [SENTENCE]) == 1.0
    assert rouge_l(["Cancelled orders"], ["cancel order"]) == 1.0  # stemming, case-insensitive


def test_disjoint_strings_score_zero():
    assert rouge_l(["alpha beta gamma delta"], ["one two three four"]) == 0.0
    assert bleu(["alpha beta gamma delta"], ["one two three four"]) == 0.0


def test_known_partial_values():
    # LCS("the cat", "the cat sat") = 2: precision 1, recall 2/3, F1 = 0.8
    assert rouge_l(["the cat"], ["the cat sat"]) == pytest.approx(0.8)
    # mean over samples
    assert rouge_l(["the cat", SENTENCE], ["the cat sat", SENTENCE]) == pytest.approx(0.9)
    # 8 of 9 words, one substitution in the middle: sacrebleu's corpus BLEU for this pair
    pred = "please reset the password on your account today now"
    ref = "please reset the password on my account today now"
    import sacrebleu

    expected = sacrebleu.corpus_bleu([pred], [[ref]]).score / 100
    assert 0.3 < expected < 0.8
    assert bleu([pred], [ref]) == pytest.approx(expected)
    assert rouge_l([], []) == 0.0 and bleu([], []) == 0.0
    with pytest.raises(ValueError):
        rouge_l(["a"], [])


def exact_match(pair):
    predictions, references = pair
    return {"exact_match": float(np.mean([p == r for p, r in zip(predictions, references)]))}


def broken_metric(pair):
    raise ZeroDivisionError("boom")


def test_compute_metrics_hook_callable_string_and_registry(tmp_path):
    preds, refs = ["a b", "c d"], ["a b", "x y"]
    merged = generation_metrics(preds, refs, exact_match)
    assert merged["exact_match"] == 0.5 and set(merged) == {"rougeL", "bleu", "exact_match"}
    (tmp_path / "my_metrics.py").write_text(
        "def length(pair):\n    preds, refs = pair\n    return {'mean_len': sum(map(len, preds)) / len(preds)}\n")
    assert call_compute_metrics("my_metrics.py:length", preds, refs, base_dir=tmp_path) == {"mean_len": 3.0}
    assert call_compute_metrics("mine", preds, refs, registry={"mine": exact_match}) == {"exact_match": 0.5}
    assert call_compute_metrics(None, preds, refs) == {}


def test_failing_hooks_name_the_hook(tmp_path):
    with pytest.raises(HookError, match=r"compute_metrics hook .*broken_metric raised ZeroDivisionError: boom"):
        call_compute_metrics(broken_metric, ["a"], ["a"])
    with pytest.raises(HookError, match="expected a dict"):
        call_compute_metrics(lambda pair: 0.5, ["a"], ["a"])
    with pytest.raises(HookError, match="values must be numbers"):
        call_compute_metrics(lambda pair: {"x": "high"}, ["a"], ["a"])
    with pytest.raises(HookError, match="nowhere.py"):
        call_compute_metrics("nowhere.py:f", ["a"], ["a"], base_dir=tmp_path)


@pytest.fixture(scope="module")
def toy():
    from rftui.training.toy import make_toy_model, make_toy_tokenizer, toy_rows

    tok = make_toy_tokenizer()
    return make_toy_model(tok), tok, toy_rows(5, seed=4)


def test_generation_is_reproducible_and_restores_mode(toy):
    from rftui.training.evaluation import generate_predictions
    from rftui.training.run_state import capture_rng, preserved_rng

    model, tok, rows = toy
    model.train()
    sampled = {"num_samples": 3, "max_new_tokens": 5, "do_sample": True, "temperature": 2.0, "top_k": 0,
               "seed": 123, "batch_size": 2}
    torch.manual_seed(0)
    random.seed(0)
    before = capture_rng()
    with preserved_rng():
        first = generate_predictions(model, tok, rows, sampled, device="cpu")
    after = capture_rng()
    assert torch.equal(before["torch"], after["torch"]) and before["python"] == after["python"]
    assert model.training
    second = generate_predictions(model, tok, rows, sampled, device="cpu")
    assert first == second
    predictions, references = first
    assert len(predictions) == 3 and references[0] == rows[0]["completion"][0]["content"]
    greedy = generate_predictions(model, tok, rows, {"num_samples": 2, "max_new_tokens": 5}, device="cpu")
    assert greedy == generate_predictions(model, tok, rows, {"num_samples": 2, "max_new_tokens": 5}, device="cpu")


def test_host_merges_user_metrics_and_names_a_failing_hook(tmp_path):
    from dataclasses import replace

    from rftui.config.runspec import RunSpec
    from rftui.engine.messages import EvalDone, TrainQuantum
    from rftui.training.host import TrainingHost
    from rftui.training.toy import toy_loader, write_toy_split

    train = write_toy_split(tmp_path / "train.jsonl", 8, seed=1)
    evals = write_toy_split(tmp_path / "eval.jsonl", 3, seed=2)
    run = RunSpec(run_id="g", label="g", model_name="toy",
                  training=dict(per_device_train_batch_size=4, max_length=48, gradient_checkpointing=False),
                  lora=dict(r=2, target_modules=["q_proj"]), generation={"num_samples": 3, "max_new_tokens": 3},
                  compute_metrics=exact_match)

    def cmd(spec):
        return TrainQuantum(run=spec, chunk=0, num_chunks=1, start_step=0, end_step=1, total_steps=1,
                            train_path=train, eval_path=evals, checkpoint_root=str(tmp_path / "ck"),
                            adapters_root=str(tmp_path / "ad"))

    host = TrainingHost(0, model_loader=toy_loader)
    events: list = []
    host.train_quantum(cmd(run), events.append, lambda: None)
    generated = [e for e in events if isinstance(e, EvalDone) and "rougeL" in e.metrics]
    assert len(generated) == 1 and generated[0].step == 1
    assert set(generated[0].metrics) == {"rougeL", "bleu", "exact_match"}
    bad = replace(run, run_id="bad", label="bad", compute_metrics=broken_metric)
    with pytest.raises(HookError, match="broken_metric"):
        host.train_quantum(cmd(bad), events.append, lambda: None)
    assert host.holds("bad") is None
    host.close()
