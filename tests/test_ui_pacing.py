"""The redraw pacer: periodic redraws slow down while the UI thread exceeds its CPU budget and speed
back up when it is idle; keys are not paced (they call flush directly)."""
from __future__ import annotations

import pytest

from rftui.errors import RftuiError
from rftui.ui.pacing import BUDGET_ENV, DEFAULT_BUDGET, SLOWEST_SECONDS, RedrawPacer, budget_from_env


class FakeClocks:
    def __init__(self) -> None:
        self.wall = 0.0
        self.cpu = 0.0

    def run(self, pacer: RedrawPacer, seconds: float, cpu_per_redraw: float, tick: float = 0.25) -> int:
        """Tick the pacer for `seconds`; every redraw it allows costs `cpu_per_redraw` CPU seconds."""
        redraws = 0
        end = self.wall + seconds
        while self.wall < end - 1e-9:
            self.wall += tick
            if pacer.due():
                redraws += 1
                self.cpu += cpu_per_redraw
        return redraws


def make(clocks: FakeClocks, budget: float | None = 0.02) -> RedrawPacer:
    return RedrawPacer(4.0, budget, cpu_clock=lambda: clocks.cpu, wall_clock=lambda: clocks.wall)


def test_cheap_redraws_stay_at_the_full_rate():
    clocks = FakeClocks()
    pacer = make(clocks)
    redraws = clocks.run(pacer, 20.0, cpu_per_redraw=0.001)  # 0.4 % of a core at 4 Hz
    assert redraws == 80
    assert pacer.interval == pytest.approx(0.25)


def test_costly_redraws_are_spaced_until_the_share_is_under_budget():
    clocks = FakeClocks()
    pacer = make(clocks)
    clocks.run(pacer, 30.0, cpu_per_redraw=0.05)  # 20 % of a core at 4 Hz
    before = clocks.cpu
    redraws = clocks.run(pacer, 40.0, cpu_per_redraw=0.05)
    share = (clocks.cpu - before) / 40.0
    assert share <= 0.02 * 1.3  # settles around the budget (one growth step of slack)
    assert 0 < redraws < 40 * 4 / 5
    assert pacer.interval <= SLOWEST_SECONDS


def test_the_interval_never_exceeds_the_slowest_pace():
    clocks = FakeClocks()
    pacer = make(clocks)
    redraws = clocks.run(pacer, 60.0, cpu_per_redraw=1.0)  # every redraw costs a full second
    assert pacer.interval == SLOWEST_SECONDS
    assert redraws >= 60.0 / SLOWEST_SECONDS - 3  # still redraws, at least every 4 s once settled


def test_the_pace_recovers_when_redraws_get_cheap_again():
    clocks = FakeClocks()
    pacer = make(clocks)
    clocks.run(pacer, 30.0, cpu_per_redraw=0.2)
    assert pacer.interval > 1.0
    clocks.run(pacer, 60.0, cpu_per_redraw=0.0)
    assert pacer.interval == pytest.approx(0.25)


def test_no_budget_means_a_fixed_rate():
    clocks = FakeClocks()
    pacer = make(clocks, budget=None)
    assert clocks.run(pacer, 10.0, cpu_per_redraw=0.2) == 40


def test_budget_from_the_environment(monkeypatch):
    monkeypatch.delenv(BUDGET_ENV, raising=False)
    assert budget_from_env() == DEFAULT_BUDGET
    monkeypatch.setenv(BUDGET_ENV, "0.1")
    assert budget_from_env() == 0.1
    monkeypatch.setenv(BUDGET_ENV, "off")
    assert budget_from_env() is None
    for bad in ("abc", "0", "2", "-0.5"):
        monkeypatch.setenv(BUDGET_ENV, bad)
        with pytest.raises(RftuiError, match=BUDGET_ENV):
            budget_from_env()


class StubPacer:
    """A pacer that answers `due()` as told (the screen asks it on every timer tick)."""

    def __init__(self, due: bool) -> None:
        self.answer = due
        self.asked = 0

    def due(self) -> bool:
        self.asked += 1
        return self.answer


