"""A resumed experiment starts with the warnings its earlier sessions kept, marked as theirs, in the headless
output and the TUI's event log; a warning that recurs in this session is not shown twice."""
from __future__ import annotations

import io
import random
from dataclasses import replace

from fake_pool import FakePool

from engine_helpers import FAKE, SAMPLES, fake_experiment, rows
from rftui.config.yaml_config import load_experiment_file
from rftui.engine import events as ev
from rftui.engine.assemble import make_controller
from rftui.engine.controller import Controller
from rftui.engine.messages import WorkerWarning
from rftui.engine.setup import create_experiment
from rftui.headless import HeadlessView, run_headless
from rftui.ui.model import Batch, ExperimentModel
from rftui.ui.sources import HostedSource

FP16 = "fp16 is ignored on cpu; training in fp32"
MLFLOW = "MLflow logging stopped: the tracking server is gone"


def fp16(run_id: str) -> WorkerWarning:
    return WorkerWarning(0, run_id, f"run {run_id}: {FP16}")


def warnings_of(events) -> list[tuple[str | None, str, bool]]:
    return [(e.run_id, e.message, e.earlier) for e in events if isinstance(e, ev.EngineWarning)]


def first_session(tmp_path) -> Controller:
    """An experiment whose first session gave fp16 for r1 and r2 and MLflow's warning, then stopped."""
    spec = load_experiment_file(SAMPLES / "smoke.yaml")
    runs = tuple(replace(r, training={**r.training, "max_steps": 4}) for r in spec.runs)
    spec = replace(spec, name="warned", workdir=str(tmp_path), num_chunks=2, runs=runs)
    exp, spec, store = create_experiment(spec, rows(16), rows(4))
    ctl = Controller(exp, spec, store, FakePool(1, random.Random(0)))
    assert warnings_of(ctl.start()) == []  # a new experiment has none to repeat
    ctl.pool.pending += [(0, fp16("r1")), (0, fp16("r2"))]
    ctl.warn(MLFLOW)
    ctl.step(0)
    ctl.close()
    return ctl


def resumed(ctl: Controller) -> Controller:
    return Controller(ctl.exp, ctl.spec, ctl.store, FakePool(1, random.Random(1)))


def test_the_controller_repeats_earlier_warnings_at_start_and_does_not_keep_them_twice(tmp_path):
    again = resumed(first_session(tmp_path))
    assert warnings_of(again.start()) == [("r1", f"run r1: {FP16}", True), ("r2", f"run r2: {FP16}", True),
                                          (None, MLFLOW, True)]
    again.pool.pending.append((0, fp16("r1")))
    again.warn(MLFLOW)
    assert warnings_of(again.step(0)) == [("r1", f"run r1: {FP16}", False), (None, MLFLOW, False)]
    again.close()
    assert len(again.store.warnings()) == 3


def test_headless_shows_earlier_warnings_once_at_start_and_not_again_when_they_recur(tmp_path):
    again = resumed(first_session(tmp_path))
    out = io.StringIO()
    view = HeadlessView(again, out, json_lines=False, tty=False)
    view.start_line()
    view.render(again.start())
    again.pool.pending += [(0, fp16("r1")), (0, fp16("r2"))]  # this session's workers say it again
    again.warn(MLFLOW)
    again.warn("the eval rows are plain text")  # new in this session: shown as usual
    view.render(again.step(0))
    again.close()
    lines = [line.split(" ", 1)[1] for line in out.getvalue().splitlines()]
    assert lines[0].startswith("experiment warned: 2 runs")
    assert lines[1:] == [f"warning (r1, r2): {FP16} (earlier session)", f"warning: {MLFLOW} (earlier session)",
                         "warning: the eval rows are plain text"]
    view.finish()  # the summary is `rftui show`'s: every session's warnings, unmarked
    summary = out.getvalue().splitlines()[-3:]
    assert summary == [f"warning (r1, r2): {FP16}", f"warning: {MLFLOW}", "warning: the eval rows are plain text"]


