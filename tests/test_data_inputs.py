"""Data in the shapes users bring (TRL's formats, odd values), and the messages bad rows get."""
from __future__ import annotations

from dataclasses import replace

import pytest

from engine_helpers import SAMPLES
from rftui.config.yaml_config import load_experiment_file
from rftui.data.formatting import ChatFormatter, format_rows
from rftui.engine.setup import format_splits
from rftui.errors import DataError

USER = {"role": "user", "content": "where is my order"}
ASSISTANT = {"role": "assistant", "content": "on its way"}


def smoke_spec(tmp_path, **data):
    spec = load_experiment_file(SAMPLES / "smoke.yaml")
    return replace(spec, workdir=str(tmp_path), data=replace(spec.data, **data) if data else spec.data)


# --------------------------------------------------------------------------- TRL's own dataset formats


@pytest.mark.parametrize("row,kept", [
    ({"prompt": "where is my order", "completion": "on its way", "id": 7},
     {"prompt": "where is my order", "completion": "on its way"}),
    ({"messages": [USER, ASSISTANT], "source": "web"}, {"messages": [USER, ASSISTANT]}),
    ({"prompt": [USER], "completion": [ASSISTANT]}, {"prompt": [USER], "completion": [ASSISTANT]}),
    ({"text": "where is my order? on its way", "id": 1}, {"text": "where is my order? on its way"}),
])
def test_rows_in_a_trl_format_need_no_formatting_function(tmp_path, row, kept):
    formatted, failed = format_splits(smoke_spec(tmp_path), [row] * 3, [row])
    assert failed == {}
    assert formatted == {"default": ([kept] * 3, [kept])}


def test_trl_rows_missing_a_column_name_the_row():
    spec_rows = [{"prompt": "a", "completion": "b"}, {"prompt": "c"}]
    formatted, failed = format_splits(smoke_spec(SAMPLES), spec_rows, None)
    assert formatted == {}
    message = str(failed["default"])
    assert "row 1" in message and "has no 'completion' field (it has 'prompt')" in message


def test_format_rows_checks_plain_and_conversational_shapes():
    plain = format_rows([{}], lambda r: {"prompt": "q", "completion": "a"})
    assert plain == [{"prompt": "q", "completion": "a"}]
    with pytest.raises(DataError, match=r'row 0: .*"completion" as a list while "prompt" is a string'):
        format_rows([{}], lambda r: {"prompt": "q", "completion": [ASSISTANT]})
    with pytest.raises(DataError, match=r"row 0: .*last message is not the assistant's"):
        format_rows([{}], lambda r: {"messages": [ASSISTANT, USER]})
    with pytest.raises(DataError, match=r'row 0: .*"messages" with only assistant messages'):
        format_rows([{}], lambda r: {"messages": [ASSISTANT]})
    mixed = iter([{"prompt": "q", "completion": "a"}, {"prompt": [USER], "completion": [ASSISTANT]}])
    with pytest.raises(DataError, match=r"row 1: .*returned a prompt/completion pair of messages but the "
                                        r"first row was a prompt/completion pair of texts"):
        format_rows([{}, {}], lambda r: next(mixed))


# --------------------------------------------------------------------------- the default formatter's messages


@pytest.mark.parametrize("row,message", [
    ({"instruction": "hi", "response": None},
     "row 0: field 'response' is empty (null), not text; every row needs text in 'instruction' and 'response'"),
    ({"instruction": 42, "response": "x"}, "row 0: field 'instruction' is a number (42), not text"),
    ({}, "row 0: has no field 'instruction' (it has no fields); every row needs 'instruction' and 'response' "
         "(for other column names set data.prompt_field / data.completion_field"),
])
def test_default_formatter_says_what_is_wrong_with_the_row(row, message):
    with pytest.raises(DataError) as err:
        format_rows([row], ChatFormatter(), "train data")
    assert str(err.value).startswith("train data " + message), str(err.value)
    assert "ChatFormatter" not in str(err.value)  # the user wrote no function: none is blamed


# --------------------------------------------------------------------------- where a bad row is


