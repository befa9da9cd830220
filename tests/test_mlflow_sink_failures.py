"""MlflowSink against a broken tracking backend: an unusable URI, a server that does not answer, failing
or slow requests. Training's side of the sink never waits and each kind of failure is warned about once."""
from __future__ import annotations

import threading
import time

import pytest

mlflow = pytest.importorskip("mlflow")
from mlflow.tracking import MlflowClient  # noqa: E402

import mlflow_helpers  # noqa: E402
from mlflow_helpers import BAD_URI, closed_port, history, wait_until  # noqa: E402
from rftui.tracking.mlflow_sink import MlflowSink  # noqa: E402

uri, client, make_sink = mlflow_helpers.uri, mlflow_helpers.client, mlflow_helpers.make_sink  # fixtures


def test_unusable_uri_is_a_warning_no_op(make_sink):
    sink, warnings = make_sink(tracking_uri=BAD_URI, retry_interval=0.05)
    t0 = time.monotonic()
    assert sink.start_run("r1", label="r1", params={"token": "x"}) is None
    for step in range(1000):
        sink.log_metrics("r1", step, {"loss": 1.0})
    sink.set_status("r1", "KILLED")
    sink.set_tags("r1", {"a": "b"})
    sink.mark_deleted("r1")
    sink.flush(timeout=2.0)
    sink.flush(timeout=2.0)
    assert sink.start_run("r2", label="r2", params={}) is None
    sink.close(timeout=2.0)
    sink.log_metrics("r1", 1, {"loss": 1.0})  # after close: still no-op
    assert time.monotonic() - t0 < 5.0
    assert not sink.healthy
    assert len(warnings) == 1, warnings  # once per kind, however many calls failed
    assert "MLflow" in warnings[0] and "/proc/nope" in warnings[0]


def test_unreachable_tracking_server_warns_at_once_and_never_stalls(make_sink):
    # MLflow's HTTP client retries a refused connection for about four minutes before it raises: without a
    # quick probe the warning came minutes late (or never, in a short run), the first start_run waited its
    # whole start_timeout and close waited on the retries.
    sink, warnings = make_sink(tracking_uri=f"http://127.0.0.1:{closed_port()}", retry_interval=0.05)
    t0 = time.monotonic()
    assert sink.start_run("r1", label="r1", params={"lr": 1}) is None
    assert time.monotonic() - t0 < 3.0
    sink.log_metrics("r1", 1, {"loss": 1.0})
    assert wait_until(lambda: warnings, timeout=3.0)
    t1 = time.monotonic()
    sink.close(timeout=10.0)
    assert time.monotonic() - t1 < 3.0
    assert len(warnings) == 1, warnings
    assert "MLflow tracking unavailable at http://127.0.0.1:" in warnings[0]
    assert "connection refused" in warnings[0]
    assert not sink.healthy


def test_a_server_that_never_answers_is_unreachable_after_the_probe_timeout():
    import socket

    from rftui.tracking.mlflow_connect import TrackingServerUnreachable, check_server_answers

    with socket.socket() as server:  # listens (the kernel completes the connection) but never replies
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        t0 = time.monotonic()
        with pytest.raises(TrackingServerUnreachable, match="no answer within 0.5 s"):
            check_server_answers(f"http://127.0.0.1:{server.getsockname()[1]}", timeout=0.5)
        assert time.monotonic() - t0 < 3.0
    check_server_answers("sqlite:////nowhere/mlflow.db")  # not a server: nothing to probe


def test_on_warning_that_raises_is_contained():
    def bad_callback(message):
        raise RuntimeError("UI gone")

    sink = MlflowSink(BAD_URI, "x", on_warning=bad_callback)
    try:
        assert sink.start_run("r1", label="r1", params={}) is None
        sink.log_metrics("r1", 0, {"loss": 1.0})
        sink.flush(timeout=1.0)
    finally:
        sink.close(timeout=1.0)


def test_failing_log_batch_warns_once_and_retries(make_sink, client, monkeypatch):
    sink, warnings = make_sink(retry_interval=0.05, max_retry_interval=0.1)
    mid = sink.start_run("r1", label="r1", params={})
    real_log_batch = MlflowClient.log_batch
    failures = {"n": 0}

    def flaky(self, run_id, metrics=(), params=(), tags=(), synchronous=None):
        if metrics and failures["n"] < 4:
            failures["n"] += 1
            raise ConnectionError("tracking server down")
        return real_log_batch(self, run_id, metrics=metrics, params=params, tags=tags,
                              synchronous=synchronous)

    monkeypatch.setattr(MlflowClient, "log_batch", flaky)
    for step in range(20):
        sink.log_metrics("r1", step, {"loss": float(step)})
    sink.flush(timeout=2.0)  # first attempt fails; flush returns anyway
    assert len(warnings) == 1 and "tracking server down" in warnings[0]
    assert wait_until(lambda: len(history(client, mid, "loss")) == 20, timeout=5.0)
    assert failures["n"] == 4
    assert history(client, mid, "loss") == [(s, float(s)) for s in range(20)]
    assert len(warnings) == 1


def test_points_are_dropped_after_retry_window_and_memory_is_bounded(make_sink, monkeypatch):
    def down(self, *args, **kwargs):
        raise ConnectionError("tracking server down")

    sink, warnings = make_sink(retry_interval=0.02, max_retry_interval=0.05, retry_window=0.2,
                               max_pending_points=50)
    sink.start_run("r1", label="r1", params={})
    monkeypatch.setattr(MlflowClient, "log_batch", down)
    for step in range(100):
        sink.log_metrics("r1", step, {"loss": float(step)})
    sink.flush(timeout=2.0)
    assert wait_until(lambda: any("dropped" in w for w in warnings), timeout=3.0)
    assert any("behind" in w for w in warnings)  # more than max_pending_points queued
    kinds = [w.split(" (")[0] for w in warnings]
    assert len(kinds) == len(set(kinds))  # one warning per kind


def test_calls_never_block_on_a_slow_backend(make_sink, client, monkeypatch):
    sink, warnings = make_sink()
    mid = sink.start_run("r1", label="r1", params={})
    real_log_batch = MlflowClient.log_batch
    release = threading.Event()

    def slow(self, *args, **kwargs):
        release.wait(5.0)
        return real_log_batch(self, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "log_batch", slow)
    t0 = time.monotonic()
    for step in range(2000):
        sink.log_metrics("r1", step, {"loss": 1.0, "lr": 1e-3})
    sink.set_status("r1", "KILLED")
    sink.set_tags("r1", {"x": "y"})
    assert time.monotonic() - t0 < 1.0  # 4k points queued without waiting on MLflow

    t0 = time.monotonic()
    sink.flush(timeout=0.2)  # backend stuck: flush gives up at its timeout
    assert time.monotonic() - t0 < 1.0
    release.set()
    sink.flush(timeout=10.0)
    assert len(history(client, mid, "loss")) == 2000
    assert client.get_run(mid).info.status == "KILLED"
    assert warnings == []
