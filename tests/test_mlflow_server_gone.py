"""An http MLflow tracking server that answers at start and goes away mid-run for good: one warning says
logging paused, nothing is sent while it is down, closing does not wait out MLflow's own retries (minutes) and
says what was not sent, and training's results do not change. (A server that comes back: test_mlflow_outage.)"""
from __future__ import annotations

import time
from dataclasses import replace

import pytest

pytest.importorskip("mlflow")

from engine_helpers import FAKE, SAMPLES, drive, rows  # noqa: E402
from mlflow_fake_server import FakeTrackingServer  # noqa: E402
from mlflow_helpers import wait_until  # noqa: E402
from rftui.config.yaml_config import load_experiment_file  # noqa: E402
from rftui.engine.assemble import make_controller  # noqa: E402
from rftui.engine.events import EngineWarning  # noqa: E402
from rftui.engine.setup import create_experiment  # noqa: E402
from rftui.tracking.mlflow_sink import MlflowSink  # noqa: E402

MLFLOW_DEFAULT_RETRIES = "7"  # MLflow 3.x: about four minutes of backoff before a refused request fails


@pytest.fixture
def server():
    srv = FakeTrackingServer()
    yield srv
    srv.die()


def paused(warnings: list[str]) -> list[str]:
    return [w for w in warnings if w.startswith("MLflow logging paused")]


def unsent(warnings: list[str]) -> list[str]:
    return [w for w in warnings if w.startswith("MLflow logging ended while")]


