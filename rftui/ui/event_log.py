"""The event log pane: quanta done, ops applied or refused (with the reason), warnings, errors."""
from __future__ import annotations

from typing import Any, Callable

from rich.text import Text
from textual.widgets import RichLog

from rftui.ui.colors import theme_color
from rftui.ui.model import LogLine

_LEVEL_VARIABLE = {"info": "foreground", "success": "success", "warning": "warning", "error": "error",
                   "op": "foreground-muted"}


def clock_text(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60:02d}:{rest % 60:02d}"


class EventLog(RichLog):
    """A RichLog of LogLines, each stamped with the time since the app started (wraps at words)."""

    DEFAULT_CSS = """
    EventLog { height: 6; border: round $panel-lighten-2; border-title-color: $foreground; padding: 0 1;
               scrollbar-size-vertical: 1; }
    EventLog.-tall { height: 10; }
    """

    def __init__(self, elapsed: Callable[[], float], **kwargs: Any) -> None:
        super().__init__(max_lines=1000, wrap=True, markup=False, highlight=False, **kwargs)
        self.elapsed = elapsed
        self.lines_written: list[LogLine] = []
        self.border_title = "events"

    def add(self, line: LogLine) -> None:
        self.lines_written.append(line)
        variables = self.app.theme_variables
        stamp = Text(clock_text(self.elapsed()) + " ", style=theme_color("foreground-muted", variables))
        body = Text(line.text, style=theme_color(_LEVEL_VARIABLE.get(line.level, "foreground"), variables))
        if line.level == "error":
            body.stylize("bold")
        self.write(Text.assemble(stamp, body))

    def texts(self) -> list[str]:
        return [line.text for line in self.lines_written]
