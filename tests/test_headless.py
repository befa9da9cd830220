"""The `--no-ui` text and `--json` lines, on a fake-backend experiment (no training needed for most)."""
from __future__ import annotations

import io

import pytest

from engine_helpers import fake_experiment
from rftui.engine import events as ev
from rftui.headless import HeadlessView


@pytest.fixture
def ctl(tmp_path):
    controller = fake_experiment(tmp_path)
    yield controller
    controller.close()


def test_a_warning_every_run_gives_is_shown_once_and_summed_up_at_the_end(ctl):
    out = io.StringIO()
    view = HeadlessView(ctl, out, json_lines=False, tty=False)
    fp16 = "fp16 is ignored on cpu; training in fp32"
    view.render([ev.EngineWarning(f"run r1: {fp16}", "r1"), ev.EngineWarning("MLflow tracking unavailable", None)])
    view.render([ev.EngineWarning(f"run r2: {fp16}", "r2"), ev.EngineWarning("MLflow tracking unavailable", None)])
    view.render([ev.EngineWarning(f"run r1: {fp16}", "r1")])  # a restarted worker says it again
    live = [line.split(" ", 1)[1] for line in out.getvalue().splitlines()]
    assert live == [f"warning r1: {fp16}", "warning: MLflow tracking unavailable"]  # the run named once
    view.finish()
    summary = out.getvalue().splitlines()
    assert summary[-1] == f"warning for r1, r2: {fp16}"
    assert sum("MLflow tracking unavailable" in line for line in summary) == 1
