"""MlflowSink: params/tags (flattened, redacted), batched metrics, no duplicates, status and
deletion, against a local sqlite tracking store (failures: test_mlflow_sink_failures.py)."""
from __future__ import annotations

import json
import time

import pytest

mlflow = pytest.importorskip("mlflow")
from mlflow.tracking import MlflowClient  # noqa: E402

import mlflow_helpers  # noqa: E402
from mlflow_helpers import history, wait_until  # noqa: E402
from rftui.tracking.mlflow_sink import MlflowSink, default_tracking_uri  # noqa: E402

HF_TOKEN = "hf_" + "aBcDeFgHiJkLmNoPqRsTuVwXyZ01234567"

uri, client, make_sink = mlflow_helpers.uri, mlflow_helpers.client, mlflow_helpers.make_sink  # fixtures


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