def test_run_headless_on_a_resumed_fake_backend_experiment(tmp_path):
    ctl = fake_experiment(tmp_path, max_steps=8, num_chunks=2)
    ctl.start()
    ctl.warn(MLFLOW)
    while not any(isinstance(e, ev.QuantumReport) for e in ctl.step(0.05)):
        pass
    ctl.begin_shutdown()
    while not ctl.finished:
        ctl.step(0.05)
    ctl.close()
    assert ctl.store.get_meta("status") == "interrupted"
    again = make_controller(ctl.exp, ctl.spec, ctl.store, workers=1, device="cpu", tracking=False, backend=FAKE,
                            preload=("rftui.engine.fake_backend",))
    again.warn(MLFLOW)  # the same warning in this session
    out = io.StringIO()
    assert run_headless(again, stream=out, json_lines=False, tty=False, first_events=again.start()) == 0
    lines = [line.split(" ", 1)[1] if line[:2].isdigit() else line for line in out.getvalue().splitlines()]
    assert lines[0].startswith("experiment exp: 2 runs") and lines[1] == f"warning: {MLFLOW} (earlier session)"
    assert [line for line in lines if MLFLOW in line] == [f"warning: {MLFLOW} (earlier session)",
                                                          f"warning: {MLFLOW}"]  # at start, then in the summary
    assert lines[-1] == f"warning: {MLFLOW}"


def test_json_lines_say_which_warnings_are_an_earlier_session_s(tmp_path):
    import json

    again = resumed(first_session(tmp_path))
    out = io.StringIO()
    HeadlessView(again, out, json_lines=True, tty=False).render(again.start())
    again.close()
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(r["run_id"], r["earlier"]) for r in records if r["event"] == "EngineWarning"] == [
        ("r1", True), ("r2", True), (None, True)]


def log_texts(model: ExperimentModel, *events) -> list[tuple[str, str | None]]:
    return [(line.text, line.key) for line in model.apply(Batch(events=list(events))).log]


def test_the_tui_marks_earlier_warnings_until_this_session_gives_them_too():
    model = ExperimentModel("x")
    key, mlflow_key = f"warning: {FP16}", f"warning: {MLFLOW}"
    earlier = [ev.EngineWarning(f"run {r}: {FP16}", r, earlier=True) for r in ("r1", "r2")]
    assert log_texts(model, *earlier, ev.EngineWarning(MLFLOW, None, earlier=True)) == [
        (f"warning r1: {FP16} (earlier session)", key), (f"warning (r1, r2): {FP16} (earlier session)", key),
        (f"warning: {MLFLOW} (earlier session)", mlflow_key)]
    # this session gives it too: the same line (its key) loses the mark; after that a repeat adds nothing
    assert log_texts(model, ev.EngineWarning(f"run r1: {FP16}", "r1")) == [(f"warning (r1, r2): {FP16}", key)]
    assert log_texts(model, ev.EngineWarning(f"run r1: {FP16}", "r1"), ev.EngineWarning(f"run r2: {FP16}", "r2")) == []
    assert log_texts(model, ev.EngineWarning(f"run r3: {FP16}", "r3")) == [(f"warning (r1, r2, r3): {FP16}", key)]
    assert log_texts(model, ev.EngineWarning(MLFLOW, None)) == [(f"warning: {MLFLOW}", mlflow_key)]
    assert log_texts(model, ev.EngineWarning(MLFLOW, None)) == []


def test_the_hosted_tui_s_first_batch_has_the_earlier_warnings(tmp_path):
    source = HostedSource(resumed(first_session(tmp_path)))
    model = ExperimentModel(source.name)
    try:
        texts = [line.text for line in model.apply(source.open()).log]
    finally:
        source.close()
    assert texts[0].startswith("experiment warned: 2 runs")  # the start line first
    assert texts[-2:] == [f"warning (r1, r2): {FP16} (earlier session)", f"warning: {MLFLOW} (earlier session)"]
