"""The main screen fits the terminal at any run count: the table scrolls inside itself, the screen never
scrolls, the status bar and footer stay on screen (at 80x24 with 9+ runs they were pushed off)."""
from __future__ import annotations

import pytest
from ui_helpers import SAMPLES, FixedClock, record, screen_text, settle

from rftui.ui.app import build_app
from rftui.ui.event_log import EventLog
from rftui.ui.footer import KeysFooter
from rftui.ui.main_screen import CHARTS_MIN
from rftui.ui.runs_table import RunsTable
from rftui.ui.status_bar import StatusBar

SIZES = [(80, 24), (100, 30), (160, 48)]
pytestmark = pytest.mark.anyio


def app_with_runs(tmp_path, runs: int):
    """The random_search sample with `runs` runs."""
    text = (SAMPLES / "random_search.yaml").read_text()
    assert "num_runs: 8" in text and "path: data/" in text
    text = text.replace("num_runs: 8", f"num_runs: {runs}").replace("path: data/", f"path: {SAMPLES / 'data'}/")
    config = tmp_path / "config" / f"random_{runs}.yaml"
    config.parent.mkdir()
    config.write_text(text)
    work = tmp_path / "work"
    work.mkdir()
    # record() reads SAMPLES / f"{config}.yaml": an absolute path replaces SAMPLES.
    source = record(work, quanta=2, config=str(config.with_suffix("")))
    return build_app(source, theme="rftui-dark", clock=FixedClock())


def assert_fits(app, size: tuple[int, int]) -> None:
    screen, height = app.screen, size[1]
    assert screen.max_scroll_y == 0 and screen.scroll_y == 0
    assert screen.virtual_size.height <= height, screen.virtual_size
    body = screen.query_one("#body")
    assert body.max_scroll_y == 0 and body.virtual_size.height <= body.size.height
    status, footer = screen.query_one(StatusBar), screen.query_one(KeysFooter)
    log, table, charts = screen.query_one(EventLog), screen.query_one(RunsTable), screen.query_one("#charts")
    assert status.region.height == 1 and status.region.bottom <= footer.region.y, (status.region, footer.region)
    assert footer.region.bottom == height and footer.region.height >= 1
    # Top to bottom, nothing overlapping: table, charts, event log, status bar, footer.
    assert 0 == table.region.y < table.region.bottom <= charts.region.y
    assert charts.region.height >= CHARTS_MIN
    assert charts.region.bottom <= log.region.y < log.region.bottom <= status.region.y
    lines = screen_text(app).splitlines()
    assert len(lines) == height
    assert "elapsed" in lines[status.region.y] and "ETA" in lines[status.region.y], lines[status.region.y]
    shown_keys = " ".join(lines[footer.region.y:])
    assert "q Quit" in shown_keys and "s Stop" in shown_keys, shown_keys


def row_shown(app, run_id: str) -> bool:
    table = app.screen.query_one(RunsTable)
    top = table.region.y
    return any(line.split()[1:2] == [run_id]
               for line in screen_text(app).splitlines()[top:table.region.bottom])


@pytest.mark.parametrize("runs", [4, 9, 13, 30])
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
async def test_the_screen_fits_and_the_table_scrolls_to_the_selected_run(tmp_path, size, runs):
    app = app_with_runs(tmp_path, runs)
    async with app.run_test(size=size) as pilot:
        await settle(pilot, app)
        assert len(app.model.runs) == runs
        assert_fits(app, size)
        table = app.main.query_one(RunsTable)
        room = table.region.height - 1  # rows under the header
        assert room == min(runs, room) and (room == runs or room >= 8), (room, runs)  # all runs, or 8+ rows
        assert row_shown(app, "r1")

        await pilot.press(*["down"] * (runs - 1))  # arrow keys down to the last run
        await settle(pilot, app)  # (redraws everything: the table is rebuilt, the selection kept)
        last = f"r{runs}"
        assert app.main.selected == last == table.selected_run
        assert row_shown(app, last), screen_text(app)
        assert row_shown(app, "r1") == (runs <= room)  # scrolled inside the table, not the screen
        assert_fits(app, size)


async def test_a_shorter_terminal_keeps_the_selected_run_in_view_and_the_status_bar(tmp_path):
    app = app_with_runs(tmp_path, 30)
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot, app)
        await pilot.press(*["down"] * 17)
        await settle(pilot, app)
        assert app.main.selected == "r18" and row_shown(app, "r18")
        await pilot.resize_terminal(80, 24)
        await settle(pilot, app)
        await pilot.pause()
        assert app.main.selected == "r18" and row_shown(app, "r18"), screen_text(app)
        assert app.main.query_one(RunsTable).region.height == 9  # 24 - footer 2 - status 1 - log 6 - charts 6
        assert_fits(app, (80, 24))
        await pilot.resize_terminal(100, 30)
        await settle(pilot, app)
        assert row_shown(app, "r18")
        assert_fits(app, (100, 30))
        await pilot.press(*["up"] * 17)  # and back up: the table scrolls up with the selection
        await settle(pilot, app)
        assert app.main.selected == "r1" and row_shown(app, "r1") and not row_shown(app, "r30")
        assert_fits(app, (100, 30))


async def test_cloning_a_ninth_run_at_80x24_keeps_the_status_bar(tmp_path):
    """The QA steps: random_search's 8 runs at 80x24, clone one."""
    app = app_with_runs(tmp_path, 8)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        assert_fits(app, (80, 24))
        app.send_op("clone", "r1", {"edits": {"learning_rate": 1e-3}, "warm_start": False})
        await settle(pilot, app, until=lambda: "r9" in app.model.runs)
        assert_fits(app, (80, 24))


async def test_a_table_rebuild_does_not_select_the_first_run_for_a_moment(tmp_path, monkeypatch):
    """A rebuild puts the cursor on row 0, then back on the selected run; the first highlight message,
    taken late, selected r1 and drew the overlay's line for it (the overlay then waited up to 1 s)."""
    from rftui.ui.charts import OverlayChart
    from rftui.ui.main_screen import MainScreen

    app = app_with_runs(tmp_path, 4)
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot, app)
        await pilot.press("down")
        await pilot.pause()
        selections = []
        real = MainScreen._draw_charts

        def spy(self, dirty, everything=False):
            selections.append(self.selected)
            return real(self, dirty, everything)

        monkeypatch.setattr(MainScreen, "_draw_charts", spy)
        await settle(pilot, app)  # rebuilds the table
        await pilot.pause()
        assert selections and set(selections) == {"r2"}, selections
        assert app.main.query_one(OverlayChart).border_subtitle.endswith("line: r2")
