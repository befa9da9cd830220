"""The `--no-ui` text and `--json` lines, on a fake-backend experiment (no training needed for most)."""
from __future__ import annotations

import io
import json

import pytest

from engine_helpers import FAKE, drive, fake_experiment, op_then_shut_down
from rftui.cli import main as cli_main
from rftui.engine import events as ev
from rftui.engine.assemble import make_controller
from rftui.engine.messages import QuantumDone, StepLogged
from rftui.headless import HeadlessView, event_json
from rftui.report import leaderboard_text, show_data


@pytest.fixture
def ctl(tmp_path):
    controller = fake_experiment(tmp_path)
    yield controller
    controller.close()


def test_a_warning_every_run_gives_is_shown_once_and_summed_up_at_the_end(ctl):
    out = io.StringIO()
    view = HeadlessView(ctl, out, json_lines=False, tty=False)
    fp16 = "fp16 is ignored on cpu; training in fp32"

    def given(message, run_id=None):  # as the controller gives it: kept in state.db, then an event
        ctl.store.add_warning(message, run_id)
        return ev.EngineWarning(message, run_id)

    view.render([given(f"run r1: {fp16}", "r1"), given("MLflow tracking unavailable")])
    view.render([given(f"run r2: {fp16}", "r2"), given("MLflow tracking unavailable")])
    view.render([given(f"run r1: {fp16}", "r1")])  # a restarted worker says it again
    live = [line.split(" ", 1)[1] for line in out.getvalue().splitlines()]
    assert live == [f"warning r1: {fp16}", "warning: MLflow tracking unavailable"]  # the run named once
    view.finish()
    summary = out.getvalue().splitlines()  # the leaderboard's warnings, as `rftui show` lists them
    assert summary[-2:] == [f"warning (r1, r2): {fp16}", "warning: MLflow tracking unavailable"]
    assert sum("MLflow tracking unavailable" in line for line in summary) == 2  # live, then in the summary


def _strict_json(line: str):
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(line, parse_constant=refuse)


def test_json_lines_and_show_json_are_strict_json_when_a_run_diverges(ctl, tmp_path, capsys):
    # A diverged run logs NaN/inf; json.dumps wrote them as NaN/Infinity, which jq and JSON.parse refuse.
    line = event_json(StepLogged("r1", 3, {"loss": float("nan"), "grad_norm": float("inf"), "lr": 1e-3}))
    record = _strict_json(line)
    assert record["event"] == "StepLogged" and record["step"] == 3
    assert record["metrics"] == {"loss": None, "grad_norm": None, "lr": 1e-3}
    ctl.store.add_metrics("r1", 2, {"loss": float("inf"), "eval_loss": 1.25})
    assert cli_main(["show", "exp", "--json", "--workdir", str(tmp_path)]) == 0
    shown = _strict_json(capsys.readouterr().out)
    r1 = next(run for run in shown["runs"] if run["id"] == "r1")
    assert r1["metrics"] == {"loss": None, "eval_loss": 1.25, "rougeL": None, "bleu": None}


def _mlflow_runs(workdir) -> dict:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{workdir}/mlflow.db")
    experiment = client.get_experiment_by_name("exp")
    return {run.data.tags["rftui.run_id"]: run for run in client.search_runs([experiment.experiment_id])}


def _mlflow_status(workdir) -> dict[str, str]:
    return {run_id: run.info.status for run_id, run in _mlflow_runs(workdir).items()}


