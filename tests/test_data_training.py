"""Data that only the training side can judge (it needs the tokenizer): every row too long, no chat template,
plain-text eval rows, prompts longer than the model trained on. Each gets a clear reason or a warning."""
from __future__ import annotations

import json
import re

import pytest
import torch

from reliability_helpers import ENV, cli, smoke_text
from rftui.errors import DataError


@pytest.fixture(scope="module")
def toy():
    from rftui.training.toy import make_toy_model, make_toy_tokenizer

    tok = make_toy_tokenizer()
    return make_toy_model(tok), tok


def trainer_for(tmp_path, model, tok, rows, **training):
    from rftui.training.sft_setup import PreparedDataCache, build_sft_config, build_trainer

    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run_args = build_sft_config("r1", {"max_length": 16, "per_device_train_batch_size": 2, **training},
                                output_dir=str(tmp_path / "out"), total_steps=2, seed=0, device="cpu", has_eval=False)
    cache = PreparedDataCache()
    return build_trainer(model, tok, run_args, train_path=str(path), eval_path=None, tokenizer_key="toy",
                         cache=cache), cache, str(path)


def chat(user: str, answer: str = "fine") -> dict:
    return {"prompt": [{"role": "user", "content": user}], "completion": [{"role": "assistant", "content": answer}]}


def test_every_row_too_long_is_a_data_error_naming_max_length(tmp_path, toy):
    model, tok = toy
    with pytest.raises(DataError) as err:
        trainer_for(tmp_path, model, tok, [chat("why you password " * 20)] * 4)
    assert str(err.value).startswith("all 4 training rows were dropped: with max_length=16 (training.max_length) "
                                     "each one's prompt fills every token"), str(err.value)


def test_some_rows_too_long_are_counted(tmp_path, toy):
    from rftui.training.sft_setup import dropped_rows

    model, tok = toy
    trainer, cache, path = trainer_for(tmp_path, model, tok, [chat("why")] * 3 + [chat("why you password " * 20)])
    assert dropped_rows(trainer, cache, path) == (1, 4)


def test_chat_rows_without_a_chat_template_say_what_to_do(tmp_path, toy):
    model, tok = toy
    saved, tok.chat_template = tok.chat_template, None
    try:
        with pytest.raises(DataError, match=r"the tokenizer of .* has no chat template, so the rows' chat messages "
                                            r"cannot be turned into text\. .*training\.chat_template_path"):
            trainer_for(tmp_path, model, tok, [chat("why")] * 4)
        trainer_for(tmp_path, model, tok, [{"prompt": "why", "completion": "fine"}] * 4)  # plain text needs none
    finally:
        tok.chat_template = saved


def test_generation_keeps_the_end_of_a_prompt_longer_than_max_length(toy):
    from rftui.training.evaluation import _prompt_ids, generate_predictions

    _, tok = toy
    seen = []

    class Recorder(torch.nn.Module):
        def generate(self, input_ids, attention_mask, **kwargs):
            seen.append(input_ids)
            return torch.cat([input_ids, input_ids[:, -2:]], dim=1)

    row = chat("why you password " * 200)
    generate_predictions(Recorder(), tok, [row], {"max_new_tokens": 4}, device="cpu", max_length=32)
    full = _prompt_ids(tok, row["prompt"])
    assert len(full) > 500
    assert seen[0].tolist() == [full[-28:]]  # 32 - 4 new tokens: the end, with the generation prompt


def test_plain_text_rows_train_and_skip_rouge_with_a_warning_and_all_rows_too_long_fail_readably(tmp_path):
    text = smoke_text(max_steps=2, num_chunks=1)
    for name, row, training in (("text", {"text": "where is my order? on its way"}, ""),
                                ("long", {"instruction": "word " * 300, "response": "ok"}, "")):
        data = tmp_path / f"{name}.jsonl"
        data.write_text(json.dumps(row) + "\n" * 1 + (json.dumps(row) + "\n") * 15)
        config = tmp_path / f"{name}.yaml"
        body = re.sub(r"\{path: [^}]*\}", f"{{path: {data}}}", text).replace("name: smoke", f"name: {name}")
        config.write_text(body + training)
    result = cli("run", tmp_path / "text.yaml", "--no-ui", "--no-tracking", "--workdir", tmp_path, env=ENV)
    assert result.returncode == 0, result.stderr
    assert ("warning r1: the eval rows are plain text, with no prompt and reference completion: ROUGE/BLEU "
            "are skipped (eval_loss is still computed)") in result.stdout
    result = cli("run", tmp_path / "long.yaml", "--no-ui", "--no-tracking", "--workdir", tmp_path, env=ENV)
    assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr
    shown = cli("show", "long", "--workdir", tmp_path, "--json", env=ENV)
    reasons = {run["id"]: run["reason"] for run in json.loads(shown.stdout)["runs"]}
    assert reasons["r1"].startswith("DataError: all 16 training rows were dropped: with max_length=128"), reasons


@pytest.mark.parametrize("kwargs,detail", [
    ({"foo_bar": 1}, "unexpected keyword argument 'foo_bar'"),
    ({"attn_implementation": "nope"}, 'attn_implementation="nope"` is not supported'),
])
def test_model_kwargs_that_do_not_fit_the_built_in_model_are_named_as_such(kwargs, detail):
    from rftui.errors import ModelLoadError
    from rftui.training.model_loading import load_model_and_tokenizer

    with pytest.raises(ModelLoadError) as err:
        load_model_and_tokenizer("rftui/tiny-llama", kwargs)
    message = str(err.value)
    assert message.startswith("Cannot load model 'rftui/tiny-llama' with its settings ("), message
    assert detail in message and "no such directory" not in message
    assert message.endswith("Fix or remove the model kwargs that do not apply to it (model.kwargs in a config file, "
                            "model_kwargs from Python).")
