"""The event log pane: quanta done, ops applied or refused (with the reason), warnings, errors."""
from __future__ import annotations

from typing import Any, Callable

from rich.text import Text
from textual.events import Resize
from textual.widgets import RichLog

from rftui.ui.colors import theme_color
from rftui.ui.model import LogLine

MAX_LINES = 1000
_LEVEL_VARIABLE = {"info": "foreground", "success": "success", "warning": "warning", "error": "error",
                   "op": "foreground-muted"}


def clock_text(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60:02d}:{rest % 60:02d}"


class EventLog(RichLog):
    """A RichLog of LogLines, each stamped with the time since the app started (wraps at words).

    Engine lines can be deferred to the screen's paced redraw (`add(..., defer=True)`, then
    `flush()`): every write re-lays out the screen, which costs more than the line itself.
    A line with a key replaces the earlier line with that key, keeping its place and stamp (a
    warning every run gives stays one line that lists the runs)."""

    DEFAULT_CSS = """
    EventLog { height: 6; border: round $panel-lighten-2; border-title-color: $foreground; padding: 0 1;
               scrollbar-size-vertical: 1; }
    """  # the screen sets its height: more on a tall terminal

    def __init__(self, elapsed: Callable[[], float], **kwargs: Any) -> None:
        super().__init__(max_lines=MAX_LINES, wrap=True, markup=False, highlight=False, **kwargs)
        self.elapsed = elapsed
        self.lines_written: list[tuple[str, LogLine]] = []
        self.border_title = "events"
        self._wrapped_at = 0
        self._deferred: list[tuple[str, LogLine]] = []
        self._stale = False  # a written line was replaced: the next flush rewrites them all

    def add(self, line: LogLine, defer: bool = False) -> None:
        if not (line.key is not None and self._replace(line)):
            self._deferred.append((clock_text(self.elapsed()), line))
        if not defer:
            self.flush()

    def _replace(self, line: LogLine) -> bool:
        for entries in (self._deferred, self.lines_written):
            for i in range(len(entries) - 1, -1, -1):
                stamp, old = entries[i]
                if old.key == line.key:
                    entries[i] = (stamp, line)
                    self._stale = self._stale or entries is self.lines_written
                    return True
        return False

    def flush(self) -> None:
        """Write the deferred lines (one layout for all of them)."""
        entries, self._deferred = self._deferred, []
        self.lines_written += entries
        del self.lines_written[:-MAX_LINES]
        if self._stale:
            self.rewrite()
            return
        for entry in entries:
            self._show(*entry)

    def _show(self, stamp: str, line: LogLine) -> None:
        variables = self.app.theme_variables
        body = Text(line.text, style=theme_color(_LEVEL_VARIABLE.get(line.level, "foreground"), variables))
        if line.level == "error":
            body.stylize("bold")
        width = self.scrollable_content_region.width
        self.write(Text.assemble((stamp + " ", theme_color("foreground-muted", variables)), body),
                   width=width if width > 0 else None)

    def on_resize(self, event: Resize) -> None:
        """Lines are wrapped when written: re-wrap them all for the new width."""
        super().on_resize(event)
        width = self.scrollable_content_region.width
        if width and width != self._wrapped_at:
            self._wrapped_at = width
            self.rewrite()

    def rewrite(self) -> None:
        self._stale = False
        self.clear()
        for stamp, line in self.lines_written:
            self._show(stamp, line)

    def texts(self) -> list[str]:
        return [line.text for _, line in self.lines_written + self._deferred]
