"""Command palette (ctrl+p): every op for every run, plus the screen's own commands."""
from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Callable, Iterator

from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:
    from rftui.ui.app import RftuiApp

OPS = (("stop", "Stop"), ("resume", "Resume"), ("clone", "Clone"), ("clone-warm", "Clone with warm start"),
       ("delete", "Delete"), ("details", "Show details of"))


def entries(app: "RftuiApp", selected_only: bool = False) -> Iterator[tuple[str, Callable[[], None], str]]:
    """(text, callback, help) for each command."""
    screen = app.main
    runs = screen.model.visible_runs()
    if selected_only:
        runs = [r for r in runs if r.run_id == screen.selected]
    for row in runs:
        for op, verb in OPS:
            yield (f"{verb} run {row.run_id} ({row.label})", partial(app.run_command, op, row.run_id),
                   f"{row.run_id} is {row.status}")
    yield "Cycle chart metric", screen.action_cycle_metric, f"now: {screen.metric}"
    for metric in ("loss", "eval_loss", "rougeL", "bleu", "learning_rate"):
        yield f"Chart metric: {metric}", partial(screen.set_metric, metric), ""
    yield "Sort runs by the next column", screen.action_cycle_sort, ""
    yield "Next theme", app.action_cycle_theme, f"now: {app.theme}"
    yield "Keys (help)", app.action_help, ""
    yield "Quit", app.action_request_quit, "stop & checkpoint" if app.source.hosted else "stop watching"


class RunCommands(Provider):
    async def discover(self) -> Hits:
        for text, callback, help_text in entries(self.app, selected_only=True):  # type: ignore[arg-type]
            yield DiscoveryHit(text, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for text, callback, help_text in entries(self.app):  # type: ignore[arg-type]
            score = matcher.match(text)
            if score > 0:
                yield Hit(score, matcher.highlight(text), callback, help=help_text)