def test_mlflow_status_of_runs_not_started_yet_and_of_runs_an_interrupt_left(tmp_path):
    # MLflow creates runs RUNNING: a pending run looked as if it trained, and after Ctrl-C every run not
    # ended stayed RUNNING in MLflow for good (no process trains it until `rftui resume`).
    pytest.importorskip("mlflow")
    controller = fake_experiment(tmp_path, tracking=True, max_steps=40, num_chunks=4, step_seconds=0.02)
    try:
        controller.start()
        controller.sink.flush()
        assert _mlflow_status(tmp_path) == {"r1": "SCHEDULED", "r2": "SCHEDULED"}
        params = _mlflow_runs(tmp_path)["r1"].data.params  # the knobs, and the seed it trains with
        assert (params["seed"], params["learning_rate"], params["lora.r"]) == ("0", "0.001", "4")
        done = []
        while not any(isinstance(e, QuantumDone) for e in done):  # r1's first quantum, then r2 is dispatched
            done += controller.step(0.05)
        controller.step(0.05)
        assert controller.runs["r2"].status == "running"
        controller.begin_shutdown()
        while not controller.finished:
            controller.step(0.05)
        assert {r.status for r in controller.runs.values()} == {"waiting"}
    finally:
        controller.close()
    assert _mlflow_status(tmp_path) == {"r1": "KILLED", "r2": "KILLED"}
    resumed = make_controller(controller.exp, controller.spec, controller.store, workers=1, device="cpu",
                              backend=FAKE, preload=("rftui.engine.fake_backend",))
    try:
        drive(resumed)
    finally:
        resumed.close()
    assert _mlflow_status(tmp_path) == {"r1": "FINISHED", "r2": "FINISHED"}