def test_a_server_that_dies_mid_run_pauses_logging_and_close_says_what_was_not_sent(server, monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", MLFLOW_DEFAULT_RETRIES)
    warnings: list[str] = []
    sink = MlflowSink(server.uri, "exp", on_warning=warnings.append, flush_interval=0.05, workdir=tmp_path)
    try:
        assert sink.start_run("r1", label="r1", params={"lr": 1}) == "run1"
        for step in range(5):
            sink.log_metrics("r1", step, {"loss": float(step)})
        sink.flush()
        assert server.metrics == [("loss", s, float(s)) for s in range(5)]
        server.die()
        for step in range(5, 10):
            sink.log_metrics("r1", step, {"loss": float(step)})
        # No caller waits here: the warning comes while MLflow's client is still retrying.
        assert wait_until(lambda: warnings, timeout=8.0), "no warning while MLflow retried a dead server"
        t0 = time.monotonic()
        assert sink.start_run("r2", label="r2", params={}) is None  # nothing sent, nothing waited for
        sink.log_metrics("r1", 10, {"loss": 10.0})
        sink.set_status("r1", "FINISHED")
        sink.flush()
        assert time.monotonic() - t0 < 0.5
        assert not sink.healthy
    finally:
        t0 = time.monotonic()
        sink.close(timeout=10.0)
        closed_in = time.monotonic() - t0
    assert closed_in < 2.0
    assert len(warnings) == 2, warnings
    assert warnings[0] == (f"MLflow logging paused: the tracking server at {server.uri} stopped answering "
                           "(connection refused); training continues. Up to 200000 metric points wait in memory "
                           "(beyond that, some are dropped) and are sent when the server answers again; it is "
                           "asked every 2 s, backing off to 60 s")
    # Kept, not lost: steps 5..10 (the batch in MLflow's retries, then the later ones), r1's status, r2's start.
    assert warnings[1].startswith(f"MLflow logging ended while the tracking server at {server.uri} was not "
                                  "answering (for ")
    assert "): 6 metric points and the status, tags or params of 2 runs were not sent to MLflow. " in warnings[1]
    # where the points are, from any directory; no `rftui resume`: it refuses a finished experiment, and a
    # run_fit user resumes from Python
    assert warnings[1].endswith(f"remain in the experiment's state.db (`rftui show exp --workdir {tmp_path}`); "
                                "resuming the experiment while it is unfinished offers them to MLflow again")
    assert "rftui resume" not in warnings[1]
    assert server.metrics == [("loss", s, float(s)) for s in range(5)]


def test_closing_right_after_the_server_died_does_not_wait_for_mlflow_retries(server, monkeypatch):
    # Before: flush and close (as the controller closes) waited their whole timeouts, ~20 s, with no warning.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", MLFLOW_DEFAULT_RETRIES)
    warnings: list[str] = []
    sink = MlflowSink(server.uri, "exp", on_warning=warnings.append, flush_interval=0.05)
    assert sink.start_run("r1", label="r1", params={}) == "run1"
    server.die()
    t0 = time.monotonic()
    for step in range(20):
        sink.log_metrics("r1", step, {"loss": float(step)})
    sink.set_status("r1", "FINISHED")
    sink.flush(timeout=10.0)
    sink.close(timeout=10.0)
    assert time.monotonic() - t0 < 4.0
    assert len(warnings) == 2 and paused(warnings) == warnings[:1] and unsent(warnings) == warnings[1:], warnings
    # All 20 are counted, though the thread sits in MLflow's retries and never took some of them in.
    assert "): 20 metric points and the status, tags or params of 1 run were not sent" in warnings[1]
    assert server.metrics == []


def test_after_close_a_thread_held_in_mlflow_retries_sends_nothing_more(server, monkeypatch):
    # The sink's thread sits in MLflow's retries when the sink closes; the server comes back before they
    # end: the request in flight may then get through, but nothing after it (close said it was not sent).
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")  # retries after 0, 2 then 4 s (+ up to 1 s)
    warnings: list[str] = []
    sink = MlflowSink(server.uri, "exp", on_warning=warnings.append, flush_interval=0.05, batch_size=2)
    assert sink.start_run("r1", label="r1", params={}) == "run1"
    server.die()
    for step in range(6):
        sink.log_metrics("r1", step, {"loss": float(step)})
    sink.set_status("r1", "FINISHED")
    sink.close(timeout=10.0)
    assert sink._mirror.busy_since is not None, "the thread was meant to be in a request"
    server.revive()
    sink._thread.join(10.0)
    assert not sink._thread.is_alive()
    assert server.steps() in ([], [0], [0, 1])  # at most the batch that was in flight
    assert server.statuses == []
    assert len(unsent(warnings)) == 1, warnings


def test_a_failed_request_is_followed_by_one_probe(server, monkeypatch):
    # With MLflow told not to retry, the request fails at once: the probe right after it pauses logging,
    # and no "retrying" warning comes first.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    warnings: list[str] = []
    sink = MlflowSink(server.uri, "exp", on_warning=warnings.append, flush_interval=0.05, retry_interval=0.05)
    try:
        assert sink.start_run("r1", label="r1", params={}) == "run1"
        server.die()
        sink.log_metrics("r1", 0, {"loss": 1.0})
        assert wait_until(lambda: warnings, timeout=3.0)
    finally:
        sink.close(timeout=5.0)  # its last cycle is forced: a sink still retrying would try (and warn) again
    sink._thread.join(5.0)
    assert not sink._thread.is_alive()
    mirror = sink._mirror
    assert mirror.down and mirror._pending_total == 1  # kept for the server, not given up
    assert len(warnings) == 2 and paused(warnings) == warnings[:1], warnings
    assert "): 1 metric point was not sent to MLflow. " in warnings[1]


def test_a_server_that_still_answers_is_retried_not_given_up(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    server = FakeTrackingServer(failing_batches=2)  # log-batch fails twice, /health answers
    warnings: list[str] = []
    sink = MlflowSink(server.uri, "exp", on_warning=warnings.append, flush_interval=0.05,
                      retry_interval=0.05, max_retry_interval=0.1)
    try:
        assert sink.start_run("r1", label="r1", params={}) == "run1"
        for step in range(3):
            sink.log_metrics("r1", step, {"loss": float(step)})
        assert wait_until(lambda: len(server.metrics) == 3, timeout=5.0)
        assert sink.healthy
    finally:
        sink.close(timeout=5.0)
        server.die()
    assert server.metrics == [("loss", s, float(s)) for s in range(3)]
    assert len(warnings) == 1 and "retrying" in warnings[0] and not paused(warnings), warnings


def tracked_experiment(tmp_path, name: str, tracking_uri: str | None):
    spec = load_experiment_file(SAMPLES / "smoke.yaml")
    runs = tuple(replace(r, training={**r.training, "max_steps": 16}) for r in spec.runs)
    spec = replace(spec, name=name, workdir=str(tmp_path), num_chunks=2, runs=runs)
    exp, spec, store = create_experiment(spec, rows(16), rows(4))
    return make_controller(exp, spec, store, workers=1, device="cpu", tracking=tracking_uri is not None,
                           tracking_uri=tracking_uri, backend=FAKE, backend_options={"step_seconds": 0.25},
                           preload=("rftui.engine.fake_backend",))


def trained(controller) -> dict:
    points = {(p["run_id"], p["name"], p["step"]): p["value"] for p in controller.store.all_metrics()}
    return {"runs": {r["run_id"]: (r["status"], r["steps_done"]) for r in controller.store.list_runs()},
            "metrics": points}


def test_an_experiment_trains_on_when_its_tracking_server_dies(tmp_path, server, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", MLFLOW_DEFAULT_RETRIES)

    def kill_once_points_arrived(controller, events):
        if server.metrics and not killed:
            killed.append(time.monotonic())
            server.die()

    killed: list[float] = []
    ctl = tracked_experiment(tmp_path / "tracked", "exp", server.uri)
    try:
        events = drive(ctl, limit=120, on_events=kill_once_points_arrived)
    finally:
        t0 = time.monotonic()
        late = ctl.close()
        closed_in = time.monotonic() - t0
    assert killed, "no metric reached the tracking server before the end"
    warned = [e.message for e in events + late if isinstance(e, EngineWarning)]
    assert len(warned) == 2 and paused(warned) == warned[:1] and unsent(warned) == warned[1:], warned
    assert f"(`rftui show exp --workdir {tmp_path / 'tracked'}`)" in warned[1]  # the controller's sink knows it
    assert closed_in < 5.0

    twin = tracked_experiment(tmp_path / "untracked", "exp", None)
    try:
        drive(twin, limit=120)
    finally:
        twin.close()
    result, expected = trained(ctl), trained(twin)
    assert set(result["runs"].values()) == {("completed", 16)}
    assert result == expected
