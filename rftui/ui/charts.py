"""Loss charts: a paginated grid of per-run panes and one overlay of every run (textual-plotext).

Each chart owns its `plt`; data is downsampled to the pane width before plotting, and a chart
rebuilds its text only when its data, size or theme changed (plotext's build is the slow part).
The screen decides when to draw (a 4 Hz timer, or at once after a key).
"""
from __future__ import annotations

import math
import time
from typing import Any, Iterable

from textual.containers import Container
from textual.message import Message
from textual.strip import Strip
from textual_plotext import PlotextPlot

from rftui.ui.ansi_strips import ansi_to_strips
from rftui.ui.model import ExperimentModel, Series

METRIC_TITLES = {"loss": "loss, ● eval loss", "eval_loss": "eval loss", "rougeL": "ROUGE-L",
                 "bleu": "BLEU", "learning_rate": "learning rate"}
MIN_PANE_WIDTH = 34
MIN_PANE_HEIGHT = 8
CHROME_ROWS = 3  # plotext's rows around the canvas here: top frame, x axis, x labels (no title)
Y_GAPS = (3, 4, 5, 2)  # rows between y labels, in order of preference
MAX_Y_INTERVALS = 6


def metric_name(metric: str) -> str:
    """The metric as people read it: `eval loss`, `ROUGE-L`, `learning rate`."""
    return METRIC_TITLES.get(metric, metric).split(",")[0]


def _xy(series: Series | None, buckets: int) -> tuple[list[int], list[float]]:
    if series is None or not len(series):
        return [], []
    return series.sampled(buckets)


def last_step(model: ExperimentModel, run_ids: list[str], metric: str) -> int:
    steps = [0]
    for run_id in run_ids:
        for series in model.metric_series(run_id, metric):
            if series is not None and len(series):
                steps.append(series.steps[-1])
    return max(steps)


def first_step(model: ExperimentModel, row: Any, metric: str) -> int:
    """Where a warm-start clone's chart begins: its first point (0 for a run trained from scratch)."""
    if row is None or not row.warm_start:
        return 0
    firsts = [s.steps[0] for s in model.metric_series(row.run_id, metric) if s is not None and len(s)]
    return min(firsts, default=0)