@pytest.mark.anyio
@pytest.mark.parametrize("due", [False, True])
async def test_the_screen_redraws_new_points_only_when_the_pacer_allows_but_keys_at_once(tmp_path, due):
    import asyncio

    from ui_helpers import FixedClock, record, settle

    from rftui.ui.app import build_app
    from rftui.ui.charts import RunPane
    from rftui.ui.model import Batch

    source = record(tmp_path, quanta=3)
    app = build_app(source, theme="rftui-dark", clock=FixedClock())
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot, app)
        pacer = app.main.pacer = StubPacer(due)
        pane = next(p for p in app.main.query(RunPane) if p.run_id == "r1")
        version = pane._version
        last = app.model.series["r1"]["loss"].steps[-1]
        source.push(Batch(points=[("r1", last + 1, "loss", 0.5, "train")]))
        for _ in range(50):  # the bridge posts it; the model has it at once
            await asyncio.sleep(0.02)
            if app.model.series["r1"]["loss"].steps[-1] == last + 1:
                break
        assert app.model.series["r1"]["loss"].steps[-1] == last + 1
        await pilot.pause(0.7)  # at least two timer ticks
        assert pacer.asked >= 2
        assert (pane._version > version) is due
        version = pane._version
        await pilot.press("m")  # a key redraws whatever the pacer says
        await pilot.pause()
        assert pane._version > version and app.main.metric == "eval_loss"


async def _paced_app(tmp_path):
    from ui_helpers import FixedClock, record

    from rftui.ui.app import build_app

    source = record(tmp_path, quanta=3)
    return build_app(source, theme="rftui-dark", clock=FixedClock()), source


async def _cell_becomes(pilot, table, run_id: str, column: str, text: str, seconds: float = 10.0) -> bool:
    # A generous deadline for a loaded CI box: the pacer is stubbed to refuse every redraw, so only the
    # unpaced path can ever show the change, however long this waits.
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await pilot.pause(0.05)
        if table.get_cell(run_id, column).plain == text:
            return True
    return False


@pytest.mark.anyio
async def test_a_key_op_shows_its_effect_within_a_second_while_redraws_are_paced(tmp_path):
    """A clone adds a run (no status change of a shown row): the answered op makes the screen
    redraw at full rate for a moment, whatever the pacer says."""
    import time

    from ui_helpers import settle

    from rftui.ui.runs_table import RunsTable

    app, source = await _paced_app(tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot, app)
        app.main.pacer = StubPacer(False)
        table = app.main.query_one(RunsTable)
        rows_before = {row.key.value for row in table.ordered_rows}
        await pilot.press("c")
        editor = app.screen.query_one("TextArea")
        editor.text = editor.text.replace("learning_rate: 0.001", "learning_rate: 5.0e-4")
        await pilot.press("ctrl+s")
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and {row.key.value for row in table.ordered_rows} == rows_before:
            await pilot.pause(0.05)
        assert {row.key.value for row in table.ordered_rows} - rows_before == {"r5"}
    assert source.ops_sent[0][0] == "clone"


@pytest.mark.anyio
async def test_a_status_change_reaches_the_table_between_paced_redraws(tmp_path):
    from ui_helpers import settle

    from rftui.engine import events as ev
    from rftui.ui.model import Batch
    from rftui.ui.runs_table import RunsTable

    app, source = await _paced_app(tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot, app)
        app.main.pacer = StubPacer(False)
        table = app.main.query_one(RunsTable)
        before = table.get_cell("r3", "status").plain
        source.push(Batch(events=[ev.RunStatusChanged("r3", "failed", "boom")]))
        assert before != "failed"
        assert await _cell_becomes(pilot, table, "r3", "status", "failed")


@pytest.mark.anyio
async def test_a_new_run_and_a_failure_s_reason_show_between_paced_redraws(tmp_path):
    """Runs that appear (the experiment's first batch, a clone from `rftui ctl`) get their rows, and a
    failed run's reason its event log line, without waiting for the pacer: at start-up, with the
    CPU busy loading workers, the table stayed empty for seconds."""
    import time
    from dataclasses import replace

    from ui_helpers import settle

    from rftui.engine import events as ev
    from rftui.ui.model import Batch
    from rftui.ui.runs_table import RunsTable

    app, source = await _paced_app(tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot, app)
        app.main.pacer = StubPacer(False)
        table = app.main.query_one(RunsTable)
        log = app.main.query_one("#log")
        new = replace(app.model.runs["r1"], run_id="r9", label="lr=9e-4", status="pending", last={})
        source.push(Batch(runs=list(app.model.runs.values()) + [new]))
        deadline = time.monotonic() + 10.0  # the bridge posts it within a tick or two; generous for a loaded box
        while time.monotonic() < deadline and "r9" not in {row.key.value for row in table.ordered_rows}:
            await pilot.pause(0.05)
        assert table.get_cell("r9", "status").plain == "pending"
        source.push(Batch(events=[ev.RunStatusChanged("r3", "failed", "HookError: metrics hook raised")]))
        assert await _cell_becomes(pilot, table, "r3", "status", "failed")
        written = [line.text for _, line in log.lines_written]
        assert "r3 failed: HookError: metrics hook raised" in written, written
