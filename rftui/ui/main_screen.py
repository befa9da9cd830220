"""The main screen: runs table, chart grid + overlay, event log, status bar, footer; the op keys.

Batches from the source only update the model and set dirty flags; a timer redraws what is
dirty at most `redraw_hz` times a second inside `app.batch_update()` (the overlay of all runs,
the costliest chart, at most once a second), less often while the UI would take more than its
CPU budget from training (rftui.ui.pacing). A key redraws at once.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.color import Color
from textual.containers import Horizontal, Vertical
from textual.css.scalar import Scalar
from textual.events import Resize
from textual.screen import Screen
from textual.widgets import DataTable

from rftui.engine import events as ev
from rftui.engine.ops import no_checkpoint_reason
from rftui.ui.charts import ChartGrid, OverlayChart
from rftui.ui.clone_dialog import CloneDialog
from rftui.ui.confirm import ConfirmDialog
from rftui.ui.details import DetailsScreen
from rftui.ui.event_log import EventLog
from rftui.ui.footer import KeysFooter
from rftui.ui.model import METRICS, Batch, Changes, ExperimentModel, LogLine
from rftui.ui.pacing import RedrawPacer
from rftui.ui.runs_table import RunsTable
from rftui.ui.status_bar import StatusBar

if TYPE_CHECKING:
    from rftui.ui.app import RftuiApp

WIDE = 140
# Rows above the footer, shared (see MainScreen.fit_rows): the table up to its cap, the rest to the
# charts (at least CHARTS_MIN), the event log and the status bar.
CHARTS_MIN = 6
TABLE_CAP, TABLE_CAP_TALL = 12, 20  # header + rows; more runs scroll inside the table
TABLE_MIN = 3                       # header + 2 rows
EVENTS_ROWS, EVENTS_ROWS_TALL, EVENTS_MIN = 6, 10, 3
TABLE_SECONDS = 1.0    # a row whose numbers changed is rewritten at most this often (DataTable
                       # re-renders every cell on any update)
OVERLAY_SECONDS = 1.0  # the overlay (every run, the biggest chart) follows new points at most this often
TALL = 40
EAGER_SECONDS = 2.0  # after an op is answered, redraw at full rate for this long, whatever the pacer says


class Body(Vertical):
    """Everything above the footer: its height is what the screen shares out (it never scrolls)."""

    def on_resize(self, event: Resize) -> None:
        if isinstance(self.screen, MainScreen):
            self.screen.fit_rows(event.size.height)


class MainScreen(Screen[None]):
    DEFAULT_CSS = f"""
    MainScreen {{ layout: vertical; overflow: hidden hidden; }}
    MainScreen #body {{ height: 1fr; overflow: hidden hidden; }}
    MainScreen #status {{ dock: bottom; }}
    MainScreen #charts {{ height: 1fr; min-height: {CHARTS_MIN}; }}
    MainScreen #charts ChartGrid {{ width: 1fr; }}
    MainScreen.-wide #charts ChartGrid {{ width: 2fr; }}
    """
    BINDINGS = [
        Binding("s", "op('stop')", "Stop", id="stop",
                tooltip="Stop the selected run at its next optimizer step (checkpointed, resumable)"),
        Binding("r", "op('resume')", "Resume", id="resume", tooltip="Resume the selected stopped run"),
        Binding("c", "clone(False)", "Clone", id="clone",
                tooltip="Clone the selected run with edited knobs, trained from scratch"),
        Binding("w", "clone(True)", "Warm", id="clone-warm",
                tooltip="Clone with warm start: continue from the run's current state with edited knobs"),
        Binding("d", "delete", "Delete", id="delete", tooltip="Delete the selected run (asks first)"),
        Binding("enter", "details", "Details", id="details",
                tooltip="Run details: full config, recent metrics, worker log tail"),
        Binding("m", "cycle_metric", "Metric", id="metric",
                tooltip="Chart metric: loss, eval loss, ROUGE-L, BLEU, learning rate"),
        Binding("o", "cycle_sort", "Sort", id="sort",
                tooltip="Sort the table by the next column (or click a header; again to reverse)"),
        Binding("t", "app.cycle_theme", "Theme", id="theme", tooltip="Next theme"),
        Binding("question_mark", "app.help", "Help", id="help", tooltip="This help"),
        Binding("q", "app.request_quit", "Quit", id="quit",
                tooltip="Quit: stop and checkpoint (resume later); a watcher just stops watching"),
    ]

    app: "RftuiApp"

    def __init__(self, model: ExperimentModel) -> None:
        super().__init__()
        self.model = model
        self.metric = "loss"
        self.selected: str | None = None
        self._dirty_runs: set[str] = set()
        self._dirty_statuses: set[str] = set()  # table rows shown even between paced redraws
        self._eager_until = 0.0  # until then every tick redraws (the user just acted)
        self._dirty_series: set[str] = set()
        self._columns = True
        self._status = True
        self._all = True          # redraw every chart
        self._table_all = True    # rebuild the table (columns, theme colours)
        self._chart_queue: dict[Any, None] = {}  # charts waiting for a redraw, in order
        self._overlay_dirty = False  # new points not yet on the overlay (redrawn at most 1 Hz)
        self._overlay_at = 0.0
        self._table_at = 0.0
        self._draining = False
        self.pacer: RedrawPacer | None = None
        self._finished_at: float | None = None  # training time when the experiment finished
        self._idle = 0.0  # seconds spent finished before a clone reopened it: not training time

    def compose(self) -> ComposeResult:
        with Body(id="body"):
            yield StatusBar(id="status")  # docked at the body's bottom: never pushed off screen
            yield RunsTable(id="runs")
            with Horizontal(id="charts"):
                yield ChartGrid(id="grid")
                yield OverlayChart(id="overlay")
            yield EventLog(self.app.elapsed, id="log")
        yield KeysFooter(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.pacer = RedrawPacer(self.app.redraw_hz, self.app.cpu_budget)
        self.set_interval(1.0 / self.app.redraw_hz, self._tick, name="redraw")
        self.app.theme_changed_signal.subscribe(self, self._theme_changed)
        self.app.screen_ready()

    def _theme_changed(self, _theme: Any) -> None:
        self.query_one(EventLog).rewrite()  # its colours come from the theme
        self.redraw_all()

    def on_resize(self) -> None:
        self.set_class(self.size.width >= WIDE, "-wide")
        self._all = self._table_all = True
        self.call_after_refresh(self.flush)

    def fit_rows(self, rows: int) -> None:
        """Share the `rows` above the footer so the whole screen fits: the table is as tall as its
        runs up to a cap that shrinks on a short terminal (more runs scroll inside it), the charts
        keep CHARTS_MIN, the event log its rows (fewer only below 80x24)."""
        tall = self.size.height >= TALL
        room = rows - 1 - CHARTS_MIN  # the table and the event log; 1: the status bar
        events = EVENTS_ROWS_TALL if tall else EVENTS_ROWS
        table_rows = max(TABLE_MIN, min(TABLE_CAP_TALL if tall else TABLE_CAP, room - events))
        events = max(EVENTS_MIN, min(events, room - table_rows))
        table, log = self.query_one(RunsTable), self.query_one(EventLog)
        if table.styles.max_height != Scalar.from_number(table_rows):
            table.styles.max_height = table_rows
            table.call_after_refresh(table.keep_selected_in_view)  # shorter: the selected row stays shown
        if log.styles.height != Scalar.from_number(events):
            log.styles.height = events

    # ------------------------------------------------------------------ feeding

    def apply_batch(self, batch: Batch) -> Changes:
        changes = self.model.apply(batch)
        if self.model.finished != (self._finished_at is not None):  # the clock stops with training (a clone restarts it)
            if self.model.finished:
                self._finished_at = self.app.elapsed() - self._idle
            else:  # reopened: the time it sat finished is not training time
                self._idle = self.app.elapsed() - self._finished_at
                self._finished_at = None
        if any(isinstance(event, ev.OpResolved) for event in batch.events):
            self.redraw_eagerly()  # an op from `rftui ctl` or the API: show its effect at once
        self._dirty_runs |= changes.runs
        self._dirty_statuses |= changes.statuses
        self._dirty_series |= changes.series
        self._columns |= changes.columns
        self._status = True
        log = self.query_one(EventLog)
        for line in changes.log:
            log.add(line, defer=True)  # written at the next redraw
        return changes

    def log_line(self, line: LogLine) -> None:
        self.query_one(EventLog).add(line)

    def redraw_all(self) -> None:
        self._all = self._table_all = self._columns = self._status = True
        self.flush()

    def _tick(self) -> None:
        if self.pacer is None or time.monotonic() < self._eager_until or self.pacer.due():
            self.flush()
            return
        self._refresh_status()  # one line, redrawn only when its text changes
        if self._dirty_statuses or self._columns:
            # A run started, stopped, failed or was added: its row agrees with the status bar now (at
            # start-up the table stayed empty for seconds while the pacer waited), and the event log
            # line saying why (a failure's reason) comes with it.
            self.query_one(RunsTable).sync(self.model, self._dirty_statuses, self._columns)
            self._dirty_runs = set() if self._columns else self._dirty_runs - self._dirty_statuses
            self._dirty_statuses, self._columns = set(), False
            self._keep_selection()
            self.query_one(EventLog).flush()

    def redraw_eagerly(self, seconds: float = EAGER_SECONDS) -> None:
        """An op was answered: show its effects (they arrive in the next batches) at full rate."""
        self._eager_until = max(self._eager_until, time.monotonic() + seconds)

    def flush(self) -> None:
        """Redraw what changed since the last flush (the paced timer calls this; keys call it at once)."""
        if not (self._all or self._table_all or self._dirty_runs or self._dirty_series or self._columns
                or self._status or self._overlay_dirty):
            self._refresh_status()
            return
        table = self.query_one(RunsTable)
        with self.app.batch_update():
            self.query_one(EventLog).flush()
            now = time.monotonic()
            table_due = self._dirty_runs and now - self._table_at >= TABLE_SECONDS
            if self._table_all or self._columns or table_due or self._dirty_statuses:
                table.sync(self.model, self._dirty_runs, self._columns, force=self._table_all)
                self._dirty_runs, self._dirty_statuses, self._table_at = set(), set(), now
                self._keep_selection()
            self._draw_charts(self._dirty_series, everything=self._all)
            self._refresh_status()
        self._dirty_series = set()
        self._columns = self._all = self._table_all = self._status = False

    def _keep_selection(self) -> None:
        if self.selected is None or self.selected not in {r.run_id for r in self.model.visible_runs()}:
            self.selected = self.query_one(RunsTable).selected_run

    def _ordered_runs(self) -> list[str]:
        table = self.query_one(RunsTable)
        return [row.key.value for row in table.ordered_rows] or [r.run_id for r in self.model.visible_runs()]

    def _draw_charts(self, dirty: set[str], everything: bool = False) -> None:
        """Queue the charts that need new data: the selected run's pane first, the overlay last.

        plotext's build is the slow part of a frame, so the first chart (the selected run's) is
        rebuilt alone: a key shows its effect at the next paint, the other charts one frame later."""
        grid = self.query_one(ChartGrid)
        moved = grid.show_page(self._ordered_runs(), self.selected)
        panes = sorted(grid.panes(), key=lambda p: p.run_id != self.selected)
        for pane in panes:
            if everything or pane in moved or pane.run_id in dirty:
                self._chart_queue[pane] = None
        self._overlay_dirty |= bool(dirty)
        now = time.monotonic()
        if everything or moved or (self._overlay_dirty and now - self._overlay_at >= OVERLAY_SECONDS):
            self._overlay_dirty, self._overlay_at = False, now
            self._chart_queue[self.query_one(OverlayChart)] = None
        if not self._draining:
            self._draw_next_chart()

    def _draw_next_chart(self, all_of_them: bool = False) -> None:
        """Draw the first queued chart now and the rest together in the next frame."""
        drew = False
        with self.app.batch_update():
            while self._chart_queue:
                chart = next(iter(self._chart_queue))
                del self._chart_queue[chart]
                if not chart.is_attached:
                    continue
                self._draw_chart(chart)
                drew = True
                if not all_of_them:
                    break
        self._draining = drew
        if drew:
            self.call_after_refresh(self._draw_next_chart, True)

    def _draw_chart(self, chart: Any) -> None:
        colors = self.query_one(RunsTable).run_colors
        if isinstance(chart, OverlayChart):
            chart.draw(self.model, self.metric, colors, self.selected, self._page_text(), self._canvas_rgb())
        else:
            chart.draw(self.model, self.metric, colors.get(chart.run_id or "", (128, 128, 128)))

    @property
    def charts_pending(self) -> bool:
        return self._draining or bool(self._chart_queue)

    def _canvas_rgb(self) -> tuple[int, int, int]:
        try:
            return Color.parse(self.app.theme_variables.get("surface", "#000000")).rgb
        except Exception:
            return (0, 0, 0)

    def _page_text(self) -> str:
        grid = self.query_one(ChartGrid)
        return f"panes {grid.page + 1}/{grid.pages}" if grid.pages > 1 else ""

    def _refresh_status(self) -> None:
        app = self.app
        note = "" if app.bridge_alive else "engine stopped"
        elapsed = app.elapsed() - self._idle if self._finished_at is None else self._finished_at
        session = getattr(app.source, "session_seconds", None)
        if session is not None:  # a watcher: the owner's session, from state.db (it started before we did)
            elapsed = session()
        self.query_one(StatusBar).show(self.model, elapsed, app.source.hosted, app.stopping, note)

    @on(ChartGrid.Resized)
    def _grid_resized(self) -> None:
        self._all = True
        self.call_after_refresh(self.flush)

    # ------------------------------------------------------------------ selection

    @on(DataTable.RowHighlighted, "#runs")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        run_id = event.row_key.value if event.row_key is not None else None
        if run_id == self.selected or run_id != self.query_one(RunsTable).selected_run:
            # The second: a stale message (a rebuild puts the cursor on row 0, then back on the
            # selected run): taken late, it selected row 0's run and drew the overlay's line for it.
            return
        previous, self.selected = self.selected, run_id
        with self.app.batch_update():
            self._draw_charts({r for r in (previous, run_id) if r})  # the two panes, the overlay, the page

    @on(DataTable.RowSelected, "#runs")
    def _row_clicked(self, event: DataTable.RowSelected) -> None:
        self.action_details()

    @on(DataTable.HeaderSelected, "#runs")
    def _header_clicked(self, event: DataTable.HeaderSelected) -> None:
        self.query_one(RunsTable).sort_by(str(event.column_key.value), self.model)

    # ------------------------------------------------------------------ actions

    def _target(self, run_id: str | None = None) -> str | None:
        run_id = run_id or self.selected or self.query_one(RunsTable).selected_run
        if run_id is None or run_id not in self.model.runs:
            self.app.notify("No run selected", severity="warning")
            return None
        return run_id

    def action_op(self, op: str, run_id: str | None = None) -> None:
        target = self._target(run_id)
        if target is not None:
            self.app.send_op(op, target)

    def action_clone(self, warm: bool, run_id: str | None = None) -> None:
        target = self._target(run_id)
        if target is None:
            return
        if warm and not self.model.runs[target].checkpointed:
            # The engine would refuse it; say so before the user edits anything.
            self.app.notify(self._no_checkpoint_text(target), title="warm start", severity="warning", timeout=6)
            return

        def submit(edits: dict | None) -> None:
            if edits is not None:
                self.app.send_op("clone", target, {"edits": edits, "warm_start": warm})

        self.app.push_screen(CloneDialog(self.model.runs[target], warm), submit)

    def _no_checkpoint_text(self, run_id: str) -> str:
        """Why a warm start is refused, and what to do: the controller's words with this keymap's keys."""
        cold = f"clone without warm start ({self.app.key_shown('clone')})"
        resume = f"resume it ({self.app.key_shown('resume')})"
        return no_checkpoint_reason(run_id, self.model.runs[run_id].status, cold, resume)

    def action_delete(self, run_id: str | None = None) -> None:
        target = self._target(run_id)
        if target is None:
            return
        row = self.model.runs[target]
        stops = " It stops at its next optimizer step." if row.status == "running" else ""
        body = (f"{target} ({row.label}) is {row.status}.{stops} The run is hidden from the table; its data "
                "stays in the experiment's store.")

        def answer(yes: bool | None) -> None:
            if yes:
                self.app.send_op("delete", target)

        self.app.push_screen(ConfirmDialog(f"Delete run {target}?", body), answer)

    def action_details(self, run_id: str | None = None) -> None:
        target = self._target(run_id)
        if target is None:
            return
        def find_logs() -> list[Any]:  # a run's chunks may have trained on several workers
            logs = (self.app.source.worker_log(worker) for worker in self.model.run_workers(target))
            return [log for log in logs if log is not None]

        self.app.push_screen(DetailsScreen(self.model, target, find_logs(), find_logs))

    def action_cycle_metric(self) -> None:
        self.metric = METRICS[(METRICS.index(self.metric) + 1) % len(METRICS)]
        self._all = True
        self.flush()

    def action_cycle_sort(self) -> None:
        table = self.query_one(RunsTable)
        key = table.next_sort(self.model)
        self._all = self._table_all = True
        self.flush()
        # The column as its header names it (`lr`, `run`), not its key (`learning_rate`, `id`).
        title = next((c.title for c in table.shown if c.key == key), key.removeprefix("knob:"))
        self.app.notify(f"sorted by {title}", timeout=1.5)

    def set_metric(self, metric: str) -> None:
        if metric in METRICS:
            self.metric = metric
            self._all = True
            self.flush()

    def current(self) -> dict[str, Any]:
        """What the screen shows now (for tests and the command palette)."""
        grid = self.query_one(ChartGrid)
        return {"selected": self.selected, "metric": self.metric, "page": grid.page, "pages": grid.pages,
                "panes": list(grid.visible_runs())}