def y_axis(lo: float, hi: float, rows: int) -> tuple[tuple[float, float], list[float], list[str]] | None:
    """Y limits, ticks and labels for data in [lo, hi] on a canvas `rows` high, with a label
    exactly every few rows from the bottom one up (plotext's own 7 ticks collide on short charts and
    it drops labels unevenly). The data spans the labelled rows; fewer than a gap of rows stay
    empty above it. None: no room for two labels."""
    if rows < 2:
        return None
    if hi == lo:  # as plotext: a flat line sits mid-chart
        lo, hi = (0.5 * lo, 1.5 * lo) if lo else (-1.0, 1.0)
        lo, hi = min(lo, hi), max(lo, hi)
    span = rows - 1
    if span > MAX_Y_INTERVALS * max(Y_GAPS):  # a tall chart: the most labels, wider apart
        k = next(k for k in range(MAX_Y_INTERVALS, 1, -1) if span % k < span // k)
        gap = span // k
    else:  # the fewest empty rows, then the preferred gap
        options = [(span - k * g, i, k, g) for i, g in enumerate(Y_GAPS)
                   for k in [min(MAX_Y_INTERVALS, span // g)] if k >= 2]
        _, _, k, gap = min(options) if options else (0, 0, 1, span)
    ticks = [lo + (hi - lo) * i / k for i in range(k + 1)]
    top = lo + (hi - lo) * span / (k * gap)  # the tick k lands on row k * gap exactly
    return (lo, top), ticks, tick_labels(ticks)


def tick_labels(ticks: list[float]) -> list[str]:
    """The same number of decimals on every label: the fewest that tell neighbours apart, plus one."""
    big = max(abs(t) for t in ticks)
    scientific = 0 < big < 1e-3 or big >= 1e6
    for digits in range(0, 8):
        labels = [f"{t + 0.0:.{digits}e}" if scientific else f"{t + 0.0:.{digits}f}" for t in ticks]
        if len(set(labels)) == len(labels):
            break
    more = min(digits + 1, 8)
    return [f"{t + 0.0:.{more}e}" if scientific else f"{round(t, more) + 0.0:.{more}f}" for t in ticks]


class Chart(PlotextPlot):
    """A PlotextPlot drawn line by line from cached Strips, rebuilt only after `changed()`, a
    resize or a theme switch (see rftui.ui.ansi_strips for why not `Text.from_ansi`)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._version = 0
        self._cache_key: tuple | None = None
        self._strips: list[Strip] = []
        self._ylo, self._yhi = math.inf, -math.inf  # the range of the y values plotted
        self.y_ticks: list[float] = []  # those of the last build (tests read them)
        self.rendered_at = 0.0  # perf_counter() of the last rebuild (the latency test reads it)

    def clear_plot(self) -> None:
        self.plt.clear_data()
        self._ylo, self._yhi = math.inf, -math.inf

    def _plotted(self, ys: list[float]) -> None:
        finite = [y for y in ys if math.isfinite(y)]
        if finite:
            self._ylo, self._yhi = min(self._ylo, *finite), max(self._yhi, *finite)

    def changed(self) -> None:
        self._version += 1
        self.refresh()

    def _build(self) -> None:
        width, height = self.size.width, self.size.height
        key = (width, height, self.app.theme, self._version)
        if key == self._cache_key:
            return
        plot = self.plt
        plot.plotsize(width, height)
        plot._set_size(width, height)  # as PlotextPlot.render does (textual-plotext issue #5)
        plot.theme(self._get_plotext_theme_name(self.app.theme))
        axis = y_axis(self._ylo, self._yhi, height - CHROME_ROWS) if self._ylo <= self._yhi else None
        if axis is None:
            plot.ylim(None, None)
            plot.yticks([], [])  # (plotext cannot go back to its own ticks: yticks(None) raises)
            self.y_ticks = []
        else:
            (low, top), self.y_ticks, labels = axis
            plot.ylim(low, top)
            plot.yticks(self.y_ticks, labels)
        self._strips = ansi_to_strips(plot.build(), width) if width > 0 and height > 0 else []
        self._cache_key = key
        self.rendered_at = time.perf_counter()

    def render_line(self, y: int) -> Strip:
        self._build()
        if 0 <= y < len(self._strips):
            return self._strips[y]
        return Strip.blank(self.size.width)

    @property
    def stale(self) -> bool:
        """Changed since it was last rendered."""
        return self._cache_key is None or self._cache_key[3] != self._version

    @property
    def plot_width(self) -> int:
        return max(10, self.content_size.width or self.size.width or 40)

    def plot_run(self, model: ExperimentModel, run_id: str, metric: str, color: Any, line: bool = True,
                 points: bool = True) -> None:
        """The run's metric: a braille line (or, cheaper, dense braille dots) plus eval points."""
        series, marks = model.metric_series(run_id, metric)
        buckets = self.plot_width
        xs, ys = _xy(series, buckets)
        if xs:
            (self.plt.plot if line else self.plt.scatter)(xs, ys, marker="braille", color=color)
            self._plotted(ys)
        if not points:
            return
        if marks is not None and marks is not series:
            px, py = _xy(marks, max(2, buckets // 4))  # a marker at most every other column
            if px:
                self.plt.scatter(px, py, marker="●", color=color)
                self._plotted(py)
        elif marks is not None and len(xs) <= buckets // 2:
            self.plt.scatter(xs, ys, marker="●", color=color)

    def finish_axes(self, last_step: int = 0, first_step: int = 0) -> None:
        """Integer step ticks (plotext would label 16.8, 32.5, ...) from `first_step` (a warm-start clone's
        points begin at its parent's step: ticks below them were not drawn, leaving one label)."""
        width = self.plot_width
        count = max(2, min(5, width // 10))
        top = max(first_step + 1, last_step)
        ticks = sorted({round(first_step + (top - first_step) * i / (count - 1)) for i in range(count)})
        self.plt.xticks(ticks, [str(t) for t in ticks])


class RunPane(Chart):
    """One run's chart; the border says which run and its latest value."""

    DEFAULT_CSS = """
    RunPane { border: round $panel-lighten-2; border-title-color: $foreground; padding: 0; min-height: 6; }
    RunPane.-selected { border: heavy $accent; border-title-color: $accent; border-title-style: bold; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.run_id: str | None = None

    def draw(self, model: ExperimentModel, metric: str, color: Any) -> None:
        self.clear_plot()
        row = model.runs.get(self.run_id or "")
        self.finish_axes(last_step(model, [self.run_id or ""], metric), first_step(model, row, metric))
        if row is None:
            self.border_title = ""
            self.border_subtitle = ""
            self.changed()
            return
        self.plot_run(model, row.run_id, metric, color)
        self.border_title = f"{row.run_id} {row.label}"
        latest = row.last.get(metric)
        name = metric_name(metric)  # as the overlay's title says it (ROUGE-L, not rougeL)
        self.border_subtitle = f"{name} {latest:.4g}" if latest is not None and not math.isnan(latest) else row.status
        self.changed()


class OverlayChart(Chart):
    """Every visible run on one chart. The selected run is a line in its full colour, drawn last;
    the others are dots in muted colours (dots also keep this big chart cheap to rebuild)."""

    DEFAULT_CSS = """
    OverlayChart { border: round $panel-lighten-2; border-title-color: $foreground; width: 1fr; }
    """

    def draw(self, model: ExperimentModel, metric: str, colors: dict[str, Any], selected: str | None,
             page: str = "", background: Any = None) -> None:
        self.clear_plot()
        runs = [r.run_id for r in model.visible_runs()]
        self.finish_axes(last_step(model, runs, metric))
        for run_id in runs:
            if run_id != selected:
                color = colors.get(run_id, (128, 128, 128))
                self.plot_run(model, run_id, metric, muted(color, background), line=False, points=False)
        if selected in runs:
            self.plot_run(model, selected, metric, colors.get(selected, (255, 255, 255)), points=metric != "loss")
        self.border_title = f"all runs · {metric_name(metric)}"
        self.border_subtitle = " · ".join(p for p in (page, f"line: {selected}" if selected else "") if p)
        self.changed()


def muted(color: Any, background: Any, amount: float = 0.45) -> Any:
    """`color` moved `amount` of the way toward the background (RGB tuples only)."""
    if not (isinstance(color, tuple) and isinstance(background, tuple)):
        return color
    return tuple(round(c + (b - c) * amount) for c, b in zip(color, background))


class ChartGrid(Container):
    """As many run panes as fit (each at least MIN_PANE_WIDTH x MIN_PANE_HEIGHT); the page shown
    is the one holding the selected run."""

    DEFAULT_CSS = """
    ChartGrid { layout: grid; grid-size: 1 1; width: 1fr; height: 1fr; grid-gutter: 0 1; }
    """

    class Resized(Message):
        """The grid's size changed: the screen re-arranges the panes."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.page = 0
        self.pages = 1
        self.capacity = 1
        self._shape = (1, 1)
        self._panes: list[RunPane] = []

    def on_resize(self) -> None:
        self.post_message(self.Resized())

    def layout_for(self, count: int) -> tuple[int, int]:
        width, height = self.size.width or 80, self.size.height or MIN_PANE_HEIGHT
        cols = max(1, width // MIN_PANE_WIDTH)
        rows = max(1, height // MIN_PANE_HEIGHT)
        self.capacity = cols * rows
        shown = max(1, min(count, self.capacity))
        cols = min(cols, shown)
        return cols, math.ceil(shown / cols)

    def panes(self) -> list[RunPane]:
        return list(self._panes)

    def show_page(self, run_ids: list[str], selected: str | None) -> list[RunPane]:
        """Show the page holding `selected`; returns the panes whose run changed (to redraw)."""
        cols, rows = self.layout_for(len(run_ids))
        if (cols, rows) != self._shape:
            self._shape = (cols, rows)
            self.styles.grid_size_columns = cols
            self.styles.grid_size_rows = rows
        self.pages = max(1, math.ceil(len(run_ids) / self.capacity))
        if selected in run_ids:
            self.page = run_ids.index(selected) // self.capacity
        self.page = min(self.page, self.pages - 1)
        shown = run_ids[self.page * self.capacity:(self.page + 1) * self.capacity]
        if len(self._panes) < len(shown):
            new = [RunPane() for _ in range(len(shown) - len(self._panes))]
            self.mount_all(new)
            self._panes += new
        for extra in self._panes[len(shown):]:
            extra.remove()
        panes = self._panes = self._panes[:len(shown)]
        changed = []
        for pane, run_id in zip(panes, shown):
            if pane.run_id != run_id:
                pane.run_id = run_id
                changed.append(pane)
            pane.set_class(run_id == selected, "-selected")
        return changed

    def visible_runs(self) -> Iterable[str]:
        return [p.run_id for p in self.panes() if p.run_id]