def test_a_bad_jsonl_row_is_named_by_its_line_too(tmp_path):
    from rftui.engine.setup import create_experiment

    good = '{"instruction": "hi", "response": "hello"}\n'
    data = tmp_path / "rows.jsonl"
    data.write_text(good * 3 + "\n\n" + '{"instruction": "hi", "response": null}\n' + good * 12)
    spec = smoke_spec(tmp_path, train={"path": str(data)}, eval=None)
    with pytest.raises(DataError) as err:
        create_experiment(spec, [{"instruction": "hi", "response": "hello"}] * 3
                          + [{"instruction": "hi", "response": None}] + [{"instruction": "hi", "response": "hello"}] * 12,
                          None)
    assert f"train data (data file {data}) row 3 (line 6): field 'response' is empty (null)" in str(err.value)
    assert list(tmp_path.iterdir()) == [data]  # nothing created


def test_a_non_utf8_line_is_named(tmp_path):
    from rftui.data.sources import load_rows

    data = tmp_path / "rows.jsonl"
    data.write_bytes(b'{"instruction": "a", "response": "b"}\n' * 4 + b'{"instruction": "caf\xe9", "response": "b"}\n')
    with pytest.raises(DataError, match=r"rows\.jsonl, line 5: not valid UTF-8 text \(invalid continuation byte"):
        load_rows({"path": str(data)})


def test_csv_cells_stay_text(tmp_path):
    from rftui.data.sources import load_rows

    data = tmp_path / "rows.csv"
    data.write_text("instruction,response\nwhat is 41 plus 1,42\nis it in stock,NA\nanything else,\n", encoding="utf-8")
    assert load_rows({"path": str(data)}) == [
        {"instruction": "what is 41 plus 1", "response": "42"},
        {"instruction": "is it in stock", "response": "NA"},
        {"instruction": "anything else", "response": None},  # an empty cell is missing, and said so when formatted
    ]


# --------------------------------------------------------------------------- datasets passed from Python


def test_a_dict_of_columns_is_rows():
    from rftui.data.in_memory import rows_from_dataset

    assert rows_from_dataset({"instruction": ["a", "b"], "response": ["x", "y"]}, "train_dataset") == [
        {"instruction": "a", "response": "x"}, {"instruction": "b", "response": "y"}]
    with pytest.raises(DataError, match=r"train_dataset is a dict of columns of different lengths \('instruction': 2, "
                                        r"'response': 1\)"):
        rows_from_dataset({"instruction": ["a", "b"], "response": ["x"]}, "train_dataset")
    with pytest.raises(DataError, match=r"train_dataset is a DatasetDict of splits \('train'\), not a single dataset\. "
                                        r"Pass one split, for example train_dataset\['train'\]\."):
        import datasets

        rows_from_dataset(datasets.DatasetDict({"train": datasets.Dataset.from_dict({"a": [1]})}), "train_dataset")


def test_a_dict_of_numpy_arrays_or_pandas_columns_is_rows_of_plain_values():
    import numpy as np
    import pandas as pd

    from rftui.data.in_memory import rows_from_dataset

    rows = rows_from_dataset({"instruction": np.array(["a", "b"]), "response": np.array(["x", "y"]),
                              "id": np.array([7, 8])}, "train_dataset")
    assert rows == [{"instruction": "a", "response": "x", "id": 7}, {"instruction": "b", "response": "y", "id": 8}]
    assert [type(v) for v in rows[0].values()] == [str, str, int]  # plain values: the rows are written as JSON
    frame = pd.DataFrame({"instruction": ["a", None], "response": ["x", "y"], "score": [0.5, float("nan")]})
    columns = {name: frame[name] for name in frame.columns}  # pandas Series: a missing value is None, as in a DataFrame
    assert rows_from_dataset(columns, "train_dataset") == rows_from_dataset(frame, "train_dataset") == [
        {"instruction": "a", "response": "x", "score": 0.5}, {"instruction": None, "response": "y", "score": None}]
    with pytest.raises(DataError, match=r"train_dataset is a dict of columns of different lengths \('a': 2, 'b': 1\)"):
        rows_from_dataset({"a": np.array([1, 2]), "b": pd.Series([1])}, "train_dataset")


