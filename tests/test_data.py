"""Data sources, formatting and the bundled support dataset."""
from __future__ import annotations

import json
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rftui.data.formatting import (
    SUPPORT_SYSTEM_PROMPT,
    ChatFormatter,
    format_rows,
    function_name,
    make_chat_formatter,
    support_chat,
)
from rftui.data.in_memory import rows_from_dataset
from rftui.data.sources import load_rows, shuffle_order
from rftui.errors import DataError

REPO = Path(__file__).resolve().parents[1]
GENERATOR = REPO / "sample_configs" / "data" / "generate_support_data.py"
BUNDLED = REPO / "sample_configs" / "data" / "support.jsonl"

ROWS = [
    {"instruction": f"question {i}", "response": f"answer {i}", "category": "ORDER",
     "intent": "track_order" if i % 2 else "cancel_order"}
    for i in range(20)
]


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def jsonl_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "rows.jsonl", ROWS)


# --------------------------------------------------------------------------- formatting


def test_support_chat_exact_shape():
    row = {"instruction": "where is my order #BX-48213", "response": "It ships today.",
           "category": "ORDER", "intent": "track_order"}
    assert support_chat(row) == {
        "prompt": [
            {"role": "system", "content": SUPPORT_SYSTEM_PROMPT},
            {"role": "user", "content": "where is my order #BX-48213"},
        ],
        "completion": [{"role": "assistant", "content": "It ships today."}],
    }
    assert SUPPORT_SYSTEM_PROMPT == (
        "You are a helpful and friendly customer support assistant. Please answer the "
        "user's query to the best of your ability.")


def test_chat_formatter_fields_prompt_and_pickle():
    fmt = make_chat_formatter(system_prompt="Be brief.", prompt_field="q",
                              completion_field="a")
    assert fmt({"q": "hi", "a": "hello"}) == {
        "prompt": [{"role": "system", "content": "Be brief."},
                   {"role": "user", "content": "hi"}],
        "completion": [{"role": "assistant", "content": "hello"}],
    }
    assert make_chat_formatter(system_prompt=None)({"instruction": "x", "response": "y"}) == {
        "prompt": [{"role": "user", "content": "x"}],
        "completion": [{"role": "assistant", "content": "y"}],
    }
    clone = pickle.loads(pickle.dumps(fmt))
    assert isinstance(clone, ChatFormatter) and clone == fmt
    row = {"instruction": "a", "response": "b"}
    assert make_chat_formatter()(row) == support_chat(row)
    assert function_name(fmt) == "rftui.data.formatting:ChatFormatter"
    assert function_name(support_chat) == "rftui.data.formatting:support_chat"


def test_format_rows_ok_and_text_shape():
    out = format_rows(ROWS[:3], support_chat)
    assert out == [support_chat(r) for r in ROWS[:3]]
    texts = format_rows(ROWS[:2], lambda r: {"text": r["instruction"] + " " + r["response"]})
    assert texts == [{"text": "question 0 answer 0"}, {"text": "question 1 answer 1"}]


def test_format_rows_missing_field_names_row_field_and_function():
    rows = [dict(ROWS[0]), {"instruction": "no answer here"}, dict(ROWS[2])]
    with pytest.raises(DataError) as err:
        format_rows(rows, support_chat, source_name="eval data")
    msg = str(err.value)
    assert "eval data row 1" in msg
    assert "'response'" in msg
    assert "rftui.data.formatting:support_chat" in msg


def test_format_rows_function_error_and_bad_shapes():
    def explode(row):
        raise ValueError("boom")

    with pytest.raises(DataError, match=r"train data row 0: .*explode raised ValueError: boom"):
        format_rows(ROWS[:2], explode)
    with pytest.raises(DataError, match=r'row 0: .*"messages" that is not a non-empty list'):
        format_rows(ROWS[:1], lambda r: {"messages": []})
    with pytest.raises(DataError, match=r"row 0: .*keys \['answer', 'question'\]"):
        format_rows(ROWS[:1], lambda r: {"question": "q", "answer": "a"})
    with pytest.raises(DataError, match=r"row 0: .*not a dict"):
        format_rows(ROWS[:1], lambda r: "plain string")
    with pytest.raises(DataError, match=r'row 0: .*"content" is int'):
        format_rows(ROWS[:1], lambda r: {"prompt": [{"role": "user", "content": 3}],
                                         "completion": [{"role": "assistant", "content": "x"}]})
    flip = iter([{"text": "a"}, {"prompt": [{"role": "user", "content": "q"}],
                                 "completion": [{"role": "assistant", "content": "a"}]}])
    with pytest.raises(DataError, match="row 1: .*same shape"):
        format_rows(ROWS[:2], lambda r: next(flip))
    with pytest.raises(DataError, match="is empty"):
        format_rows([], support_chat)


