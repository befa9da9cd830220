"""Snapshot tests of the terminal UI, fed from recorded engine batches (no training).

Deterministic: fixed terminal sizes, a fixed theme, a fake clock (elapsed time shows 00:00) and
a recording whose timings are fixed. Update with `pytest tests/test_ui_snapshots.py --snapshot-update`
and look at the SVGs under tests/__snapshots__/ before committing them.
"""
from __future__ import annotations

from ui_helpers import FixedClock, record, settle

from rftui.ui.app import build_app
from rftui.ui.runs_table import RunsTable


def app_for(tmp_path, theme="rftui-dark", quanta=6):
    return build_app(record(tmp_path, quanta=quanta), theme=theme, clock=FixedClock())


def test_main_screen_mid_training_80x24(tmp_path, snap_compare):
    app = app_for(tmp_path)

    async def ready(pilot):
        await settle(pilot, app)

    assert snap_compare(app, terminal_size=(80, 24), run_before=ready)


def test_main_screen_mid_training_160x48(tmp_path, snap_compare):
    app = app_for(tmp_path)

    async def ready(pilot):
        await settle(pilot, app)
        await pilot.press("down")  # r2 selected: its pane and overlay line are highlighted
        await settle(pilot, app)

    assert snap_compare(app, terminal_size=(160, 48), run_before=ready)


def test_light_theme(tmp_path, snap_compare):
    app = app_for(tmp_path, theme="rftui-light")

    async def ready(pilot):
        await settle(pilot, app)

    assert snap_compare(app, terminal_size=(120, 32), run_before=ready)


def test_clone_dialog_with_a_validation_error(tmp_path, snap_compare):
    app = app_for(tmp_path)

    async def ready(pilot):
        await settle(pilot, app)
        await pilot.press("c")
        editor = app.screen.query_one("TextArea")
        editor.text = editor.text.replace("lora.r: 8", "lora.r: eight").replace("learning_rate: 0.001",
                                                                               "learning_rate: -1")
        editor.cursor_blink = False
        await pilot.press("ctrl+s")
        await pilot.pause()

    assert snap_compare(app, terminal_size=(100, 32), run_before=ready)


def test_help_screen(tmp_path, snap_compare):
    app = app_for(tmp_path)

    async def ready(pilot):
        await settle(pilot, app)
        await pilot.press("question_mark")
        await pilot.pause()

    assert snap_compare(app, terminal_size=(100, 32), run_before=ready)


def test_after_a_stop(tmp_path, snap_compare):
    app = app_for(tmp_path)

    async def ready(pilot):
        await settle(pilot, app)
        app.main.query_one(RunsTable).select_run("r4")  # running when the recording ends
        await pilot.pause()
        await pilot.press("s")
        await settle(pilot, app, until=lambda: app.model.runs["r4"].status == "stopped")

    assert snap_compare(app, terminal_size=(120, 32), run_before=ready)
