"""The runs table: status, the knobs that differ between runs, progress and last metrics.

Columns that do not fit the width are left out (lowest priority first) instead of being cut.
Sorting is by any column (click its header, or the sort key); the selected run stays selected.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from rich.text import Text
from textual.binding import Binding
from textual.widgets import DataTable

from rftui.config.expand import differing_knobs, format_value, make_labels, short_name
from rftui.engine.runs import STATUSES
from rftui.ui.colors import hex_color, run_color, status_style
from rftui.ui.model import ExperimentModel, RunRow

CELL_PADDING = 1


@dataclass(frozen=True)
class Column:
    key: str
    title: str
    text: Callable[[RunRow], str]
    sort: Callable[[RunRow], Any]
    numeric: bool = False


def _metric(name: str, row: RunRow) -> str:
    value = row.last.get(name)
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def _metric_sort(name: str) -> Callable[[RunRow], Any]:
    def key(row: RunRow) -> Any:
        value = row.last.get(name)
        missing = value is None or (isinstance(value, float) and math.isnan(value))
        return (missing, 0.0 if missing else value)
    return key


def _run_number(row: RunRow) -> Any:
    digits = row.run_id[1:]
    return (0, int(digits)) if digits.isdigit() else (1, row.run_id)


def _knob_sort(name: str) -> Callable[[RunRow], Any]:
    def key(row: RunRow) -> Any:
        value = row.knobs.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return (0, value, "")
        return (1, 0, format_value(value))
    return key


FIXED_BEFORE = [
    Column("id", "run", lambda r: r.run_id, _run_number),
    Column("status", "status", lambda r: r.status, lambda r: STATUSES.index(r.status) if r.status in STATUSES else 99),
]
FIXED_AFTER = [
    Column("chunk", "chunk", lambda r: f"{r.chunks_done}/{r.num_chunks}", lambda r: r.chunks_done, True),
    Column("step", "step", lambda r: f"{r.step}/{r.total_steps}", lambda r: r.step, True),
    Column("loss", "loss", lambda r: _metric("loss", r), _metric_sort("loss"), True),
    Column("eval_loss", "eval loss", lambda r: _metric("eval_loss", r), _metric_sort("eval_loss"), True),
    Column("rougeL", "ROUGE-L", lambda r: _metric("rougeL", r), _metric_sort("rougeL"), True),
]
# Which columns survive on a narrow screen: lower number = kept longer.
_PRIORITY = {"id": 0, "status": 1, "step": 3, "loss": 4, "eval_loss": 5, "chunk": 7, "rougeL": 8}


def knob_columns(runs: list[RunRow]) -> tuple[list[Column], dict[str, int]]:
    """Columns for the knobs that differ between runs; the ones the labels use rank first."""
    flats = [dict(r.knobs) for r in runs]
    names = differing_knobs(flats)
    labelled = [tok.split("=", 1)[0] for tok in (make_labels(flats)[0].split() if flats else [])]
    columns, priority = [], {}
    for name in names:
        title = short_name(name)
        columns.append(Column(f"knob:{name}", title, lambda r, n=name: format_value(r.knobs.get(n)), _knob_sort(name)))
        priority[f"knob:{name}"] = 2 if title in labelled else 6
    return columns, priority


def neighbour(order: list[str], gone: str, left: set[str]) -> str | None:
    """The row to select once `gone` left the table: the next one still shown, else the previous."""
    i = order.index(gone) if gone in order else len(order)
    after = [r for r in order[i + 1:] if r in left]
    before = [r for r in order[:i] if r in left]
    return after[0] if after else (before[-1] if before else None)


class RunsTable(DataTable, inherit_bindings=False):
    """A DataTable kept in step with an ExperimentModel (call `sync`). Enter is left to the
    screen (run details), so it shows in the footer and follows the user's keymap."""

    BINDINGS = [
        Binding("up", "cursor_up", "Cursor up", show=False),
        Binding("down", "cursor_down", "Cursor down", show=False),
        Binding("right", "cursor_right", "Cursor right", show=False),
        Binding("left", "cursor_left", "Cursor left", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("ctrl+home", "scroll_top", "Top", show=False),
        Binding("ctrl+end", "scroll_bottom", "Bottom", show=False),
        Binding("home", "scroll_home", "Home", show=False),
        Binding("end", "scroll_end", "End", show=False),
    ]

    DEFAULT_CSS = """
    RunsTable { height: auto; max-height: 12; }
    """  # the screen sets max-height to what the terminal has room for (MainScreen.fit_rows); more rows scroll

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, cell_padding=CELL_PADDING, **kwargs)
        self.all_columns: list[Column] = []
        self.priority: dict[str, int] = {}
        self.shown: list[Column] = []
        self.sort_key = "id"
        self.sort_reverse = False
        self.run_colors: dict[str, tuple[int, int, int]] = {}
        self._run_ids: set[str] = set()
        self._width = 0

    # ------------------------------------------------------------------ building

    def sync(self, model: ExperimentModel, changed: set[str], columns_changed: bool, force: bool = False) -> None:
        runs = model.visible_runs()
        shown_before, selected = [row.key.value for row in self.ordered_rows], self.selected_run
        if columns_changed or not self.all_columns:
            knobs, priority = knob_columns(list(model.runs.values()))
            self.all_columns = FIXED_BEFORE + knobs + FIXED_AFTER
            self.priority = {**_PRIORITY, **priority}
        self._assign_colors(model)
        shown = self._fit(runs, self.size.width or 80)
        ids = {r.run_id for r in runs}
        if force or columns_changed or shown != self.shown or ids != self._run_ids:
            self._rebuild(runs, shown)
        else:
            for row in runs:
                if row.run_id in changed:
                    self._update_row(row)
        self._resort(model)
        if selected is not None and selected not in self._run_ids:
            self.select_run(neighbour(shown_before, selected, self._run_ids))

    def _assign_colors(self, model: ExperimentModel) -> None:
        dark = self.app.current_theme.dark if self.is_attached else True
        for i, run_id in enumerate(model.runs):
            self.run_colors[run_id] = run_color(i, dark)

    def _fit(self, runs: list[RunRow], width: int) -> list[Column]:
        """The columns that fit in `width`, by priority, in display order."""
        need = {c.key: max([len(c.title) + (2 if c.key == self.sort_key else 0), self._reserve(c, runs)]
                           + [len(c.text(r)) for r in runs]) + 2 * CELL_PADDING
                for c in self.all_columns}
        need["id"] += 2  # the colour swatch
        budget = width - 2  # room for a vertical scrollbar
        keep: set[str] = set()
        for col in sorted(self.all_columns, key=lambda c: self.priority.get(c.key, 9)):
            if need[col.key] <= budget:
                keep.add(col.key)
                budget -= need[col.key]
            elif col.key in ("id", "status"):
                keep.add(col.key)
        return [c for c in self.all_columns if c.key in keep]

    @staticmethod
    def _reserve(col: Column, runs: list[RunRow]) -> int:
        """Room for what a cell will hold later (statuses and numbers grow), so cells never cut."""
        if col.key == "status":
            return max(len(s) for s in STATUSES)
        if col.key == "step":
            return max([3] + [2 * len(str(r.total_steps)) + 1 for r in runs])
        if col.key == "chunk":
            return max([3] + [2 * len(str(r.num_chunks)) + 1 for r in runs])
        return 6 if col.numeric else 0

    def _cells(self, row: RunRow) -> list[Any]:
        variables = self.app.theme_variables if self.is_attached else {}
        cells: list[Any] = []
        for col in self.shown:
            text = col.text(row)
            if col.key == "id":
                swatch = hex_color(self.run_colors.get(row.run_id, (128, 128, 128)))
                cells.append(Text.assemble(("■ ", swatch), text))
            elif col.key == "status":
                cells.append(Text(text, style=status_style(row.status, variables)))
            else:
                cells.append(Text(text, justify="right" if col.numeric else "left"))
        return cells

    def _rebuild(self, runs: list[RunRow], shown: list[Column]) -> None:
        selected = self.selected_run
        self.shown = shown
        self.clear(columns=True)
        for col in shown:
            self.add_column(self._title(col), key=col.key)
        for row in runs:
            self.add_row(*self._cells(row), key=row.run_id)
        self._run_ids = {r.run_id for r in runs}
        self.select_run(selected)

    def _title(self, col: Column) -> Text:
        arrow = (" ▼" if self.sort_reverse else " ▲") if col.key == self.sort_key else ""
        return Text(col.title + arrow, justify="right" if col.numeric else "left")

    def _update_row(self, row: RunRow) -> None:
        for col, cell in zip(self.shown, self._cells(row)):
            # Widths are reserved at rebuild; asking DataTable to re-measure re-lays out the screen.
            grow = cell.cell_len > self.columns[col.key].content_width
            self.update_cell(row.run_id, col.key, cell, update_width=grow)

    # ------------------------------------------------------------------ sorting and selection

    def _resort(self, model: ExperimentModel) -> None:
        column = next((c for c in self.all_columns if c.key == self.sort_key), FIXED_BEFORE[0])
        runs = sorted(model.visible_runs(), key=_run_number)
        runs.sort(key=column.sort, reverse=self.sort_reverse)  # stable: ties keep run order
        order = {r.run_id: i for i, r in enumerate(runs)}
        if [row.key.value for row in self.ordered_rows] == [r.run_id for r in runs if r.run_id in self._run_ids]:
            return
        selected = self.selected_run
        self.sort("id", key=lambda cell: order.get(cell.plain.rsplit(" ", 1)[-1], len(order)))
        self.select_run(selected)

    def sort_by(self, key: str, model: ExperimentModel, reverse: bool | None = None) -> None:
        """Sort by column `key`; choosing the current column again flips the order."""
        if reverse is None:
            reverse = not self.sort_reverse if key == self.sort_key else False
        self.sort_key, self.sort_reverse = key, reverse
        self._rebuild(model.visible_runs(), self.shown)  # header arrows change the widths
        self._resort(model)

    def next_sort(self, model: ExperimentModel) -> str:
        keys = [c.key for c in self.shown]
        i = keys.index(self.sort_key) if self.sort_key in keys else -1
        self.sort_by(keys[(i + 1) % len(keys)], model, reverse=False)
        return self.sort_key

    @property
    def selected_run(self) -> str | None:
        if not self.row_count:
            return None
        try:
            key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        except Exception:
            return None
        return key.value

    def select_run(self, run_id: str | None) -> None:
        if run_id is None or run_id not in self._run_ids:
            return
        try:
            index = self.get_row_index(run_id)
        except Exception:
            return
        if index != self.cursor_row:
            self.move_cursor(row=index, animate=False)  # scrolls the row into view

    def keep_selected_in_view(self) -> None:
        """Scroll the selected row into view (the table got shorter)."""
        if self.row_count:
            self.move_cursor(row=self.cursor_row, animate=False)