# --------------------------------------------------------------------------- sources


def test_jsonl_csv_parquet_load_equal(tmp_path: Path, jsonl_file: Path):
    import pandas as pd

    pd.DataFrame(ROWS).to_csv(tmp_path / "rows.csv", index=False)
    pd.DataFrame(ROWS).to_parquet(tmp_path / "rows.parquet", index=False)
    (tmp_path / "rows.json").write_text(json.dumps(ROWS), encoding="utf-8")
    from_jsonl = load_rows({"path": "rows.jsonl"}, base_dir=tmp_path)
    assert from_jsonl == ROWS
    for name in ("rows.csv", "rows.parquet", "rows.json"):
        assert load_rows({"path": name}, base_dir=tmp_path) == ROWS, name


def test_select_then_shuffle_matches_datasets(jsonl_file: Path):
    import datasets

    expected = datasets.Dataset.from_list(ROWS).select(range(3, 17)).shuffle(seed=42)
    got = load_rows({"path": str(jsonl_file), "select": [3, 17], "shuffle_seed": 42})
    assert got == expected.to_list()
    assert got != ROWS[3:17]  # it really was shuffled
    # A Python API user who shuffles a datasets.Dataset gets the same order as YAML.
    assert rows_from_dataset(expected) == got
    assert shuffle_order(50, 7) == datasets.Dataset.from_dict(
        {"i": list(range(50))}).shuffle(seed=7)["i"]
    assert load_rows({"path": str(jsonl_file), "select": [0, 5]}) == ROWS[:5]


def test_select_errors(jsonl_file: Path):
    with pytest.raises(DataError, match=r"select: \[0, 128\]. is out of range: data file .*rows\.jsonl has only 20 rows"):
        load_rows({"path": str(jsonl_file), "select": [0, 128]})
    with pytest.raises(DataError, match="pair"):
        load_rows({"path": str(jsonl_file), "select": [5]})
    with pytest.raises(DataError, match="not a valid range"):
        load_rows({"path": str(jsonl_file), "select": [9, 3]})


