"""Shared by the MLflow sink tests: one sqlite tracking DB per test module (its schema migration costs
~1.5 s), one MLflow experiment per test, and small waiting helpers.

Test modules take the fixtures by assignment (``uri = mlflow_helpers.uri``)."""
from __future__ import annotations

import socket
import time

import pytest
from mlflow.tracking import MlflowClient

from rftui.tracking.mlflow_sink import MlflowSink

BAD_URI = "sqlite:////proc/nope/mlflow.db"


@pytest.fixture(scope="module")
def uri(tmp_path_factory) -> str:
    d = tmp_path_factory.mktemp("mlflow")
    tracking_uri = f"sqlite:///{d}/mlflow.db"
    MlflowClient(tracking_uri=tracking_uri).search_experiments()  # migrate the schema once
    return tracking_uri


@pytest.fixture
def client(uri) -> MlflowClient:
    return MlflowClient(tracking_uri=uri)


@pytest.fixture
def make_sink(uri, request):
    """make_sink(**kw) -> (sink, warnings); the experiment is named after the test."""
    sinks: list[MlflowSink] = []

    def make(experiment: str | None = None, **kw):
        warnings: list[str] = []
        kw.setdefault("flush_interval", 0.05)
        kw.setdefault("tracking_uri", uri)
        sink = MlflowSink(
            experiment_name=experiment or request.node.name, on_warning=warnings.append, **kw
        )
        sinks.append(sink)
        return sink, warnings

    yield make
    for sink in sinks:
        sink.close(timeout=2.0)


def history(client: MlflowClient, mid: str, name: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(mid, name))


def wait_until(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def closed_port() -> int:
    """A local port nothing listens on (connections to it are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