@pytest.mark.parametrize("given,message", [
    ({"instruction": ["a", "b"], "source": "web"},
     "train_dataset is a dict of 2 keys, but not of columns: 'source' holds str 'web', not one value per row; pass a "
     "dict of columns (column name → a list, numpy array or pandas Series with one value per row, as "
     "datasets.Dataset.from_dict takes), a list of row dicts, a pandas DataFrame or a datasets.Dataset."),
    ({}, "train_dataset is an empty dict: it has no columns; pass a dict of columns"),
    ({"train": [{"instruction": "a"}], "test": [{"instruction": "b"}]},
     "train_dataset is a dict of splits ('train', 'test'), not a single dataset. Pass one split, for example "
     "train_dataset['train']."),
])
def test_a_dict_that_is_not_columns_is_refused_saying_what_it_holds(given, message):
    from rftui.data.in_memory import rows_from_dataset

    with pytest.raises(DataError) as err:
        rows_from_dataset(given, "train_dataset")
    assert str(err.value).startswith(message), str(err.value)


def test_run_fit_takes_a_dict_of_pandas_columns_as_one_table(tmp_path):
    import pandas as pd

    from rftui import Experiment, RFGridSearch, RFModelConfig, RFSFTConfig

    config = RFModelConfig(model_name="rftui/tiny-llama", training_args=RFSFTConfig(max_steps=2))
    columns = {"instruction": pd.Series(["a", "b", "c"]), "response": pd.Series(["x", float("nan"), "z"])}
    with pytest.raises(DataError) as err:  # its row 1 reaches the formatter, its missing value as null
        Experiment("e", workdir=tmp_path).run_fit(RFGridSearch(config), None, columns, num_chunks=1, quiet=True)
    assert str(err.value).startswith("train_dataset row 1: field 'response' is empty (null)"), str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_run_fit_names_a_bad_row_by_its_argument(tmp_path):
    from rftui import Experiment, RFGridSearch, RFModelConfig, RFSFTConfig

    config = RFModelConfig(model_name="rftui/tiny-llama", training_args=RFSFTConfig(max_steps=2))
    rows = {"instruction": ["a", "b", "c"], "response": ["x", None, "z"]}
    with pytest.raises(DataError) as err:
        Experiment("e", workdir=tmp_path).run_fit(RFGridSearch(config), None, rows, num_chunks=1, quiet=True)
    assert str(err.value).startswith("train_dataset row 1: field 'response' is empty (null)"), str(err.value)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- model kwargs from Python


def test_torch_and_transformers_objects_in_model_kwargs_are_stored_as_plain_values(tmp_path):
    import torch
    from transformers import BitsAndBytesConfig

    from rftui import RFGridSearch, RFModelConfig, RFSFTConfig
    from rftui.config.expand import expand
    from rftui.config.experiment import ExperimentSpec
    from rftui.engine.setup import create_experiment

    kwargs = {"torch_dtype": torch.bfloat16, "quantization_config": BitsAndBytesConfig(load_in_4bit=True)}
    group = RFGridSearch(RFModelConfig(model_name="rftui/tiny-llama", model_kwargs=kwargs,
                                       training_args=RFSFTConfig(max_steps=2)))
    (run,) = expand(group)
    assert run.model_kwargs["torch_dtype"] == "bfloat16"
    quant = run.model_kwargs["quantization_config"]
    assert quant["quant_method"] == "bitsandbytes" and quant["load_in_4bit"] is True
    spec = ExperimentSpec(name="kw", runs=(run,), num_chunks=1, workdir=str(tmp_path))
    _, _, store = create_experiment(spec, [{"instruction": "a", "response": "b"}] * 4, None)  # crashed in yaml
    assert store.list_runs()[0]["spec"]["model_kwargs"] == run.model_kwargs
    store.close()


