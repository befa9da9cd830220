"""An http MLflow tracking server that answers at start and goes away mid-run: one warning says logging
stopped, nothing more is sent, closing does not wait out MLflow's own retries (minutes), and training's
results do not change. The server is a small stdlib stand-in for `mlflow server` (seconds to start)."""
from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

pytest.importorskip("mlflow")

from engine_helpers import FAKE, SAMPLES, drive, rows  # noqa: E402
from mlflow_helpers import wait_until  # noqa: E402
from rftui.config.yaml_config import load_experiment_file  # noqa: E402
from rftui.engine.assemble import make_controller  # noqa: E402
from rftui.engine.events import EngineWarning  # noqa: E402
from rftui.engine.setup import create_experiment  # noqa: E402
from rftui.tracking.mlflow_sink import MlflowSink  # noqa: E402

MLFLOW_DEFAULT_RETRIES = "7"  # MLflow 3.x: about four minutes of backoff before a refused request fails


class FakeTrackingServer:
    """Answers the requests the sink makes (health, experiment, runs, log-batch) and records the metrics."""

    def __init__(self, failing_batches: int = 0) -> None:
        self.metrics: list[tuple[str, int, float]] = []
        self.failing_batches = failing_batches  # log-batch requests answered 500 first
        self.runs = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep the test output clean
                pass

            def answer(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if "experiments/get-by-name" in self.path:
                    return self.answer(404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "none"})
                return self.answer(200, {})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                if self.path.endswith("experiments/create"):
                    return self.answer(200, {"experiment_id": "1"})
                if self.path.endswith("runs/create"):
                    server.runs += 1
                    info = {"run_id": f"run{server.runs}", "run_uuid": f"run{server.runs}", "experiment_id": "1",
                            "status": "RUNNING", "lifecycle_stage": "active", "run_name": body.get("run_name", "")}
                    return self.answer(200, {"run": {"info": info, "data": {}}})
                if self.path.endswith("runs/log-batch") and body.get("metrics"):
                    if server.failing_batches > 0:
                        server.failing_batches -= 1
                        return self.answer(500, {"error_code": "INTERNAL_ERROR", "message": "busy"})
                    server.metrics += [(m["key"], int(m.get("step", 0)), m["value"]) for m in body["metrics"]]
                return self.answer(200, {})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.uri = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def die(self) -> None:
        """Stop answering: the port refuses connections from now on."""
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    srv = FakeTrackingServer()
    yield srv
    srv.die()


def stopped_warnings(warnings: list[str]) -> list[str]:
    return [w for w in warnings if w.startswith("MLflow logging stopped")]


def test_a_server_that_dies_mid_run_stops_logging_with_one_warning(server, monkeypatch, tmp_path):
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
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"MLflow logging stopped: the tracking server at {server.uri} stopped "
                                  "answering (connection refused)")
    # where the points are, from any directory; no `rftui resume`: it refuses a finished experiment, and a
    # run_fit user resumes from Python
    assert warnings[0].endswith(f"remain in the experiment's state.db (`rftui show exp --workdir {tmp_path}`); "
                                "resuming the experiment while it is unfinished offers them to MLflow again")
    assert "rftui resume" not in warnings[0]
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
    assert len(warnings) == 1 and len(stopped_warnings(warnings)) == 1, warnings
    assert server.metrics == []


def test_a_failed_request_is_followed_by_one_probe(server, monkeypatch):
    # With MLflow told not to retry, the request fails at once: the probe right after it stops logging,
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
    sink._thread.join(5.0)  # close() waits briefly for a stopped sink; the count below is final once it ends
    assert not sink._thread.is_alive()
    mirror = sink._mirror
    assert mirror.stopped and mirror._pending_total == 0  # given up for good: nothing kept for a retry
    assert not any(run.pending for run in mirror._runs.values())
    assert len(warnings) == 1 and stopped_warnings(warnings) == warnings, warnings


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
    assert len(warnings) == 1 and "retrying" in warnings[0] and not stopped_warnings(warnings), warnings


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
        ctl.close()
        closed_in = time.monotonic() - t0
    assert killed, "no metric reached the tracking server before the end"
    warned = [e.message for e in events if isinstance(e, EngineWarning)]
    assert len(warned) == 1 and stopped_warnings(warned) == warned, warned
    assert f"(`rftui show exp --workdir {tmp_path / 'tracked'}`)" in warned[0]  # the controller's sink knows it
    assert closed_in < 5.0

    twin = tracked_experiment(tmp_path / "untracked", "exp", None)
    try:
        drive(twin, limit=120)
    finally:
        twin.close()
    result, expected = trained(ctl), trained(twin)
    assert set(result["runs"].values()) == {("completed", 16)}
    assert result == expected
