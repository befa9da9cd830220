"""The command palette acts on the run the query names (`resume r3`), not on one whose label fuzzy-matches.

Labels like `r=8 lr=1e-3` contain `r`..`3`: fuzzy matching alone put `Resume run r1` first for `resume r3`,
and Enter resumed r1.
"""
from __future__ import annotations

import asyncio
import time

import pytest

from ui_helpers import FixedClock, record, settle

from rftui.engine import events as ev
from rftui.ui.app import build_app
from rftui.ui.commands import RunCommands

SIZE = (120, 36)
pytestmark = pytest.mark.anyio


def applied(op, run_id, args):
    return ev.OpResolved(None, "tui", op, run_id, "applied")


def palette_app(tmp_path):
    source = record(tmp_path, quanta=3)  # r1 r=8 lr=1e-3, r2 r=32 lr=1e-3, r3 r=8 lr=1e-4, r4 r=32 lr=1e-4
    source.respond = applied
    return build_app(source, theme="rftui-dark", clock=FixedClock()), source


async def ranked(app, query):
    hits = [hit async for hit in RunCommands(app.screen).search(query)]
    return [str(h.match_display) for h in sorted(hits, key=lambda h: -h.score)]


@pytest.mark.parametrize("query, first, only", [
    ("resume r3", "Resume run r3 (r=8 lr=1e-4)", "r3"),
    ("stop r4", "Stop run r4 (r=32 lr=1e-4)", "r4"),
    ("delete r3", "Delete run r3 (r=8 lr=1e-4)", "r3"),
    ("stop 3", "Stop run r3 (r=8 lr=1e-4)", "r3"),
    ("R2 clone", "Clone run r2 (r=32 lr=1e-3)", "r2"),
    ("r1", "Stop run r1 (r=8 lr=1e-3)", "r1"),  # only a run: its commands in the usual order
])
async def test_a_run_named_by_id_or_number_gets_only_its_commands(tmp_path, query, first, only):
    app, _ = palette_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        shown = await ranked(app, query)
    assert shown[0] == first, shown
    assert all(f" run {only} (" in text for text in shown), shown


async def test_an_exact_label_ranks_its_run_first(tmp_path):
    app, _ = palette_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        shown = await ranked(app, "resume r=8 lr=1e-4")
        free = await ranked(app, "cycle chart")  # free text as before
    assert shown[0] == "Resume run r3 (r=8 lr=1e-4)", shown
    assert any(text.startswith("Resume run r1") for text in shown[1:]), shown  # others still listed, after it
    assert free[0] == "Cycle chart metric", free


async def test_enter_in_the_palette_runs_the_named_run_s_op(tmp_path):
    """Through the real palette: ctrl+p, `resume r3`, Enter resumes r3 (it resumed r1)."""
    app, source = palette_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await pilot.press("ctrl+p")
        await pilot.press(*"resume r3")
        palette = app.screen
        options = palette.query_one("CommandList")
        deadline = time.monotonic() + 5
        while not options.option_count:
            assert time.monotonic() < deadline, "the palette showed no command"
            await asyncio.sleep(0.05)
            await pilot.pause()
        await asyncio.sleep(0.6)  # the palette adds hits in batches (0.25 s): let the search end
        await pilot.pause()
        first = str(options.get_option_at_index(options.highlighted or 0).prompt)
        await pilot.press("enter")
        await pilot.pause(0.2)
    assert first.startswith("Resume run r3"), first
    assert source.ops_sent == [("resume", "r3", {})]
