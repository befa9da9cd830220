"""MlflowSink: params/tags (flattened, redacted), batched metrics, no duplicates, status and
deletion, and tolerance of a broken tracking backend. One sqlite tracking DB per module (its
schema migration costs ~1.5 s), one MLflow experiment per test."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

mlflow = pytest.importorskip("mlflow")
from mlflow.tracking import MlflowClient  # noqa: E402

from rftui.tracking.mlflow_sink import (  # noqa: E402
    MlflowSink,
    default_tracking_uri,
    flatten_params,
    mlflow_key,
    redact,
)

HF_TOKEN = "hf_" + "aBcDeFgHiJkLmNoPqRsTuVwXyZ01234567"
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


# ----------------------------------------------------------------------------- pure helpers


def test_default_tracking_uri(tmp_path, monkeypatch):
    assert default_tracking_uri(tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert default_tracking_uri(tmp_path).startswith("sqlite:////")
    monkeypatch.chdir(tmp_path)
    assert default_tracking_uri(Path("rftui-runs")) == (
        f"sqlite:///{tmp_path.resolve()}/rftui-runs/mlflow.db"
    )


def test_flatten_params_nested_lists_and_limits():
    flat = flatten_params(
        {
            "model_name": "rftui/tiny-llama",
            "lora": {"r": 8, "lora_alpha": 16.0, "target_modules": ["q_proj", "v_proj"]},
            "training": {"learning_rate": 1e-3, "bf16": False, "deep": {"x": None}},
            "generation": {},
            "shape": (1, 2),
            "long": "x" * 7000,
            "odd@key": 1,
        }
    )
    assert flat["model_name"] == "rftui/tiny-llama"
    assert flat["lora.r"] == "8"
    assert flat["lora.lora_alpha"] == "16.0"
    assert flat["lora.target_modules"] == '["q_proj","v_proj"]'
    assert flat["training.learning_rate"] == "0.001"
    assert flat["training.bf16"] == "False"
    assert flat["training.deep.x"] == "None"
    assert flat["generation"] == "{}"
    assert flat["shape"] == "[1,2]"
    assert len(flat["long"]) == 6000
    assert flat["odd_key"] == "1"
    assert all(isinstance(v, str) for v in flat.values())
    assert flatten_params({"r": 8}, prefix="lora") == {"lora.r": "8"}
    assert mlflow_key("eval/loss") == "eval/loss"
    assert len(mlflow_key("k" * 400)) == 250


def test_redact_keys_and_values():
    src = {
        "token": "abc",
        "HF_TOKEN": "abc",
        "hfToken": "abc",
        "api_key": "abc",
        "apiKey": "abc",
        "OPENAI_APIKEY": "abc",
        "db_password": "abc",
        "client_secret": "abc",
        "auth": "abc",
        "use_auth_token": True,
        "credentials": {"user": "u", "pw": "p"},
        "hub_token": "abc",
        "model_kwargs": {"token": "abc", "torch_dtype": "float32", "revision": HF_TOKEN},
        "callbacks": [{"api_key": "abc", "name": "wandb"}, "plain", f"Bearer {HF_TOKEN}"],
        "model_kwargs.token": "abc",
        # not secrets
        "max_new_tokens": 64,
        "eos_token": "<|end|>",
        "pad_token_id": 0,
        "tokenizer": "gpt2",
        "author": "me",
        "response_key": "completion",
        "no_token": None,
        "hf_model": "hf_internal_testing",
    }
    before = json.dumps(src, sort_keys=True)
    out = redact(src)
    assert json.dumps(src, sort_keys=True) == before  # input untouched
    for key in ("token", "HF_TOKEN", "hfToken", "api_key", "apiKey", "OPENAI_APIKEY",
                "db_password", "client_secret", "auth", "use_auth_token", "credentials",
                "hub_token", "model_kwargs.token"):
        assert out[key] == "***", key
    assert out["model_kwargs"] == {"token": "***", "torch_dtype": "float32", "revision": "***"}
    assert out["callbacks"] == [{"api_key": "***", "name": "wandb"}, "plain", "***"]
    assert out["max_new_tokens"] == 64
    assert out["eos_token"] == "<|end|>"
    assert out["pad_token_id"] == 0
    assert out["tokenizer"] == "gpt2"
    assert out["author"] == "me"
    assert out["response_key"] == "completion"
    assert out["no_token"] is None
    assert out["hf_model"] == "hf_internal_testing"  # too short to be an access token
    assert HF_TOKEN not in json.dumps(out)


# ----------------------------------------------------------------------------- with MLflow


def test_start_run_logs_flattened_redacted_params_and_tags(make_sink, client, request):
    sink, warnings = make_sink()
    params = {
        "model_name": "rftui/tiny-llama",
        "model_kwargs": {"token": "sekrit-value", "torch_dtype": "float32"},
        "training": {"learning_rate": 1e-3, "hub_token": "sekrit-value", "max_steps": 40},
        "lora": {"r": 8, "target_modules": ["q_proj", "v_proj"]},
        "generation": {"max_new_tokens": 64},
        "note": f"pulled with {HF_TOKEN}",
    }
    tags = {"rftui.run_id": "r1", "rftui.parent": "r0", "rftui.warm_start": "true"}
    mid = sink.start_run("r1", label="r1 r=8 lr=1e-3", params=params, tags=tags)
    assert mid is not None
    assert sink.mlflow_run_id("r1") == mid
    sink.flush()

    run = client.get_run(mid)
    assert run.info.run_name == "r1 r=8 lr=1e-3"
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == request.node.name
    p = run.data.params
    assert p["model_kwargs.token"] == "***"
    assert p["training.hub_token"] == "***"
    assert p["note"] == "***"
    assert p["model_kwargs.torch_dtype"] == "float32"
    assert p["training.learning_rate"] == "0.001"
    assert p["lora.target_modules"] == '["q_proj","v_proj"]'
    assert p["generation.max_new_tokens"] == "64"
    blob = json.dumps([p, run.data.tags])
    assert "sekrit-value" not in blob and HF_TOKEN not in blob
    for key, value in tags.items():
        assert run.data.tags[key] == value
    assert warnings == []


def test_metrics_shipped_with_log_batch_only(make_sink, client, uri, monkeypatch, request):
    calls = {"log_batch": 0, "log_metric": 0}
    real_log_batch = MlflowClient.log_batch

    def spy_log_batch(self, *args, **kwargs):
        calls["log_batch"] += 1
        return real_log_batch(self, *args, **kwargs)

    def no_log_metric(self, *args, **kwargs):  # pragma: no cover - must not run
        calls["log_metric"] += 1
        raise AssertionError("per-point log_metric must not be used")

    monkeypatch.setattr(MlflowClient, "log_batch", spy_log_batch)
    monkeypatch.setattr(MlflowClient, "log_metric", no_log_metric)

    sink, warnings = make_sink(batch_size=500)
    mid = sink.start_run("r1", label="r1", params={"lora": {"r": 8}})
    sink.start_run("r2", label="r2", params={"lora": {"r": 16}})
    calls["log_batch"] = 0
    for step in range(300):
        sink.log_metrics("r1", step, {"loss": 2.0 - step / 1000, "learning_rate": 1e-3})
        sink.log_metrics("r2", step, {"loss": 3.0 - step / 1000})
    sink.log_metrics("r1", 300, {"eval/loss": 1.5, "note": "not a number"})
    sink.flush()

    assert calls["log_metric"] == 0
    assert 2 <= calls["log_batch"] <= 10  # 901 points in a handful of batches
    loss = history(client, mid, "loss")
    assert [s for s, _ in loss] == list(range(300))
    assert loss[-1][1] == pytest.approx(2.0 - 299 / 1000)
    assert history(client, mid, "eval/loss") == [(300, 1.5)]
    assert "note" not in client.get_run(mid).data.metrics

    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert mlflow.get_tracking_uri() == uri
    df = mlflow.search_runs(experiment_names=[request.node.name], order_by=["params.lora.r"])
    assert len(df) == 2
    by_name = {row["tags.mlflow.runName"]: row for _, row in df.iterrows()}
    assert by_name["r1"]["metrics.loss"] == pytest.approx(2.0 - 299 / 1000)
    assert by_name["r2"]["metrics.loss"] == pytest.approx(3.0 - 299 / 1000)
    assert by_name["r1"]["params.lora.r"] == "8"
    assert warnings == []


def test_metrics_ship_in_background_without_flush(make_sink, client):
    sink, _ = make_sink(flush_interval=0.05)
    mid = sink.start_run("r1", label="r1", params={})
    sink.log_metrics("r1", 0, {"loss": 1.0})
    assert wait_until(lambda: history(client, mid, "loss") == [(0, 1.0)], timeout=5.0)


def test_metrics_before_start_run_wait_for_it(make_sink, client):
    sink, _ = make_sink()
    sink.log_metrics("r1", 0, {"loss": 1.0})
    mid = sink.start_run("r1", label="r1", params={})
    sink.flush()
    assert history(client, mid, "loss") == [(0, 1.0)]


def test_no_duplicates_in_process_and_across_reattach(make_sink, client, request):
    sink, _ = make_sink()
    mid = sink.start_run("r1", label="r1", params={"lora": {"r": 8}}, tags={"rftui.run_id": "r1"})
    for step in range(10):
        sink.log_metrics("r1", step, {"loss": float(step)})
    sink.flush()
    for step in range(5, 10):  # re-sent (e.g. a re-run quantum): already shipped
        sink.log_metrics("r1", step, {"loss": 100.0 + step})
    sink.flush()
    sink.close()
    assert history(client, mid, "loss") == [(s, float(s)) for s in range(10)]

    # A resumed experiment: a new sink re-attaches and re-sends steps shipped before the crash.
    sink2, warnings = make_sink()
    again = sink2.start_run(
        "r1", label="r1", params={"lora": {"r": 8}, "extra": 1}, mlflow_run_id=mid,
        tags={"rftui.resumed": "true"},
    )
    assert again == mid
    for step in range(15):
        sink2.log_metrics("r1", step, {"loss": float(step)})
    sink2.flush()
    assert history(client, mid, "loss") == [(s, float(s)) for s in range(15)]
    run = client.get_run(mid)
    assert run.data.params["extra"] == "1" and run.data.params["lora.r"] == "8"
    assert run.data.tags["rftui.resumed"] == "true"
    runs = client.search_runs([run.info.experiment_id])
    assert [r.info.run_id for r in runs] == [mid]  # re-attached, not a second run
    assert warnings == []


def test_reattach_to_missing_run_creates_a_new_one(make_sink, client):
    sink, warnings = make_sink()
    mid = sink.start_run("r1", label="r1", params={}, mlflow_run_id="0" * 32)
    assert mid is not None and mid != "0" * 32
    sink.log_metrics("r1", 0, {"loss": 1.0})
    sink.flush()
    assert history(client, mid, "loss") == [(0, 1.0)]
    assert len(warnings) == 1 and "not found" in warnings[0]


def test_status_changes_visible(make_sink, client):
    sink, warnings = make_sink()
    mid = sink.start_run("r1", label="r1", params={})
    seen = []
    for status in ("KILLED", "RUNNING", "FINISHED"):
        sink.set_status("r1", status)
        sink.flush()
        seen.append(client.get_run(mid).info.status)
    assert seen == ["KILLED", "RUNNING", "FINISHED"]
    sink.set_status("r1", "failed")  # rftui state names are accepted
    sink.flush()
    assert client.get_run(mid).info.status == "FAILED"
    with pytest.raises(ValueError):
        sink.set_status("r1", "exploded")
    sink.set_tags("r1", {"rftui.chunk": 3, "api_key": "sekrit"})
    sink.flush()
    tags = client.get_run(mid).data.tags
    assert tags["rftui.chunk"] == "3" and tags["api_key"] == "***"
    assert warnings == []


def test_mark_deleted(make_sink, client):
    sink, warnings = make_sink()
    mid = sink.start_run("r1", label="r1", params={})
    keep = sink.start_run("r2", label="r2", params={})
    for step in range(5):
        sink.log_metrics("r1", step, {"loss": float(step)})
    sink.mark_deleted("r1")
    sink.log_metrics("r1", 5, {"loss": 5.0})  # after delete: ignored quietly
    sink.set_status("r1", "FINISHED")
    sink.flush()
    run = client.get_run(mid)
    assert run.info.lifecycle_stage == "deleted"
    assert run.info.status == "KILLED"
    assert run.data.tags["rftui.deleted"] == "true"
    assert history(client, mid, "loss") == [(s, float(s)) for s in range(5)]
    assert client.get_run(keep).info.lifecycle_stage == "active"
    assert warnings == []


def test_deleting_a_finished_run_keeps_its_status(make_sink, client):
    sink, warnings = make_sink()
    done = sink.start_run("r1", label="r1", params={})
    failed = sink.start_run("r2", label="r2", params={})
    sink.set_status("r1", "FINISHED")
    sink.set_status("r2", "FAILED")
    sink.flush()
    sink.mark_deleted("r1", ended=True)
    sink.mark_deleted("r2", ended=True)
    sink.flush()
    for mid, status in ((done, "FINISHED"), (failed, "FAILED")):
        run = client.get_run(mid)
        assert (run.info.lifecycle_stage, run.info.status, run.data.tags["rftui.deleted"]) == \
            ("deleted", status, "true")
    assert warnings == []


def test_runs_not_started_here_can_be_finished_or_deleted_by_id(make_sink, client):
    first, _ = make_sink()
    stopped = first.start_run("r1", label="r1", params={})
    doomed = first.start_run("r2", label="r2", params={})
    first.close()
    # After `rftui resume`, stopped runs are not re-attached, yet can still be closed/deleted.
    sink, warnings = make_sink()
    sink.set_status("r1", "FINISHED", mlflow_run_id=stopped)
    sink.set_tags("r1", {"rftui.final": "yes"}, mlflow_run_id=stopped)
    sink.mark_deleted("r2", mlflow_run_id=doomed)
    sink.mark_deleted("r3", mlflow_run_id="f" * 32)  # gone from MLflow: warned, not retried
    sink.flush()
    run = client.get_run(stopped)
    assert run.info.status == "FINISHED" and run.data.tags["rftui.final"] == "yes"
    assert run.info.run_name == "r1"
    assert client.get_run(doomed).info.lifecycle_stage == "deleted"
    assert len(warnings) == 1 and "not found" in warnings[0]


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


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_tracking_server_warns_at_once_and_never_stalls(make_sink):
    # MLflow's HTTP client retries a refused connection for about four minutes before it raises: without a
    # quick probe the warning came minutes late (or never, in a short run), the first start_run waited its
    # whole start_timeout and close waited on the retries.
    sink, warnings = make_sink(tracking_uri=f"http://127.0.0.1:{_closed_port()}", retry_interval=0.05)
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


def test_flush_is_quick(make_sink, client):
    sink, _ = make_sink(batch_size=1000)
    mid = sink.start_run("r1", label="r1", params={})
    for step in range(2000):
        sink.log_metrics("r1", step, {"loss": 1.0})
    t0 = time.monotonic()
    sink.flush()
    assert time.monotonic() - t0 < 5.0
    assert len(history(client, mid, "loss")) == 2000
    t0 = time.monotonic()
    sink.flush()  # nothing queued
    assert time.monotonic() - t0 < 0.5


def test_two_experiments_coexist(make_sink, client):
    a, _ = make_sink("coexist-a")
    b, _ = make_sink("coexist-b")
    mid_a = a.start_run("r1", label="r1", params={})
    mid_b = b.start_run("r1", label="r1", params={})
    a.log_metrics("r1", 0, {"loss": 1.0})
    b.log_metrics("r1", 0, {"loss": 2.0})
    a.flush()
    b.flush()
    assert client.get_run(mid_a).info.experiment_id != client.get_run(mid_b).info.experiment_id
    assert history(client, mid_a, "loss") == [(0, 1.0)]
    assert history(client, mid_b, "loss") == [(0, 2.0)]


def test_nothing_printed_and_nothing_written_to_cwd(tmp_path, monkeypatch, capfd):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    workdir = tmp_path / "rftui-runs"  # does not exist yet: the sink creates it
    sink = MlflowSink(default_tracking_uri(workdir), "quiet", on_warning=pytest.fail)
    try:
        mid = sink.start_run("r1", label="r1", params={"lora": {"r": 8}})
        sink.log_metrics("r1", 0, {"loss": 1.0})
        sink.set_status("r1", "FINISHED")
        sink.flush()
    finally:
        sink.close()
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    assert mid is not None and (workdir / "mlflow.db").exists()
    assert list(cwd.iterdir()) == []
