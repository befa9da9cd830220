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
    iterable) of mappings, or a dict of equal-length column lists. `name` is used in error
    messages ("train_dataset", ...).
    """
    if ds is None:
        raise DataError(f"{name} is missing: pass a datasets.Dataset, a pandas DataFrame "
                        "or a list of dicts.")
    if isinstance(ds, (str, bytes, os.PathLike)):
        raise DataError(f"{name} is a path ({ds!r}), not rows. Load it first, or use "
                        "rftui.data.sources.load_rows({'path': ...}).")
    kind = type(ds).__name__
    if _is_columns(ds, kind):
        ds = _columns_to_rows(ds, name)  # {"instruction": [...], "response": [...]}, as Dataset.from_dict takes
    elif isinstance(ds, Mapping) or kind in ("DatasetDict", "IterableDatasetDict"):
        keys = ", ".join(repr(k) for k in list(ds.keys())[:5])
        raise DataError(f"{name} is a {kind} with splits ({keys}), not a single dataset. "
                        "Pass one split, for example dataset['train'].")
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


def _is_columns(ds: Any, kind: str) -> bool:
    """A dict of column lists; a dict of lists of row dicts ({"train": [{...}], ...}) is splits."""
    if not isinstance(ds, Mapping) or kind in ("DatasetDict", "IterableDatasetDict") or not ds:
        return False
    values = list(ds.values())
    if not all(isinstance(v, (list, tuple)) for v in values):
        return False
    return not all(v and all(isinstance(r, Mapping) for r in v) for v in values)


def _columns_to_rows(columns: Mapping[str, Any], name: str) -> list[dict[str, Any]]:
    lengths = {str(k): len(v) for k, v in columns.items()}
    if len(set(lengths.values())) != 1:
        listed = ", ".join(f"{k!r}: {n}" for k, n in lengths.items())
        raise DataError(f"{name} is a dict of columns of different lengths ({listed}); every column needs "
                        "one value per row.")
    keys = list(columns)
    return [dict(zip(keys, values)) for values in zip(*columns.values())]
