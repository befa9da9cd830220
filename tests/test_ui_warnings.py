"""A warning every run gives is one event log line that lists the runs, each run named once."""
from __future__ import annotations

import pytest

from ui_helpers import FixedClock, record, settle

from rftui.engine import events as ev
from rftui.engine.warning_tally import WarningTally, runs_text
from rftui.ui.app import build_app
from rftui.ui.model import Batch, ExperimentModel

FP16 = "fp16 is ignored on cpu; training in fp32"


def warning(run_id: str | None, text: str = FP16) -> ev.EngineWarning:
    return ev.EngineWarning(f"run {run_id}: {text}" if run_id else text, run_id)


def log_texts(model: ExperimentModel, *events) -> list[tuple[str, str | None]]:
    return [(line.text, line.key) for line in model.apply(Batch(events=list(events))).log]


def test_the_model_shows_a_warning_of_several_runs_as_one_line_naming_each_run_once():
    model = ExperimentModel("x")
    key = f"warning: {FP16}"
    assert log_texts(model, warning("r1"), warning(None, "MLflow tracking unavailable")) == [
        (f"warning r1: {FP16}", key), ("warning: MLflow tracking unavailable", "warning: MLflow tracking unavailable")]
    # each new run re-lists the runs under the same key (the log replaces the line); repeats add nothing
    assert log_texts(model, warning("r2"), warning("r3"), warning(None, "MLflow tracking unavailable")) == [
        (f"warning (r1, r2): {FP16}", key), (f"warning (r1, r2, r3): {FP16}", key)]
    assert log_texts(model, warning("r1"), warning("r2")) == []  # a restarted worker says it again
    assert log_texts(model, *(warning(f"r{i}") for i in range(4, 7))) == [
        (f"warning (r1, r2, r3, r4): {FP16}", key), (f"warning (r1, r2, r3 and 2 more): {FP16}", key),
        (f"warning (r1, r2, r3 and 3 more): {FP16}", key)]


def test_a_warning_that_does_not_start_with_its_run_keeps_its_text():
    model = ExperimentModel("x")
    assert log_texts(model, ev.EngineWarning("drop_run failed: gone", "r2")) == [
        ("warning r2: drop_run failed: gone", "warning: drop_run failed: gone")]


def test_the_tally_strips_only_the_run_s_own_prefix():
    tally = WarningTally()
    assert tally.add("run r1: x", "r1").text == "x"
    assert tally.add("run r1: x", "r2").text == "run r1: x"  # another run's prefix is part of the text
    assert tally.add("run r2: x", "r2").runs == ("r1", "r2")
    assert tally.runs == {"x": ["r1", "r2"], "run r1: x": ["r2"]}
    assert runs_text(["r1", "r2", "r3", "r4"]) == "r1, r2, r3, r4"


@pytest.mark.anyio
async def test_the_event_log_replaces_the_warning_line_in_place(tmp_path):
    source = record(tmp_path, quanta=1)
    app = build_app(source, theme="rftui-dark", clock=FixedClock())
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot, app)
        log = app.main.query_one("#log")
        source.push(Batch(events=[warning("r1")]))
        await settle(pilot, app, until=lambda: FP16 in log.texts()[-1])
        before = log.texts()
        assert before[-1] == f"warning r1: {FP16}"
        source.push(Batch(events=[warning("r2"), ev.EngineWarning("later", None)]))
        await settle(pilot, app, until=lambda: "later" in log.texts()[-1])
        assert log.texts() == before[:-1] + [f"warning (r1, r2): {FP16}", "warning: later"]
        shown = [strip.text for strip in log.lines]
        assert sum(FP16 in line for line in shown) == 1 and any("(r1, r2)" in line for line in shown)
