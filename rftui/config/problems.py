"""Problem reports: every mistake in a config, each naming file, line, field path and the fix."""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from rftui.config.yaml_lines import line_map
from rftui.errors import RftuiError


@dataclass(frozen=True)
class Problem:
    path: str
    message: str
    hint: str = ""
    file: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = f"{self.file}:{self.line}: " if self.line else f"{self.file}: "
        text = f"{where}{self.path}: {self.message}" if self.path else f"{where}{self.message}"
        return f"{text} — {self.hint}" if self.hint else text


_MAX_CONFIG_BYTES = 1 << 20


def _located(problems: list[Problem]) -> list[Problem]:
    """Problems found after parsing (e.g. num_chunks against the step count) name their file but not
    the line: give each the line of its field path when the file still has that key."""
    maps: dict[str, dict[str, int]] = {}
    out = []
    for p in problems:
        if p.file and p.path and p.line is None:
            if p.file not in maps:
                try:
                    small = Path(p.file).stat().st_size <= _MAX_CONFIG_BYTES
                    maps[p.file] = line_map(Path(p.file).read_text(encoding="utf-8")) if small else {}
                except (OSError, UnicodeDecodeError):
                    maps[p.file] = {}
            line = maps[p.file].get(p.path)
            p = replace(p, line=line) if line else p
        out.append(p)
    return out


class ConfigError(RftuiError):
    """One or more problems in an experiment config or a clone edit."""

    def __init__(self, problems: list[Problem]):
        self.problems = _located(list(problems))
        count = len(self.problems)
        head = f"{count} problem{'s' if count != 1 else ''} in the config:"
        super().__init__("\n".join([head, *(f"  {p}" for p in self.problems)]))