def test_model_kwargs_that_cannot_load_or_be_stored_are_config_problems():
    from rftui import RFGridSearch, RFModelConfig
    from rftui.config.validate import validate_search

    def problems(kwargs):
        return [str(p) for p in validate_search(RFGridSearch(RFModelConfig(model_name="m", model_kwargs=kwargs)))]

    assert problems({"torch_dtype": "float17"}) == [
        "configs.model_kwargs.torch_dtype: unknown model dtype 'float17'; use one of auto, float32, bfloat16, float16"]
    assert problems({"dtype": "BF16", "torch_dtype": "torch.float32"}) == []
    assert problems({"hook": object()}) == [
        "configs.model_kwargs.hook: a value of type object cannot be stored with the experiment (a resume reads it "
        "back) — give plain values: strings, numbers, lists and dicts"]


# --------------------------------------------------------------------------- the config's data section


@pytest.mark.parametrize("old,new,expected", [
    ("{path: data/support.jsonl, select: [0, 16], shuffle_seed: 0}", "5",
     "x.yaml:10: data.train: expected a data source, got int 5"),
    ("{path: data/support.jsonl, select: [0, 16], shuffle_seed: 0}", "{path: 123}",
     "x.yaml:10: data.train.path: expected text, got int 123 — e.g. path: data/train.jsonl"),
    ("{path: data/support.jsonl, select: [300, 304]}", "{hub: 5}", "x.yaml:11: data.eval.hub: expected text, got int 5"),
    ("data/support.jsonl, select: [0, 16]", "data, select: [0, 16]",
     "x.yaml:10: data.train.path: {samples}/data is a folder, not a data file"),
    ("data/support.jsonl, select: [0, 16]", "data/generate_support_data.py, select: [0, 16]",
     "x.yaml:10: data.train.path: data file {samples}/data/generate_support_data.py has an unsupported type '.py'"),
    ("\n  eval:", "\n  prompt_field: 5\n  eval:", "x.yaml:11: data.prompt_field: expected text, got int 5"),
    ("\n  eval:", "\n  system_prompt: [a]\n  eval:", "x.yaml:11: data.system_prompt: expected text, got list ['a']"),
])
def test_data_section_values_are_checked_at_their_line(old, new, expected):
    from rftui.config.problems import ConfigError
    from rftui.config.yaml_config import parse_experiment

    text = (SAMPLES / "smoke.yaml").read_text()
    assert old in text
    with pytest.raises(ConfigError) as err:
        parse_experiment(text.replace(old, new, 1), "x.yaml", SAMPLES)
    assert expected.format(samples=SAMPLES) in str(err.value), str(err.value)
    assert len(err.value.problems) == 1


def test_a_data_path_may_start_with_home(tmp_path, monkeypatch):
    from rftui.config.yaml_config import parse_experiment

    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "rows.jsonl").write_text('{"instruction": "a", "response": "b"}\n')
    text = (SAMPLES / "smoke.yaml").read_text().replace("data/support.jsonl, select: [0, 16]", "~/rows.jsonl")
    spec = parse_experiment(text, "x.yaml", SAMPLES)
    assert spec.data.train["path"] == str(tmp_path / "rows.jsonl")


def test_each_split_is_taken_in_its_own_shape(tmp_path):
    train = [{"prompt": "where is my order", "completion": "on its way"}] * 3
    evals = [{"instruction": "where is my order", "response": "on its way"}]
    formatted, failed = format_splits(smoke_spec(tmp_path), train, evals)
    assert failed == {}
    (train_out, eval_out), = formatted.values()
    assert train_out == train
    assert eval_out[0]["completion"] == [ASSISTANT] and eval_out[0]["prompt"][-1] == USER


def test_an_uncached_hub_dataset_with_no_hub_fails_at_once(monkeypatch, tmp_path):
    import datasets

    from rftui.data import sources
    from rftui.training import model_loading

    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty cache
    monkeypatch.setattr(model_loading, "hub_reachable", lambda: False)
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("retried the network"))
    with pytest.raises(DataError, match=r"Hub dataset 'org/data' is not cached on this machine and the Hugging Face "
                                        r"Hub cannot be reached"):
        sources.load_rows({"hub": "org/data"})