def test_bad_jsonl_line_is_named(tmp_path: Path):
    path = tmp_path / "broken.jsonl"
    lines = [json.dumps(ROWS[0]), "", json.dumps(ROWS[1]), '{"instruction": "oops",', "[1, 2]"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        load_rows({"path": str(path)})
    assert "broken.jsonl, line 4" in str(err.value)
    path.write_text("\n".join(lines[:3] + lines[4:]) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"line 4: expected a JSON object"):
        load_rows({"path": str(path)})


def test_missing_empty_and_unsupported_files(tmp_path: Path):
    with pytest.raises(DataError, match=r"nope\.jsonl does not exist"):
        load_rows({"path": "nope.jsonl"}, base_dir=tmp_path)
    (tmp_path / "empty.jsonl").write_text("\n\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"empty\.jsonl is empty"):
        load_rows({"path": "empty.jsonl"}, base_dir=tmp_path)
    (tmp_path / "rows.txt").write_text("x", encoding="utf-8")
    with pytest.raises(DataError, match="unsupported type '.txt'"):
        load_rows({"path": "rows.txt"}, base_dir=tmp_path)
    with pytest.raises(DataError, match="exactly one of"):
        load_rows({"path": "a.jsonl", "hub": "org/name"})
    with pytest.raises(DataError, match="unknown key"):
        load_rows({"path": "a.jsonl", "shufle_seed": 1})


def test_hub_offline_uncached_error(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf" / "datasets"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    hub_id = "rftui-tests/surely-not-cached-7f3a"
    with pytest.raises(DataError) as err:
        load_rows({"hub": hub_id, "split": "train"})
    msg = str(err.value)
    assert hub_id in msg and "not cached" in msg
    assert "load_dataset" in msg and "path:" in msg


def test_a_cached_hub_dataset_is_selected_then_shuffled(monkeypatch, tmp_path: Path):
    import datasets

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "datasets"))
    info = tmp_path / "datasets" / "org___data" / "default" / "dataset_info.json"
    info.parent.mkdir(parents=True)
    info.write_text(json.dumps({"splits": {"train": {"num_examples": 10}}}), encoding="utf-8")
    full = datasets.Dataset.from_list(ROWS[:10])
    monkeypatch.setattr(datasets, "load_dataset", lambda hub_id, split: full if (hub_id, split) == ("org/data", "train")
                        else pytest.fail(f"loaded {hub_id} {split}"))
    source = {"hub": "org/data", "select": [2, 8], "shuffle_seed": 3}
    assert len(load_rows({"hub": "org/data"})) == 10
    assert load_rows(source) == full.select(range(2, 8)).shuffle(seed=3).to_list()
    with pytest.raises(DataError, match=r"`select: \[0, 11\]` is out of range: Hub dataset 'org/data' \(split 'train'\) "
                                        r"has only 10 rows"):
        load_rows({"hub": "org/data", "select": [0, 11]})


def test_rows_from_dataset_inputs():
    import pandas as pd

    assert rows_from_dataset(ROWS[:3]) == ROWS[:3]
    assert rows_from_dataset(pd.DataFrame(ROWS[:3])) == ROWS[:3]
    with pytest.raises(DataError, match="row 1 is a str"):
        rows_from_dataset([ROWS[0], "nope"], name="train dataset")
    with pytest.raises(DataError, match="Pass one split"):
        rows_from_dataset({"train": ROWS})
    with pytest.raises(DataError, match="empty"):
        rows_from_dataset([])


def test_an_endless_stream_is_refused_after_a_bounded_read(monkeypatch):
    import itertools

    from datasets import IterableDataset

    import rftui.data.in_memory as in_memory

    monkeypatch.setattr(in_memory, "MAX_STREAMED_ROWS", 50)
    endless = IterableDataset.from_generator(lambda: ({"instruction": "q", "response": "a"} for _ in itertools.count()))
    with pytest.raises(DataError, match=r"train_dataset \(IterableDataset\) gave more than 50 rows without "
                                        r"ending.*dataset\.take\(n\)"):
        rows_from_dataset(endless, "train_dataset")
    assert len(rows_from_dataset(endless.take(50), "train_dataset")) == 50  # a finite stream: all of it
    assert rows_from_dataset(iter(ROWS[:3])) == ROWS[:3]


def test_sources_import_is_light():
    code = ("import sys, rftui.data.sources, rftui.data.hub_datasets, rftui.data.in_memory, rftui.data.formatting;"
            "bad = [m for m in ('torch', 'transformers', 'trl', 'datasets') if m in sys.modules];"
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------- bundled data


def test_generator_is_deterministic_and_complete(tmp_path: Path):
    paths = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    for p in paths:
        subprocess.run([sys.executable, str(GENERATOR), "--out", str(p)], check=True,
                       capture_output=True)
    data = paths[0].read_bytes()
    assert data == paths[1].read_bytes()
    assert data == BUNDLED.read_bytes(), "support.jsonl is stale: rerun the generator"
    rows = [json.loads(line) for line in data.decode("utf-8").splitlines()]
    assert len(rows) >= 600
    assert all(set(r) == {"instruction", "response", "category", "intent"} for r in rows)
    assert len({r["intent"] for r in rows}) >= 24
    assert len({r["category"] for r in rows}) >= 10
    assert len({r["intent"] for r in rows[:128]}) >= 20  # shuffled: a slice covers many
    assert not any(re.search(r"\{\{|\}\}", r["instruction"] + r["response"]) for r in rows)
    assert all(25 <= len(r["response"].split()) <= 70 for r in rows)
    assert any("#" in r["instruction"] for r in rows)  # filled order numbers
    assert len(load_rows({"path": str(BUNDLED), "select": [0, 128]})) == 128
    formatted = format_rows(load_rows({"path": str(BUNDLED), "select": [0, 8]}), support_chat)
    assert formatted[0]["prompt"][1]["content"] == rows[0]["instruction"]
