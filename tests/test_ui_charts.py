"""Chart axes: y labels on evenly spaced rows with evenly spaced values, every label kept."""
from __future__ import annotations

import math

import pytest

from ui_helpers import FixedClock, record, settle

from rftui.ui.app import build_app
from rftui.ui.charts import Chart, OverlayChart, RunPane, y_axis

pytestmark = pytest.mark.anyio


def plotext_row(value: float, low: float, top: float, rows: int) -> int:
    """The canvas row plotext puts a tick on (plotext._utility.get_matrix_data)."""
    return math.floor(round(0.5 + (rows - 1) * (value - low) / (top - low), 8))


@pytest.mark.parametrize("rows", range(3, 61))
def test_y_ticks_land_on_evenly_spaced_rows_and_span_the_data(rows):
    (low, top), ticks, labels = y_axis(1.08, 2.72, rows)
    at = [plotext_row(t, low, top, rows) for t in ticks]
    gaps = {b - a for a, b in zip(at, at[1:])}
    assert at[0] == 0 and len(gaps) == 1 and min(gaps) >= 2 and at[-1] <= rows - 1
    assert rows - 1 - at[-1] < min(gaps)  # at most a gap's worth of empty rows above the data
    assert ticks[0] == 1.08 and ticks[-1] == pytest.approx(2.72) and 3 <= len(ticks) <= 7 or rows < 5
    assert len({len(label.split(".")[-1]) for label in labels}) == 1 and len(set(labels)) == len(labels)


def test_tick_labels_for_tiny_and_flat_values():
    _, _, labels = y_axis(0.0, 1e-4, 10)  # a learning rate
    assert labels == ["0.0e+00", "3.3e-05", "6.7e-05", "1.0e-04"]
    (low, top), ticks, labels = y_axis(2.0, 2.0, 10)  # a flat line sits mid-chart, as plotext does
    assert low == 1.0 and ticks[-1] == 3.0 and labels == ["1.00", "1.67", "2.33", "3.00"]


def chart_labels(chart: Chart) -> list[tuple[int, str]]:
    """(row, label) of each y tick the chart shows."""
    out = []
    for row, strip in enumerate(chart._strips):
        head, tick, _ = strip.text.partition("┤")
        if tick and head.strip():
            out.append((row, head.strip()))
    return out


async def test_y_labels_are_evenly_spaced_and_none_is_dropped_at_120x40(tmp_path):
    app = build_app(record(tmp_path, quanta=6), theme="rftui-dark", clock=FixedClock())
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        charts = list(app.main.query(RunPane)) + [app.main.query_one(OverlayChart)]
        assert len(charts) >= 3
        for chart in charts:
            shown = chart_labels(chart)
            assert len(shown) >= 3, (chart, shown)
            rows = [r for r, _ in shown]
            values = [float(label) for _, label in shown][::-1]  # bottom up
            assert len({b - a for a, b in zip(rows, rows[1:])}) == 1, (chart, shown)
            steps = [b - a for a, b in zip(values, values[1:])]
            assert max(steps) - min(steps) <= 2 * 10 ** -len(shown[0][1].split(".")[-1]), (chart, shown)


def x_labels(chart: Chart) -> list[int]:
    """The step labels under the chart's x axis."""
    rows = [strip.text for strip in chart._strips]
    axis = next(i for i, text in enumerate(rows) if "└" in text)
    return [int(word) for word in rows[axis + 1].split() if word.isdigit()]


async def test_a_warm_start_clone_s_chart_labels_its_steps_from_where_it_began(tmp_path):
    """Its points begin at the parent's step: ticks from 0 fell left of them and only one label showed."""
    from dataclasses import replace

    from rftui.ui.model import Batch
    from rftui.ui.runs_table import RunsTable

    source = record(tmp_path, quanta=6)
    app = build_app(source, theme="rftui-dark", clock=FixedClock())
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        scratch = next(p for p in app.main.query(RunPane) if p.run_id == "r1")
        assert x_labels(scratch)[0] == 0  # a run trained from scratch starts at 0
        clone = replace(app.model.runs["r1"], run_id="r5", parent="r1", warm_start=True, status="running",
                        steps_done=64, live_step=84, last={})
        source.push(Batch(runs=list(app.model.runs.values()) + [clone],
                          points=[("r5", step, "loss", 1.0 + step / 100, "train") for step in range(66, 86, 2)]))
        await settle(pilot, app, until=lambda: "r5" in app.model.runs)
        app.main.query_one(RunsTable).select_run("r5")
        await settle(pilot, app)
        pane = next(p for p in app.main.query(RunPane) if p.run_id == "r5")
        labels = x_labels(pane)
        assert labels[0] == 66 and labels[-1] == 84 and len(labels) >= 3, labels
