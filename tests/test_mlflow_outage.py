"""An http MLflow tracking server that stops answering mid-run and comes back (restarted, a network blip): the
sink keeps what it would have sent (bounded), asks the server again with backoff, and sends it all in order
once it answers, with one warning when logging pauses and one note when it resumes.

MLflow's own request retries are turned off here (MLFLOW_HTTP_REQUEST_MAX_RETRIES=0): a request to the dead
server fails at once, so what is tested is the sink's own waiting and probing (with MLflow's default retries,
see test_mlflow_server_gone)."""
from __future__ import annotations

import time

import pytest

pytest.importorskip("mlflow")

from mlflow_fake_server import FakeTrackingServer  # noqa: E402
from mlflow_helpers import wait_until  # noqa: E402
from rftui.tracking.mlflow_outage import MAX_NOTED_OUTAGES, Outage  # noqa: E402
from rftui.tracking.mlflow_sink import MlflowSink  # noqa: E402


@pytest.fixture
def server():
    srv = FakeTrackingServer()
    yield srv
    srv.die()


@pytest.fixture
def make_sink(server, monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    sinks: list[MlflowSink] = []

    def make(**kw):
        warnings: list[str] = []
        kw.setdefault("reconnect_interval", 0.05)
        kw.setdefault("max_reconnect_interval", 0.2)
        sink = MlflowSink(server.uri, "exp", on_warning=warnings.append, flush_interval=0.05, workdir=tmp_path, **kw)
        sinks.append(sink)
        return sink, warnings

    yield make
    for sink in sinks:
        sink.close(timeout=2.0)


def starting(prefix: str):
    return lambda warnings: [w for w in warnings if w.startswith(prefix)]


paused, resumed = starting("MLflow logging paused"), starting("MLflow logging resumed")


def log(sink: MlflowSink, run_id: str, steps, name: str = "loss", settle: bool = False) -> None:
    for step in steps:
        sink.log_metrics(run_id, step, {name: float(step)})
        if settle:  # let the sink's thread take each point in (the cap then drops the oldest, deterministically)
            assert wait_until(lambda: sink._mirror.queued_points == 0, timeout=5.0)


def test_points_before_during_and_after_an_outage_all_arrive_in_order(server, make_sink, tmp_path):
    sink, warnings = make_sink()
    assert sink.start_run("r1", label="r1", params={}) == "run1"
    log(sink, "r1", range(5))
    sink.flush()
    assert server.steps() == [0, 1, 2, 3, 4]

    server.die()
    log(sink, "r1", range(5, 10))
    assert wait_until(lambda: paused(warnings), timeout=5.0)
    assert not sink.healthy
    t0 = time.monotonic()
    assert sink.start_run("r2", label="r2", params={}) is None  # created once the server answers
    log(sink, "r2", range(3), name="acc")
    sink.set_status("r1", "RUNNING")
    sink.flush(timeout=10.0)  # nothing can be sent: it does not wait
    assert time.monotonic() - t0 < 0.5
    time.sleep(0.3)  # a few probes find it still down
    assert server.metrics[5:] == [] and not resumed(warnings)

    server.revive()
    assert wait_until(lambda: resumed(warnings), timeout=5.0)
    assert sink.healthy
    log(sink, "r1", range(10, 15))
    sink.flush()
    assert [(k, s, v) for k, s, v in server.metrics if k == "loss"] == [("loss", s, float(s)) for s in range(15)]
    assert server.steps("acc") == [0, 1, 2]
    assert sink.mlflow_run_id("r2") == "run2"
    assert server.statuses == [("run1", "RUNNING")]
    sink.close()
    assert len(warnings) == 2, warnings  # nothing is said at close: nothing was left unsent
    assert warnings[0].startswith(f"MLflow logging paused: the tracking server at {server.uri} stopped answering "
                                  "(connection refused); training continues.")
    assert warnings[0].endswith("it is asked every 0.05 s, backing off to 0.2 s")
    assert warnings[1].startswith(f"MLflow logging resumed: the tracking server at {server.uri} answers again after ")
    assert warnings[1].endswith("; 8 metric points sent since it stopped answering (none dropped)")


def test_beyond_the_cap_the_oldest_points_are_dropped_and_the_note_says_how_many(server, make_sink, tmp_path):
    sink, warnings = make_sink(max_pending_points=10)
    assert sink.start_run("r1", label="r1", params={}) == "run1"
    server.die()
    log(sink, "r1", [0])
    assert wait_until(lambda: paused(warnings), timeout=5.0)
    assert "Up to 10 metric points wait in memory (beyond that, some are dropped)" in warnings[0]
    log(sink, "r1", range(1, 30), settle=True)
    server.revive()
    assert wait_until(lambda: resumed(warnings), timeout=5.0)
    assert server.steps() == list(range(20, 30))  # the newest 10, in order
    assert warnings[1].endswith("; 10 metric points sent since it stopped answering (20 metric points dropped "
                                f"while waiting; they remain in the experiment's state.db (`rftui show exp "
                                f"--workdir {tmp_path}`))")
    assert len(warnings) == 2, warnings


def test_a_server_back_but_failing_at_first_is_retried_within_the_same_outage(server, make_sink):
    sink, warnings = make_sink(retry_interval=0.05, max_retry_interval=0.1)
    assert sink.start_run("r1", label="r1", params={}) == "run1"
    server.die()
    log(sink, "r1", range(4))
    assert wait_until(lambda: paused(warnings), timeout=5.0)
    server.failing_batches = 1  # it answers /health, but its first log-batch fails
    server.revive()
    assert wait_until(lambda: resumed(warnings), timeout=5.0)
    assert server.steps() == [0, 1, 2, 3]
    assert len(warnings) == 3 and "retrying" in warnings[1], warnings
    assert warnings[2].endswith("; 4 metric points sent since it stopped answering (none dropped)")


def test_a_flapping_server_is_warned_about_only_a_few_times(server, make_sink):
    sink, warnings = make_sink()
    assert sink.start_run("r1", label="r1", params={}) == "run1"
    for outage in range(MAX_NOTED_OUTAGES + 1):
        server.die()
        log(sink, "r1", [outage])
        assert wait_until(lambda: sink._mirror.down, timeout=5.0)
        server.revive()
        assert wait_until(lambda: sink._mirror.outages.current is None, timeout=5.0)
    assert server.steps() == list(range(MAX_NOTED_OUTAGES + 1))
    assert len(paused(warnings)) == len(resumed(warnings)) == MAX_NOTED_OUTAGES, warnings
    assert len(warnings) == 2 * MAX_NOTED_OUTAGES


def test_points_beyond_the_cap_while_the_sinks_thread_is_held_up_are_dropped_with_one_warning(server, make_sink):
    # The sink's thread sits in a slow request (or in MLflow's own retries): what callers queue is bounded too.
    sink, warnings = make_sink(max_pending_points=10)
    assert sink.start_run("r1", label="r1", params={}) == "run1"
    server.hold.clear()
    log(sink, "r1", [0])
    assert wait_until(lambda: sink._mirror.busy_since is not None, timeout=5.0)
    log(sink, "r1", range(1, 31))  # 10 taken, 20 refused at once
    assert sink._mirror.queued_points == 10
    server.hold.set()
    assert wait_until(lambda: len(server.metrics) == 11, timeout=5.0)
    sink.flush()
    assert server.steps() == list(range(11))
    assert warnings == ["MLflow is behind: over 10 metric points waiting; more are dropped from MLflow "
                        "(training is unaffected; the experiment's state.db keeps them)"]


def test_the_server_is_asked_again_with_backoff():
    outage = Outage(1, since=100.0, next_probe=102.0)
    waits = []
    now = 102.0
    for _ in range(7):
        outage.probe_failed(now, first=2.0, most=60.0)
        waits.append(outage.next_probe - now)
        now = outage.next_probe
    assert waits == [4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]  # after the first ask, 2 s after it went down
    outage.down_again(now, first=2.0)  # it answered, then stopped again: asked soon, the backoff starts over
    assert outage.next_probe == now + 2.0 and outage.down
