"""Rows from what a Python API user passes as a dataset: a `datasets.Dataset` or `IterableDataset`, a pandas
DataFrame, a list (or other iterable) of row dicts, or a dict of columns. Files and Hub ids are read by
`rftui.data.sources`; nothing heavy is imported here (the objects arrive already built)."""
from __future__ import annotations

import itertools
import os
from typing import Any, Iterable, Mapping, Sized

from rftui.errors import DataError

MAX_STREAMED_ROWS = 1_000_000  # a stream longer than this is taken for an endless one


def rows_from_dataset(ds: Any, name: str = "dataset") -> list[dict[str, Any]]:
    """Plain dict rows from what a Python API user passes as a dataset.

    Accepts a `datasets.Dataset` (its current order, so a dataset the user already
    selected and shuffled keeps that order), a pandas DataFrame, a list (or other
    iterable) of mappings, or a dict of equal-length columns (lists, numpy arrays, pandas
    Series), as `datasets.Dataset.from_dict` takes. `name` is used in error messages
    ("train_dataset", ...).
    """
    if ds is None:
        raise DataError(f"{name} is missing: pass a datasets.Dataset, a pandas DataFrame "
                        "or a list of dicts.")
    if isinstance(ds, (str, bytes, os.PathLike)):
        raise DataError(f"{name} is a path ({ds!r}), not rows. Load it first, or use "
                        "rftui.data.sources.load_rows({'path': ...}).")
    kind = type(ds).__name__
    if isinstance(ds, Mapping) or kind in ("DatasetDict", "IterableDatasetDict"):
        ds = _rows_of_mapping(ds, name, kind)  # {"instruction": [...], "response": [...]}, as Dataset.from_dict takes
    if kind == "DataFrame" and hasattr(ds, "to_dict") and hasattr(ds, "notna"):
        rows = ds.astype(object).where(ds.notna(), None).to_dict("records")
    elif hasattr(ds, "to_list") and isinstance(ds, Sized) and type(ds).__module__.split(".")[0] == "datasets":
        rows = ds.to_list()
    elif isinstance(ds, Sized) and isinstance(ds, Iterable):
        rows = list(ds)
    elif isinstance(ds, Iterable):  # a stream (IterableDataset, generator) may never end: read a bounded prefix
        rows = list(itertools.islice(ds, MAX_STREAMED_ROWS + 1))
        if len(rows) > MAX_STREAMED_ROWS:
            raise DataError(f"{name} ({kind}) gave more than {MAX_STREAMED_ROWS:,} rows without ending. "
                            "rftui keeps an experiment's rows when it is created (resume trains on the same rows): "
                            "pass a finite dataset, e.g. dataset.take(n).")
    else:
        raise DataError(f"{name} has type {kind}; expected a datasets.Dataset, a pandas "
                        "DataFrame or a list of dicts.")
    out: list[dict[str, Any]] = []
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise DataError(f"{name} row {i} is a {type(row).__name__}, not a mapping of "
                            "column names to values. Each row must be a dict.")
        out.append({str(k): v for k, v in row.items()})
    if not out:
        raise DataError(f"{name} is empty: it has no rows. Pass a dataset with at least "
                        "one row.")
    return out


_WHAT_TO_PASS = ("pass a dict of columns (column name → a list, numpy array or pandas Series with one value per "
                 "row, as datasets.Dataset.from_dict takes), a list of row dicts, a pandas DataFrame or a "
                 "datasets.Dataset")


def _column(value: Any) -> list | None:
    """A column's values as a plain list, or None when `value` is no column. Arrays give Python values
    (tolist), as a DataFrame's rows do; a pandas Series' missing values (NaN) are None, as in a DataFrame."""
    if isinstance(value, (list, tuple)):
        return list(value)
    if type(value).__name__ == "Series" and hasattr(value, "notna"):
        return value.astype(object).where(value.notna(), None).tolist()
    if (getattr(value, "ndim", 0) or 0) >= 1 and callable(getattr(value, "tolist", None)):  # numpy, torch
        return value.tolist()
    return None


def _is_split(value: Any) -> bool:
    """A whole dataset as a dict of splits holds it: a list of row dicts, a Dataset, a DataFrame."""
    if isinstance(value, (list, tuple)):
        return bool(value) and all(isinstance(r, Mapping) for r in value)
    return type(value).__name__ in ("Dataset", "IterableDataset", "DataFrame")


def _rows_of_mapping(ds: Mapping, name: str, kind: str) -> list[dict[str, Any]]:
    """The rows of a dict of columns; a dict of splits ({"train": [{...}], ...}, a DatasetDict) or of
    anything else is refused, saying what it holds."""
    if not ds:
        raise DataError(f"{name} is an empty {kind}: it has no columns; {_WHAT_TO_PASS}.")
    values = list(ds.values())
    if all(_is_split(v) for v in values) or kind in ("DatasetDict", "IterableDatasetDict"):
        keys = list(ds.keys())
        listed = ", ".join(repr(k) for k in keys[:5]) + (", ..." if len(keys) > 5 else "")
        raise DataError(f"{name} is a {kind} of splits ({listed}), not a single dataset. "
                        f"Pass one split, for example {name}[{keys[0]!r}].")
    columns = {str(k): _column(v) for k, v in ds.items()}
    odd = [(k, v) for (k, c), v in zip(columns.items(), values) if c is None]
    if odd:
        key, value = odd[0]
        raise DataError(f"{name} is a {kind} of {len(ds)} keys, but not of columns: {key!r} holds "
                        f"{type(value).__name__} {_short(value)}, not one value per row; {_WHAT_TO_PASS}.")
    return _columns_to_rows(columns, name)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _columns_to_rows(columns: Mapping[str, Any], name: str) -> list[dict[str, Any]]:
    lengths = {str(k): len(v) for k, v in columns.items()}
    if len(set(lengths.values())) != 1:
        listed = ", ".join(f"{k!r}: {n}" for k, n in lengths.items())
        raise DataError(f"{name} is a dict of columns of different lengths ({listed}); every column needs "
                        "one value per row.")
    keys = list(columns)
    return [dict(zip(keys, values)) for values in zip(*columns.values())]
