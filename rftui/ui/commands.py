"""Command palette (ctrl+p): every op for every run, plus the screen's own commands."""
from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Callable, Iterator

from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:
    from rftui.ui.app import RftuiApp

OPS = (("stop", "Stop"), ("resume", "Resume"), ("clone", "Clone"), ("clone-warm", "Clone with warm start"),
       ("delete", "Delete"), ("details", "Show details of"))


def entries(app: "RftuiApp",
            selected_only: bool = False) -> Iterator[tuple[str, Callable[[], None], str, str | None]]:
    """(text, callback, help, the run it acts on or None) for each command."""
    screen = app.main
    runs = screen.model.visible_runs()
    if selected_only:
        runs = [r for r in runs if r.run_id == screen.selected]
    for row in runs:
        for op, verb in OPS:
            yield (f"{verb} run {row.run_id} ({row.label})", partial(app.run_command, op, row.run_id),
                   f"{row.run_id} is {row.status}", row.run_id)
    yield "Cycle chart metric", screen.action_cycle_metric, f"now: {screen.metric}", None
    for metric in ("loss", "eval_loss", "rougeL", "bleu", "learning_rate"):
        yield f"Chart metric: {metric}", partial(screen.set_metric, metric), "", None
    yield "Sort runs by the next column", screen.action_cycle_sort, "", None
    yield "Next theme", app.action_cycle_theme, f"now: {app.theme}", None
    yield "Keys (help)", app.action_help, "", None
    yield "Quit", app.action_request_quit, "stop & checkpoint" if app.source.hosted else "stop watching", None


# Textual 8's fuzzy scores are not bounded by 1: a named run's commands get this on top to come first.
NAMED_BOOST = 1000.0


def named_runs(query: str, runs: list) -> tuple[set[str], bool, str]:
    """(ids of the runs the query names, whether it names them by exact id or number, the rest of the query).

    `r3` or `3` names run r3 (only its commands are wanted); an exact label, which may hold spaces
    (`r=8 lr=1e-3`, shared by a run's clones), names its runs (their commands first). Fuzzy matching alone
    found `r`..`3` inside `lr=1e-3` and put another run's commands first."""
    by_key = {r.run_id.lower(): r.run_id for r in runs}
    exact, rest = set(), []
    for token in query.split():
        key = token.lower()
        run_id = by_key.get(key) or (by_key.get(f"r{int(key)}") if key.isdigit() else None)
        if run_id is None:
            rest.append(token)
        else:
            exact.add(run_id)
    if exact:
        return exact, True, " ".join(rest)
    text = f" {' '.join(query.split())} "
    named = set()
    for row in sorted(runs, key=lambda r: -len(r.label)):  # the longest label first: it may contain a shorter one
        label = " ".join(row.label.split())
        if not label:
            continue
        where = text.lower().find(f" {label.lower()} ")
        if where >= 0:
            named |= {r.run_id for r in runs if " ".join(r.label.split()) == label}
            text = text[:where] + " " + text[where + len(label) + 2:]
    return named, False, " ".join(text.split()) if named else query


class RunCommands(Provider):
    async def discover(self) -> Hits:
        for text, callback, help_text, _run in entries(self.app, selected_only=True):  # type: ignore[arg-type]
            yield DiscoveryHit(text, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        named, only, rest = named_runs(query, self.app.main.model.visible_runs())  # type: ignore[attr-defined]
        matcher = self.matcher(rest)
        for text, callback, help_text, run_id in entries(self.app):  # type: ignore[arg-type]
            if only and run_id not in named:
                continue
            if rest:
                score = matcher.match(text)
            else:  # the query only names runs: all of their commands, in the usual order
                score = 1.0 if run_id in named else 0.0
            if score > 0:
                shown = matcher.highlight(text) if rest else text
                yield Hit(score + (NAMED_BOOST if run_id in named else 0.0), shown, callback, help=help_text)
