"""Locate files that ship with rftui: themes and sample configs, from a wheel or a source checkout."""
from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def bundled_dir(name: str) -> Path:
    """The bundled folder `name` ("themes" or "sample_configs").

    A wheel carries them inside the package (`rftui/_bundled/`); a source checkout or an
    editable install keeps them at the repository's top level.
    """
    packaged = _PACKAGE_DIR / "_bundled" / name
    if packaged.is_dir():
        return packaged
    return _PACKAGE_DIR.parent / name


def sample_data_file() -> Path:
    """The bundled customer-support dataset (JSONL)."""
    return bundled_dir("sample_configs") / "data" / "support.jsonl"
