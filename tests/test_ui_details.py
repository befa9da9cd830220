"""Run details: the metrics table names metrics as the rest of the UI does; the log shows the run's own lines."""
from __future__ import annotations

import pytest

from engine_helpers import trained_experiment
from ui_helpers import FixedClock, record, settle

from rftui.engine import events as ev
from rftui.ui.app import build_app
from rftui.ui.details import DetailsScreen, run_lines, run_log_tail
from rftui.ui.model import Batch, ExperimentModel

pytestmark = pytest.mark.anyio


async def test_the_metrics_table_names_metrics_as_the_runs_table_and_charts_do(tmp_path):
    source = record(tmp_path, quanta=3)
    source.respond = lambda op, run_id, args: ev.OpResolved(None, "tui", op, run_id, "applied")
    app = build_app(source, theme="rftui-dark", clock=FixedClock())
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot, app, until=lambda: "eval_loss" in app.model.series.get("r1", {}))
        assert app.main.selected == "r1"
        await pilot.press("enter")
        await pilot.pause()
        details = app.screen
        assert isinstance(details, DetailsScreen)
        headers = [str(c.label) for c in details.query_one("#metrics").columns.values()]
    # was: eval_loss, rougeL, bleu, learning_rate; an unknown metric (grad_norm) keeps its name
    assert headers == ["step", "loss", "eval loss", "ROUGE-L", "BLEU", "learning rate", "grad_norm"]


LOG = """\
2026-01-01 10:00:00,000 worker-0 INFO rftui.worker: ==== worker 0 started: pid 1, device cpu ====
2026-01-01 10:00:01,000 worker-0 INFO rftui.worker: quantum: run r1 chunk 0 steps 0..4
r1 output
2026-01-01 10:00:02,000 worker-0 INFO rftui.worker: quantum done: run r1 -> 4
2026-01-01 10:00:02,100 worker-0 INFO rftui.worker: quantum: run r10 chunk 0 steps 0..4
r10 output
2026-01-01 10:00:03,000 worker-0 ERROR rftui.worker: run r10 failed in chunk 0:
Traceback (most recent call last):
RuntimeError: r10 broke
2026-01-01 10:00:03,100 worker-0 INFO rftui.worker: quantum: run r1 chunk 1 steps 4..8
Fatal Python error: Segmentation fault

---- 2026-01-01 10:00:04 restarting worker 0: previous process 1: killed by SIGSEGV ----
2026-01-01 10:00:05,000 worker-0 INFO rftui.worker: ==== worker 0 started: pid 2, device cpu ====
2026-01-01 10:00:05,100 worker-0 INFO rftui.worker: ignoring preempt for r1: it is not training here
"""


def test_run_lines_are_its_quanta_with_what_followed_a_failure_or_a_crash():
    lines = run_lines(LOG, "r1")
    assert [line.split("rftui.worker: ", 1)[-1] for line in lines] == [
        "quantum: run r1 chunk 0 steps 0..4", "r1 output", "quantum done: run r1 -> 4",
        "quantum: run r1 chunk 1 steps 4..8", "Fatal Python error: Segmentation fault", "",
        "---- 2026-01-01 10:00:04 restarting worker 0: previous process 1: killed by SIGSEGV ----"]
    assert run_lines(LOG, "r10")[1:] == ["r10 output", "2026-01-01 10:00:03,000 worker-0 ERROR rftui.worker: run r10 "
                                         "failed in chunk 0:", "Traceback (most recent call last):", "RuntimeError: r10 broke"]
    assert run_lines(LOG, "r2") == []


def test_run_log_tail_reads_past_a_partial_first_line_and_says_when_the_run_is_not_there(tmp_path, monkeypatch):
    path = tmp_path / "worker-0.log"
    path.write_text("x" * 500 + " quantum: run r1 chunk 9 (cut in half)\n" + LOG)
    monkeypatch.setattr("rftui.ui.details.TAIL_BYTES", len(LOG) + 10)  # the window starts inside the first line
    assert run_log_tail(path, "r1").splitlines()[0].endswith("rftui.worker: quantum: run r1 chunk 0 steps 0..4")
    assert run_log_tail(path, "r1", lines=2).splitlines()[-1].startswith("---- ")
    assert run_log_tail(path, "r2") == "(no lines of r2 in the last 0 KiB of this log yet)"
    assert run_log_tail(None, "r1") == "(no worker has run this run yet)"
    assert run_log_tail(tmp_path / "worker-1.log", "r1") == f"({tmp_path / 'worker-1.log'} does not exist yet)"


