"""Read training and evaluation rows from local files or the Hugging Face Hub.

A *source* is a small mapping, usually straight from an experiment YAML file::

    train:
      path: data/support.jsonl     # or  hub: some-org/some-dataset  (+ split: train)
      select: [0, 128]             # optional: rows [start, end), taken before shuffling
      shuffle_seed: 42             # optional: seeded shuffle after select

`select` followed by `shuffle_seed` gives exactly the rows, in exactly the order, of
``dataset.select(range(start, end)).shuffle(seed=seed)`` with the `datasets` library, so a
YAML file and a Python script that prepares its own `datasets.Dataset` agree row for row.

Rows come back as a list of plain dicts. Nothing heavy is imported at module import time:
`datasets` is imported only to load a Hub dataset (`rftui.data.hub_datasets` finds it, in the cache
or on the Hub), `pandas` only for CSV files and `pyarrow` only for Parquet files. Every problem is reported as a `DataError` that names the file (and
line or row when known) and says what to do about it.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

from rftui.data.hub_datasets import load_hub_dataset
from rftui.errors import DataError

SOURCE_KEYS = ("path", "hub", "split", "select", "shuffle_seed")
"""Keys a source mapping may carry."""

JSONL_SUFFIXES = (".jsonl", ".ndjson")
SUPPORTED_SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".parquet")


# --------------------------------------------------------------------------- public API


def load_rows(source: Mapping[str, Any] | str | os.PathLike, base_dir: Path | None = None
              ) -> list[dict[str, Any]]:
    """All rows of `source` as plain dicts, after `select` and `shuffle_seed` are applied.

    `source` holds `path` (a local .jsonl/.json/.csv/.parquet file, relative to `base_dir`)
    or `hub` (a Hub dataset id, with optional `split`, default "train"), plus optional
    `select` ([start, end), applied first) and `shuffle_seed` (int, applied after). A bare
    string or path is shorthand for ``{"path": ...}``.
    """
    spec = _normalize(source)
    label = source_label(spec, base_dir)
    if "path" in spec:
        path = _resolve_path(spec["path"], base_dir)
        rows = _read_file(path)
        if not rows:
            raise _empty_error(label)
        start, end = _check_select(spec.get("select"), len(rows), label)
        rows = rows[start:end]
    else:
        dataset = load_hub_dataset(spec["hub"], spec.get("split") or "train", label)
        start, end = _check_select(spec.get("select"), len(dataset), label)
        if (start, end) != (0, len(dataset)):
            dataset = dataset.select(range(start, end))
        rows = dataset.to_list()
        if not rows:
            raise _empty_error(label)
    seed = spec.get("shuffle_seed")
    if seed is not None:
        rows = [rows[i] for i in shuffle_order(len(rows), seed)]
    return rows


def source_positions(source: Mapping[str, Any] | str | os.PathLike, n: int) -> list[int]:
    """Row i of `load_rows(source)` (n rows) is row `positions[i]` (0-based) of the source itself: `select` is
    applied first, then `shuffle_seed`. For messages that name a row the user can find."""
    spec = _normalize(source)
    select = spec.get("select")
    start = int(select[0]) if isinstance(select, (list, tuple)) and select else 0
    seed = spec.get("shuffle_seed")
    order = shuffle_order(n, seed) if seed is not None else range(n)
    return [start + i for i in order]


def row_locator(source: Mapping[str, Any] | str | os.PathLike, base_dir: Path | None = None):
    """A function naming row `position` of the source (0-based, as `source_positions` gives) for messages:
    "row 3 (line 4)" in a JSONL file, whose editors show line numbers, else "row 3"."""
    spec = _normalize(source)
    path = _resolve_path(spec["path"], base_dir) if "path" in spec else None
    if path is None or path.suffix.lower() not in JSONL_SUFFIXES:
        return lambda position: f"row {position}"
    lines: list[int] = []

    def locate(position: int) -> str:
        if not lines:  # read only when a message needs it
            try:
                with open(path, "rb") as fh:
                    lines.extend(n for n, line in enumerate(fh, start=1) if line.strip())
            except OSError:
                pass
        return f"row {position} (line {lines[position]})" if position < len(lines) else f"row {position}"

    return locate


def shuffle_order(n: int, seed: int) -> list[int]:
    """The row order `datasets.Dataset.shuffle(seed=seed)` gives a dataset of `n` rows."""
    import numpy as np  # numpy is light and always present with torch / datasets

    return [int(i) for i in np.random.default_rng(seed).permutation(n)]


def source_label(source: Mapping[str, Any] | str | os.PathLike,
                 base_dir: Path | None = None) -> str:
    """A short human name for a source, used to start error messages."""
    spec = source if isinstance(source, Mapping) else {"path": source}
    if spec.get("path") is not None:
        try:
            return f"data file {_resolve_path(spec['path'], base_dir)}"
        except DataError:
            return f"data file {spec['path']}"
    if spec.get("hub") is not None:
        return f"Hub dataset {spec['hub']!r} (split {spec.get('split') or 'train'!r})"
    return "data source"


# --------------------------------------------------------------------------- validation


def _normalize(source: Any) -> dict[str, Any]:
    if isinstance(source, (str, os.PathLike)):
        return {"path": source}
    if not isinstance(source, Mapping):
        raise DataError(f"a data source must be a mapping with `path:` or `hub:`, got "
                        f"{type(source).__name__}.")
    spec = dict(source)
    unknown = sorted(str(k) for k in spec if k not in SOURCE_KEYS)
    if unknown:
        raise DataError(f"data source has unknown key(s) {', '.join(unknown)}; allowed keys "
                        f"are {', '.join(SOURCE_KEYS)}.")
    has_path = spec.get("path") is not None
    has_hub = spec.get("hub") is not None
    if has_path == has_hub:
        raise DataError("a data source needs exactly one of `path:` (a local .jsonl, .json, "
                        ".csv or .parquet file) or `hub:` (a Hugging Face dataset id); "
                        f"got {'both' if has_path else 'neither'}.")
    if has_hub and (not isinstance(spec["hub"], str) or not spec["hub"].strip()):
        raise DataError(f"`hub:` must be a dataset id such as 'org/name', got {spec['hub']!r}.")
    split = spec.get("split")
    if split is not None and not isinstance(split, str):
        raise DataError(f"`split:` must be a split name such as 'train', got {split!r}.")
    seed = spec.get("shuffle_seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise DataError(f"`shuffle_seed:` must be a non-negative integer (or null for no "
                        f"shuffle), got {seed!r}.")
    return spec


class SelectError(DataError):
    """`select:` does not fit its source; `message` and `hint` kept apart for a config problem at its key."""

    def __init__(self, message: str, hint: str):
        self.message, self.hint = message, hint
        super().__init__(f"{message}. {hint[0].upper()}{hint[1:]}.")


def _parse_select(select: Any, label: str) -> tuple[int, int]:
    ok = (isinstance(select, (list, tuple)) and len(select) == 2
          and all(isinstance(v, int) and not isinstance(v, bool) for v in select))
    if not ok:
        raise SelectError(f"`select:` of {label} must be a pair [start, end] of integers (rows "
                          f"start..end-1), got {select!r}", "e.g. select: [0, 128]")
    start, end = select
    if start < 0 or end <= start:
        raise SelectError(f"`select: [{start}, {end}]` of {label} is not a valid range",
                          "it needs 0 <= start < end, e.g. select: [0, 128]")
    return start, end


def _empty_error(label: str) -> DataError:
    return DataError(f"{label} is empty: it has no rows to train or evaluate on. Point the "
                     "source at data with at least one row.")


def _check_select(select: Any, total: int, label: str) -> tuple[int, int]:
    if select is None:
        return 0, total
    start, end = _parse_select(select, label)
    if end > total:
        raise SelectError(f"`select: [{start}, {end}]` is out of range: {label} has only {total} rows",
                          f"use an end of at most {total}")
    return start, end


def _resolve_path(path: Any, base_dir: Path | None) -> Path:
    if not isinstance(path, (str, os.PathLike)) or not str(path).strip():
        raise DataError(f"`path:` must be a file path, got {path!r}.")
    p = Path(os.path.expanduser(os.fspath(path)))
    if not p.is_absolute() and base_dir is not None:
        p = Path(base_dir) / p
    return p


# --------------------------------------------------------------------------- local files


def _check_file(path: Path) -> str:
    if not path.exists():
        raise DataError(f"data file {path} does not exist. Check `path:` (relative paths are "
                        "taken from the experiment file's folder).")
    if path.is_dir():
        raise DataError(f"data file {path} is a folder; point `path:` at a .jsonl, .json, "
                        ".csv or .parquet file.")
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise DataError(f"data file {path} has an unsupported type {suffix or '(none)'!r}; "
                        f"use one of {', '.join(SUPPORTED_SUFFIXES)}.")
    return suffix


def _read_file(path: Path) -> list[dict[str, Any]]:
    suffix = _check_file(path)
    try:
        if suffix in JSONL_SUFFIXES:
            return _read_jsonl(path)
        if suffix == ".json":
            return _read_json(path)
        if suffix == ".csv":
            return _read_csv(path)
        return _read_parquet(path)
    except DataError:
        raise
    except UnicodeDecodeError as exc:
        whole = suffix in JSONL_SUFFIXES or suffix == ".json"  # read whole: the byte offset is the file's
        line = exc.object[:exc.start].count(b"\n") + 1 if whole and isinstance(exc.object, bytes) else None
        where = f", line {line}" if line else ""
        raise DataError(f"data file {path}{where}: not valid UTF-8 text ({exc.reason} at byte "
                        f"{exc.start}). Save the file as UTF-8.") from exc
    except OSError as exc:
        raise DataError(f"data file {path} cannot be read: {exc.strerror or exc}.") from exc


def _read_text(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    return text[1:] if text.startswith("\ufeff") else text


def _read_jsonl(path: Path, text: str | None = None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    text = _read_text(path) if text is None else text
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"data file {path}, line {lineno}: not valid JSON ({exc.msg}, "
                            f"column {exc.colno}). Each line of a JSONL file must be one JSON "
                            "object; fix or delete that line.") from None
        if not isinstance(row, dict):
            raise DataError(f"data file {path}, line {lineno}: expected a JSON object "
                            f"{{...}} but found {_json_kind(row)}. Each line must be one row "
                            "object such as {\"instruction\": ..., \"response\": ...}.")
        rows.append(row)
    return rows


def _read_json(path: Path) -> list[dict[str, Any]]:
    text = _read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":  # a JSON-lines file saved with a .json name
            return _read_jsonl(path, text)
        raise DataError(f"data file {path}, line {exc.lineno}: not valid JSON ({exc.msg}, "
                        f"column {exc.colno}).") from None
    if isinstance(data, dict):
        lists = {k: v for k, v in data.items() if isinstance(v, list)}
        if len(lists) == 1 and all(isinstance(r, dict) for r in next(iter(lists.values()))):
            data = next(iter(lists.values()))  # {"data": [{...}, ...]}
        elif data and len(lists) == len(data) and len({len(v) for v in lists.values()}) == 1:
            keys = list(lists)
            data = [dict(zip(keys, values)) for values in zip(*lists.values())]  # columns
        else:
            raise DataError(f"data file {path}: expected a list of row objects, or an object "
                            "of equal-length column lists. Convert it to JSONL (one object "
                            "per line) if in doubt.")
    if not isinstance(data, list):
        raise DataError(f"data file {path}: expected a list of row objects, found "
                        f"{_json_kind(data)}.")
    for i, row in enumerate(data):
        if not isinstance(row, dict):
            raise DataError(f"data file {path}, row {i}: expected a JSON object but found "
                            f"{_json_kind(row)}.")
    return data


def _read_csv(path: Path) -> list[dict[str, Any]]:
    import pandas as pd

    try:
        # CSV cells are text: a column of answers like 42 or NA stays "42" and "NA" (pandas would make them
        # numbers and missing values); only an empty cell is missing (None).
        df = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        return []
    except (pd.errors.ParserError, ValueError) as exc:
        raise DataError(f"data file {path} is not valid CSV: {exc}. Check quoting and the "
                        "number of fields on that line.") from None
    return df.astype(object).where(df.notna(), None).to_dict("records")


def _read_parquet(path: Path) -> list[dict[str, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pylist()
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"data file {path} is not a readable Parquet file: {exc}.") from None


def _json_kind(value: Any) -> str:
    return {list: "a list", str: "a string", int: "a number", float: "a number",
            bool: "true/false", type(None): "null", dict: "an object"}.get(type(value),
                                                                           type(value).__name__)
