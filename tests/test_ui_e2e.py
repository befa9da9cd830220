"""End to end: the real app hosts a real controller on the smoke config until every run completes."""
from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path

import pytest

from ui_helpers import FixedClock

from rftui.config.yaml_config import load_experiment_file
from rftui.data.sources import load_rows
from rftui.engine.assemble import make_controller
from rftui.engine.setup import create_experiment
from rftui.ui.app import build_app
from rftui.ui.runs_table import RunsTable
from rftui.ui.sources import HostedSource

SMOKE = Path(__file__).resolve().parent.parent / "sample_configs" / "smoke.yaml"
pytestmark = pytest.mark.anyio


async def test_smoke_experiment_trains_to_completion_in_the_app(tmp_path):
    spec = replace(load_experiment_file(SMOKE), workdir=str(tmp_path))
    base = Path(spec.data.base_dir)
    exp, spec, store = create_experiment(spec, load_rows(spec.data.train, base), load_rows(spec.data.eval, base))
    controller = make_controller(exp, spec, store, workers=1, device="cpu", tracking=False)
    source = HostedSource(controller)
    app = build_app(source, theme="rftui-dark", clock=FixedClock())
    async with app.run_test(size=(120, 36)) as pilot:
        deadline = time.monotonic() + 240
        while not (app.model.runs and all(r.status == "completed" for r in app.model.runs.values())):
            assert app.bridge_alive, "the engine stopped early (see the event log)"
            assert time.monotonic() < deadline, "the smoke experiment did not finish in time"
            await asyncio.sleep(0.2)
        table = app.main.query_one(RunsTable)
        for _ in range(40):  # the table refreshes on its own timer; give a loaded machine a few seconds
            if all(table.get_cell(r, "status").plain == "completed" for r in ("r1", "r2")):
                break
            await pilot.pause(0.25)
        for run_id in ("r1", "r2"):
            assert table.get_cell(run_id, "status").plain == "completed"
            assert table.get_cell(run_id, "step").plain == "4/4"
            assert table.get_cell(run_id, "chunk").plain == "2/2"
            assert float(table.get_cell(run_id, "loss").plain) > 0
            assert float(table.get_cell(run_id, "eval_loss").plain) > 0
        assert len(app.model.series["r1"]["loss"]) == 4
        log = app.main.query_one("#log").texts()
        assert log[0] == "experiment smoke: 2 runs, 2 chunks; starting 1 worker", log
        assert any("experiment smoke finished: 2 completed" in line for line in log), log
        await pilot.press("q", "q")  # quit: finished, so nothing to checkpoint
        for _ in range(100):
            if source.closed_event.is_set():
                break
            await asyncio.sleep(0.1)
    assert source.closed_event.is_set()
    assert app.return_value == 0
    assert store.get_meta("status") == "finished"