def test_a_failed_runs_traceback_is_found_among_the_other_runs_of_its_worker(tmp_path):
    """One worker trains r1 and r2 in turn; r1 fails in its second chunk and r2 goes on after it: the
    whole-log tail ended with r2's lines, r1's traceback above them."""
    controller = trained_experiment(tmp_path, num_chunks=2, max_steps=4, crash_at=[("r1", 3, "raise")])
    log = controller.pool.log_path(0)
    statuses = {rec.run_id: rec.status for rec in controller.runs.values()}
    assert statuses == {"r1": "failed", "r2": "completed"}
    text = log.read_text()
    assert text.rindex("run r1 failed") < text.rindex("quantum done: run r2")  # r2's lines came after
    mine = run_log_tail(log, "r1").splitlines()
    start = next(i for i, line in enumerate(mine) if line.endswith("rftui.worker: quantum: run r1 chunk 1 steps 2..4"))
    assert mine[start + 1:start + 3] == ["[fake] run r1 chunk 1 from step 2",  # the backend's own output stays too
                                         "[fake] crashing (raise) at run r1 step 3"]
    assert mine[start + 3].endswith("rftui.worker: run r1 failed in chunk 1:")
    assert mine[start + 4] == "Traceback (most recent call last):"
    assert mine[-2:] == ["RuntimeError: fake failure in run r1 at step 3", "second line of the message"]
    assert not any("run r2" in line for line in mine)
    theirs = run_log_tail(log, "r2")
    assert "quantum done: run r2 -> 4" in theirs and "Traceback" not in theirs


W0 = """\
2026-01-01 10:00:00,000 worker-0 INFO rftui.worker: ==== worker 0 started: pid 1, device cpu ====
2026-01-01 10:00:01,000 worker-0 INFO rftui.worker: quantum: run r1 chunk 0 steps 0..2
r1 chunk 0 output
2026-01-01 10:00:02,000 worker-0 INFO rftui.worker: quantum done: run r1 -> 2
2026-01-01 10:00:05,000 worker-0 INFO rftui.worker: quantum: run r1 chunk 2 steps 4..6
r1 chunk 2 output
2026-01-01 10:00:06,000 worker-0 INFO rftui.worker: quantum done: run r1 -> 6
"""
W1 = """\
2026-01-01 10:00:00,000 worker-1 INFO rftui.worker: ==== worker 1 started: pid 2, device cpu ====
2026-01-01 10:00:02,500 worker-1 INFO rftui.worker: quantum: run r1 chunk 1 steps 2..4
r1 chunk 1 output
2026-01-01 10:00:03,000 worker-1 INFO rftui.worker: quantum done: run r1 -> 4
2026-01-01 10:00:03,100 worker-1 INFO rftui.worker: quantum: run r2 chunk 0 steps 0..2
r2 output
"""


def test_a_run_trained_on_two_workers_shows_every_chunk_in_chunk_order(tmp_path, monkeypatch):
    """Only the last worker's log was read: chunk 1 (worker 1) was lost when chunk 2 went to worker 0."""
    w0, w1 = tmp_path / "worker-0.log", tmp_path / "worker-1.log"
    w0.write_text(W0)
    w1.write_text(W1)
    outputs = [line for line in run_log_tail([w0, w1], "r1").splitlines() if "output" in line]
    assert outputs == ["r1 chunk 0 output", "r1 chunk 1 output", "r1 chunk 2 output"]
    assert run_log_tail([w1, w0], "r1") == run_log_tail([w0, w1], "r1")  # not by the files' order
    assert run_log_tail([w0, w1], "r1", lines=4).splitlines()[0].endswith("quantum done: run r1 -> 4")
    assert run_log_tail([w0, w1], "r2").splitlines()[-1] == "r2 output"
    assert run_log_tail([w0, w1], "r3") == "(no lines of r3 in the last 1024 KiB of these logs yet)"
    assert run_log_tail([w0, tmp_path / "worker-2.log"], "r1").count("output") == 2  # a missing log is skipped
    # Bounded per file: each its own last bytes (worker 1's window starts past its r1 quantum's first line).
    monkeypatch.setattr("rftui.ui.details.TAIL_BYTES", len(W1) - W1.index("r1 chunk 1 output"))
    assert [line for line in run_log_tail([w0, w1], "r1").splitlines() if "output" in line] == ["r1 chunk 2 output"]


def test_the_details_screen_reads_the_logs_of_every_worker_the_run_trained_on(tmp_path):
    """The model keeps every worker a run's quanta went to (the main screen asked only for the last one)."""
    (tmp_path / "worker-0.log").write_text(W0)
    (tmp_path / "worker-1.log").write_text(W1)
    model = ExperimentModel("exp", num_workers=2)
    model.apply(Batch(events=[ev.QuantumDispatched(0, "r1", 0, 0, 2), ev.QuantumDispatched(1, "r1", 1, 2, 4),
                              ev.QuantumDispatched(0, "r1", 2, 4, 6), ev.QuantumDispatched(-1, "r2", 0, 0, 2)]))
    assert model.run_workers("r1") == [0, 1] and model.last_worker("r1") == 0
    assert model.run_workers("r2") == [] and model.run_workers("r9") == []
    logs = [tmp_path / f"worker-{w}.log" for w in model.run_workers("r1")]
    screen = DetailsScreen(model, "r1", logs)
    assert [line for line in screen._log().splitlines() if "output" in line] == [
        "r1 chunk 0 output", "r1 chunk 1 output", "r1 chunk 2 output"]
