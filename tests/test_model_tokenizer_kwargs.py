"""RFModelConfig(tokenizer_kwargs=...) as in RapidFire AI: validated, carried into each run, given to
AutoTokenizer.from_pretrained and to create_model_fn, and part of what keys a resident base."""
from __future__ import annotations

import pytest

from rftui import RFGridSearch, RFLoraConfig, RFModelConfig, RFSFTConfig
from rftui.config.expand import expand
from rftui.config.problems import ConfigError
from rftui.config.runspec import RunSpec
from rftui.config.validate import validate_search
from rftui.config.yaml_config import parse_experiment
from rftui.training import model_loading as ml
from rftui.training.bases import ResidentBases, base_key, default_loader, load_model

TINY = "rftui/tiny-llama"
TOK_KWARGS = {"padding_side": "left", "model_max_length": 77}


def config(**extra) -> RFModelConfig:
    return RFModelConfig(model_name=TINY, training_args=RFSFTConfig(max_steps=4),
                         peft_config=RFLoraConfig(r=4, target_modules=["q_proj"]), **extra)


def spec(run_id="r1", **extra) -> RunSpec:
    return RunSpec(run_id=run_id, label=run_id, model_name=TINY, training={}, lora=None, **extra)


def test_the_api_carries_tokenizer_kwargs_into_each_run():
    assert validate_search(config(tokenizer_kwargs=TOK_KWARGS)) == []
    run, = expand(RFGridSearch(config(tokenizer_kwargs=TOK_KWARGS)))
    assert run.tokenizer_kwargs == TOK_KWARGS
    assert run.knobs["tokenizer_kwargs.padding_side"] == "left"
    assert RunSpec.from_dict(run.to_dict()).tokenizer_kwargs == TOK_KWARGS
    assert expand(config())[0].tokenizer_kwargs == {}


def test_a_masked_secret_is_left_out_when_a_stored_run_is_read_back():
    from rftui.tracking.redact import redact

    stored = redact(spec(tokenizer_kwargs={"token": "hf_" + "x" * 30, "use_fast": True}).to_dict())
    assert stored["tokenizer_kwargs"] == {"token": "***", "use_fast": True}
    assert RunSpec.from_dict(stored).tokenizer_kwargs == {"use_fast": True}  # HF_TOKEN gives it instead


def test_yaml_takes_model_tokenizer_kwargs_like_the_api(tmp_path):
    data = tmp_path / "rows.jsonl"
    data.write_text('{"instruction": "hi", "response": "hello"}\n')
    text = (f"name: tk\nmodel:\n  name: {TINY}\n  tokenizer_kwargs: {{padding_side: left, model_max_length: 77}}\n"
            f"data: {{train: {{path: {data}}}}}\ntraining: {{max_steps: 4}}\nlora: {{r: 4, target_modules: [q_proj]}}\n")
    yaml_run, = parse_experiment(text, "tk.yaml", tmp_path).runs
    api_run, = expand(config(tokenizer_kwargs=TOK_KWARGS))
    assert yaml_run.tokenizer_kwargs == api_run.tokenizer_kwargs == TOK_KWARGS
    assert yaml_run.knobs == api_run.knobs


@pytest.mark.parametrize("value,got", [("use_fast", "got str 'use_fast'"), (["use_fast"], "got list ['use_fast']"),
                                       ({1: True}, "got a key that is not text")])
def test_a_non_dict_is_refused_with_path_and_hint(value, got):
    problems = validate_search(config(tokenizer_kwargs=value))
    assert [str(p) for p in problems] == [
        f"configs.tokenizer_kwargs: must be a dict of AutoTokenizer.from_pretrained keyword arguments, {got} — "
        "e.g. tokenizer_kwargs={'use_fast': True}"]


def test_a_value_that_cannot_be_stored_is_refused():
    problems = validate_search(config(tokenizer_kwargs={"use_fast": True, "extra": object()}))
    assert [p.path for p in problems] == ["configs.tokenizer_kwargs.extra"]
    assert "cannot be stored with the experiment" in problems[0].message


def test_yaml_refuses_a_non_mapping_at_its_line(tmp_path):
    data = tmp_path / "rows.jsonl"
    data.write_text('{"instruction": "hi", "response": "hello"}\n')
    text = (f"name: tk\nmodel:\n  name: {TINY}\n  tokenizer_kwargs: [use_fast]\n"
            f"data: {{train: {{path: {data}}}}}\n")
    with pytest.raises(ConfigError) as info:
        parse_experiment(text, "tk.yaml", tmp_path)
    assert [str(p) for p in info.value.problems] == [
        "tk.yaml:4: model.tokenizer_kwargs: must be a dict of AutoTokenizer.from_pretrained keyword arguments, "
        "got list ['use_fast'] — e.g. tokenizer_kwargs: {use_fast: true}"]


def test_the_default_loader_gives_them_to_auto_tokenizer(monkeypatch):
    from transformers import AutoTokenizer

    seen = []
    original = AutoTokenizer.from_pretrained.__func__

    def spy(cls, path, **kwargs):
        seen.append(kwargs)
        return original(cls, path, **kwargs)

    monkeypatch.setattr(AutoTokenizer, "from_pretrained", classmethod(spy))
    model, tokenizer = load_model(spec(tokenizer_kwargs=TOK_KWARGS), loader=default_loader)
    assert seen == [TOK_KWARGS]
    assert (tokenizer.padding_side, tokenizer.model_max_length) == ("left", 77)
    # over what the tokenizer shares with the model's kwargs
    ml.load_model_and_tokenizer(TINY, model_kwargs={"trust_remote_code": False},
                                tokenizer_kwargs={"trust_remote_code": True, "use_fast": True})
    assert seen[-1] == {"trust_remote_code": True, "use_fast": True}
    _, plain = load_model(spec(), loader=default_loader)
    assert seen[-1] == {} and plain.padding_side == "right"


def test_create_model_fn_receives_them():
    received = []

    def create_model(model_config):
        received.append(model_config)
        return object(), object()

    load_model(spec(tokenizer_kwargs=TOK_KWARGS), loader=default_loader, create_model=create_model)
    load_model(spec(), loader=default_loader, create_model=create_model)
    assert [c["tokenizer_kwargs"] for c in received] == [TOK_KWARGS, {}]
    assert set(received[0]) == {"model_name", "model_type", "model_kwargs", "tokenizer", "tokenizer_kwargs"}


def test_a_loader_without_tokenizer_kwargs_still_loads_runs_that_have_none():
    def old_loader(name, model_kwargs=None, tokenizer_name=None):
        return "model", "tokenizer"

    assert load_model(spec(), loader=old_loader) == ("model", "tokenizer")


def test_runs_whose_tokenizer_kwargs_differ_do_not_share_a_resident_base():
    loads = []

    def load(run):
        loads.append(run.run_id)
        return _Model(), object()

    bases = ResidentBases("cpu", max_bases=4, load=load, on_evict=lambda base: None)
    left = bases.get(spec("r1", tokenizer_kwargs={"padding_side": "left"}))
    assert bases.get(spec("r2", tokenizer_kwargs={"padding_side": "left"})) is left
    right = bases.get(spec("r3", tokenizer_kwargs={"padding_side": "right"}))
    assert right is not left and loads == ["r1", "r3"] and len(bases) == 2
    assert base_key(spec("a", tokenizer_kwargs={"x": 1, "y": 2})) == base_key(spec("b", tokenizer_kwargs={"y": 2, "x": 1}))


class _Model:
    def to(self, device):
        return self
