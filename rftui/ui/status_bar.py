"""The status bar: experiment state, each worker and what it runs now, elapsed time and ETA.

Parts that do not fit the width are dropped whole (lowest priority first), never cut.
"""
from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Static

from rftui.ui.colors import theme_color
from rftui.ui.event_log import clock_text
from rftui.ui.model import ExperimentModel


def fit_parts(parts: list[tuple[int, Text]], width: int, separator: str = " │ ") -> Text:
    """Join (priority, text) parts in order, leaving out the lowest-priority ones until it fits."""
    chosen = list(parts)
    while chosen:
        total = sum(p.cell_len for _, p in chosen) + len(separator) * (len(chosen) - 1)
        if total <= width or len(chosen) == 1:
            break
        drop = max(range(len(chosen)), key=lambda i: (chosen[i][0], i))
        chosen.pop(drop)
    out = Text(no_wrap=True, overflow="ellipsis")
    for i, (_, part) in enumerate(chosen):
        if i:
            out.append(separator, style="dim")
        out.append_text(part)
    return out


class StatusBar(Static):
    DEFAULT_CSS = """
    StatusBar { height: 1; width: 1fr; background: $panel; color: $foreground; padding: 0 1; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("", **kwargs)
        self._shown = Text()

    def show(self, model: ExperimentModel, elapsed: float | None, hosted: bool, stopping: bool, note: str = "") -> None:
        """`elapsed` None: not known (a watcher on a state.db written before the session clock was kept)."""
        variables = self.app.theme_variables
        muted = theme_color("foreground-muted", variables)
        state = "stopping: checkpointing at the next optimizer step" if stopping else model.state()
        state_style = theme_color({"finished": "success", "running": "primary"}.get(state, "warning"), variables)
        parts: list[tuple[int, Text]] = [
            (0, Text.assemble((model.name, "bold"), " ", (state, state_style))),
        ]
        for worker_id, run_id in sorted(model.workers.items()):
            if run_id:
                row = model.runs.get(run_id)
                what = Text.assemble((f"w{worker_id} ", muted), (run_id, "bold"),
                                     (f" {row.step}/{row.total_steps}" if row else "", muted))
            else:
                what = Text.assemble((f"w{worker_id} ", muted), ("idle", muted))
            parts.append((2, what))
        if note:
            parts.append((1, Text(note, style=theme_color("warning", variables))))
        parts.append((3, Text.assemble(("elapsed ", muted), "-" if elapsed is None else clock_text(elapsed))))
        if not (stopping or state == "stopping"):  # winding down: no run will reach its end now
            parts.append((1, Text.assemble(("ETA ", muted), self._eta_text(model, state))))
        if not hosted:
            parts.append((4, Text("watching", style=muted)))
        text = fit_parts(parts, max(10, (self.size.width or 80) - 2))
        if text.plain != self._shown.plain or text.spans != self._shown.spans:
            self._shown = text
            self.update(text, layout=False)  # one line, fixed size: never re-layout the screen

    def _eta_text(self, model: ExperimentModel, state: str) -> str:
        """A clock only while something trains: the experiment runs and its owner is alive (a hosted engine
        whose feed has not stopped; a watcher reads `running` only beside a live owner, and stops reading
        once it is gone). An interrupted experiment, or one whose feed stopped, counts down to nothing."""
        if state == "finished":
            return "done"
        if state != "running" or not getattr(self.app, "bridge_alive", True):
            return "-"
        eta = model.eta_seconds()
        return "-" if eta is None else ("done" if eta == 0 else clock_text(eta))