def test_leaderboard_says_which_run_a_clone_came_from_and_ranks_by_eval_loss(ctl, tmp_path, capsys):
    cold = ctl.apply_op("clone", "r1", {}, "api", []).new_run_id
    drive(ctl)
    warm = ctl.apply_op("clone", "r2", {"warm_start": True, "edits": {"max_steps": 8}}, "api", []).new_run_id
    ctl.close()
    assert cli_main(["show", "exp", "--workdir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = lines[1]
    assert header.split() == ["#", "id", "label", "from", "status", "steps", "chunks", "loss", "eval_loss",
                              "rougeL", "bleu"]
    rows = {line.split()[1]: line for line in lines[3:]}
    column = header.index("from")
    origin = {run_id: line[column:].split("  ")[0] for run_id, line in rows.items()}
    assert origin == {"r1": "-", "r2": "-", cold: "r1", warm: "r2 warm"}
    assert rows[cold].split()[2] == "lr=1e-3" == rows["r1"].split()[2]  # the same label: `from` tells them apart
    ranked = [line.split()[1] for line in lines[3:]]
    eval_loss = {run["id"]: run["metrics"]["eval_loss"] for run in show_data(ctl.exp, ctl.store)["runs"]}
    assert ranked == sorted(["r1", "r2", cold], key=eval_loss.get) + [warm]  # not evaluated yet: last
    no_clones = {**show_data(ctl.exp, ctl.store), "runs": []}
    assert "from" not in leaderboard_text(no_clones).splitlines()[1]


def test_small_metric_values_keep_their_digits_in_the_leaderboard_and_progress_lines(ctl):
    # A tiny model's BLEU of 5.3e-05 read 0.0001 (and one under 5e-05 read 0.0000): runs looked equal.
    run = {"id": "r1", "label": "lr=1e-3", "status": "completed", "parent": None, "warm_start": False,
           "steps_done": 4, "total_steps": 4, "chunks_done": 2, "num_chunks": 2,
           "metrics": {"loss": 2.11673, "eval_loss": 0.0, "rougeL": 0.0543, "bleu": 5.3463e-05}}
    text = leaderboard_text({"experiment": "exp", "workdir": "/w", "status": "finished", "runs": [run]})
    assert text.splitlines()[3].split()[-4:] == ["2.1167", "0.0000", "0.0543", "5.35e-05"]
    report = ev.QuantumReport("r1", 0, 0, 2, 2, 4, 1.5, 1.0, 0.25, 0.25, None,
                              {"loss": 2.11673, "bleu": 4.9e-05, "grad_norm": 0.1})
    line = HeadlessView(ctl, io.StringIO(), json_lines=False, tty=False).describe(report)
    assert line == "r1 [lr=1e-3] chunk 1/2 step 2/4 loss=2.1167 bleu=4.90e-05 1.5s (switch 250 ms)"


def test_a_run_resumed_by_ctl_while_no_process_trains_it_stays_killed_in_mlflow(tmp_path):
    # `rftui ctl EXP resume RUN` on a stopped experiment makes the run `waiting`; MLflow said RUNNING for good.
    pytest.importorskip("mlflow")
    from rftui.control import submit

    controller = fake_experiment(tmp_path, tracking=True, max_steps=40, num_chunks=4)
    op_then_shut_down(controller, "stop", "r1")
    assert _mlflow_status(tmp_path)["r1"] == "KILLED"
    assert submit(controller.exp, controller.spec, controller.store, "resume", "r1", {})["status"] == "applied"
    assert controller.store.get_run("r1")["status"] in ("waiting", "pending")
    assert _mlflow_status(tmp_path)["r1"] == "KILLED"


def test_progress_bars_fit_the_terminal(ctl, monkeypatch):
    # The bars are erased by moving the cursor up a row per line: a wrapped line or more lines than rows left
    # stale bars in the scrollback at every redraw.
    out = io.StringIO()
    view = HeadlessView(ctl, out, json_lines=False, tty=True)
    monkeypatch.setattr(view, "_terminal_size", lambda: (40, 24))
    ctl.runs["r2"].status = "running"
    view._draw_bars()
    lines = out.getvalue().splitlines()
    assert [line[:6] for line in lines] == ["  r1  ", "  r2  "] and all(len(line) <= 39 for line in lines)
    assert view.bar_lines == 2
    ctl.apply_op("clone", "r1", {}, "api", [])  # a third run, pending
    monkeypatch.setattr(view, "_terminal_size", lambda: (120, 4))  # room for one run: the one training
    view._draw_bars()
    redraw = out.getvalue().split("\x1b[2F\x1b[J")[1].splitlines()
    assert redraw[0].startswith("  r2   [") and redraw[1] == "  ... 2 more runs (`rftui show exp`)"
    assert view.bar_lines == 2


def test_ctrl_c_with_json_keeps_stdout_json_and_says_it_was_interrupted(tmp_path, capsys):
    # The "interrupted: checkpointed; continue with ..." text line was written to the JSON stream.
    import os
    import signal
    import threading

    from rftui.headless import run_headless

    controller = fake_experiment(tmp_path, max_steps=400, step_seconds=0.01)
    out = io.StringIO()
    events = controller.start()
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        code = run_headless(controller, stream=out, json_lines=True, tty=False, first_events=events)
    finally:
        timer.cancel()
    assert code == 130
    records = [_strict_json(line) for line in out.getvalue().splitlines()]
    assert records[-1]["event"] == "ExperimentInterrupted"
    assert (records[-1]["name"], records[-1]["workdir"]) == ("exp", str(tmp_path))
    assert "ExperimentFinished" not in {record["event"] for record in records}
    assert f"continue with `rftui resume exp --workdir {tmp_path}`" in capsys.readouterr().err


def test_a_warning_given_while_closing_is_printed_after_the_progress_lines(tmp_path):
    # MLflow's "logging stopped" can come while the sink flushes on close, after the last step().
    from rftui.headless import run_headless

    controller = fake_experiment(tmp_path)
    shutdown = controller.pool.shutdown

    def shutdown_then_warn():
        controller.warn("MLflow logging stopped: the tracking server stopped answering")
        return shutdown()

    controller.pool.shutdown = shutdown_then_warn
    out = io.StringIO()
    assert run_headless(controller, stream=out, json_lines=False, tty=False, first_events=controller.start()) == 0
    lines = out.getvalue().splitlines()
    late = [i for i, line in enumerate(lines) if "MLflow logging stopped" in line]
    assert late and lines[late[0]].split(" ", 1)[1] == (
        "warning: MLflow logging stopped: the tracking server stopped answering")
    assert late[0] > max(i for i, line in enumerate(lines) if "finished" in line.lower())
