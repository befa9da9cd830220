"""Problem reports: every mistake in a config, each naming file, line, field path and the fix."""
from __future__ import annotations

from dataclasses import dataclass

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


class ConfigError(RftuiError):
    """One or more problems in an experiment config or a clone edit."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        count = len(self.problems)
        head = f"{count} problem{'s' if count != 1 else ''} in the config:"
        super().__init__("\n".join([head, *(f"  {p}" for p in self.problems)]))
