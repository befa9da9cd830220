"""ctrl+s in the clone dialog reads the text after the keys typed before it.

Typed quickly (`foo: bar`, Enter, ctrl+s in one burst, as a paste or tmux send-keys gives them), ctrl+s
validated `foo: bargradient_checkpointing: false`: as a priority binding it ran in the app's queue
before the editor had taken the keys queued for it.
"""
from __future__ import annotations

import pytest

from ui_helpers import FixedClock, record, settle
from textual import events

from rftui.engine import events as ev
from rftui.ui.app import build_app
from rftui.ui.clone_dialog import CloneDialog

SIZE = (120, 36)
pytestmark = pytest.mark.anyio
TYPED = [*"weight_decay: 0.1", "enter", "ctrl+s"]  # at the top of the editor, before its first knob


def applied(op, run_id, args):
    return ev.OpResolved(None, "tui", op, run_id, "applied")


async def clone_of_r1(tmp_path, burst):
    source = record(tmp_path, quanta=3)
    source.respond = applied
    app = build_app(source, theme="rftui-dark", clock=FixedClock())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await pilot.press("c")
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, CloneDialog)
        await burst(pilot, app)
        for _ in range(5):
            await pilot.pause()
        problems = list(dialog.problems)
        open_after = isinstance(app.screen, CloneDialog)
    return source.ops_sent, problems, open_after


KEY_NAMES = {"_": "underscore", ":": "colon", " ": "space", ".": "full_stop", "enter": "enter", "ctrl+s": "ctrl+s"}
CHARS = {"enter": "\r", "ctrl+s": "\x13"}


async def posted_at_once(pilot, app):
    """The keys reach the app in one go, as a terminal delivers a fast burst: nothing runs in between
    (pilot.press waits for the app to go idle after each key, and does not show the bug)."""
    for key in TYPED:
        app.post_message(events.Key(KEY_NAMES.get(key, key), CHARS.get(key, key)))


async def pressed(pilot, app):
    await pilot.press(*TYPED)


@pytest.mark.parametrize("burst", [posted_at_once, pressed])
async def test_ctrl_s_after_a_burst_of_keys_clones_what_was_typed(tmp_path, burst):
    ops, problems, open_after = await clone_of_r1(tmp_path, burst)
    assert problems == [] and not open_after, problems
    assert ops == [("clone", "r1", {"edits": {"weight_decay": 0.1}, "warm_start": False})]
