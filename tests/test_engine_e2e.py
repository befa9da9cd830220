"""The engine on the tiny model: worker count does not change results; MLflow reads back; Ctrl-C resumes."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

from mlflow.tracking import MlflowClient
from safetensors.torch import load_file

from engine_helpers import SAMPLES, drive
from rftui.config.yaml_config import load_experiment_file
from rftui.data.sources import load_rows
from rftui.engine.assemble import make_controller
from rftui.engine.setup import create_experiment


def smoke_controller(tmp_path, name, workers=1, tracking=False, max_steps=4):
    spec = load_experiment_file(SAMPLES / "smoke.yaml")
    runs = tuple(replace(r, training={**r.training, "max_steps": max_steps}) for r in spec.runs)
    spec = replace(spec, name=name, workdir=str(tmp_path), runs=runs)
    base = SAMPLES
    exp, spec, store = create_experiment(spec, load_rows(spec.data.train, base), load_rows(spec.data.eval, base))
    return make_controller(exp, spec, store, workers=workers, device="cpu", tracking=tracking,
                           backend_options={"num_threads": 1})


def test_two_cpu_workers_give_the_same_results_as_one(tmp_path):
    results = {}
    for workers in (1, 2):
        ctl = smoke_controller(tmp_path / f"w{workers}", "smoke", workers=workers)
        try:
            drive(ctl, limit=300)
        finally:
            ctl.close()
        results[workers] = {
            run: ([v for _, v in ctl.store.metric_series(run, "loss")],
                  load_file(str(ctl.exp.adapters / run / "adapter_model.safetensors")))
            for run in ("r1", "r2")}
        assert {r["status"] for r in ctl.store.list_runs()} == {"completed"}
    for run in ("r1", "r2"):
        (loss1, weights1), (loss2, weights2) = results[1][run], results[2][run]
        assert loss1 == loss2 and len(loss1) == 4
        assert all((weights1[k] == weights2[k]).all() for k in weights1)


def test_metrics_reach_mlflow(tmp_path):
    ctl = smoke_controller(tmp_path, "tracked", tracking=True)
    try:
        drive(ctl, limit=300)
    finally:
        ctl.close()
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")  # never the global URI
    experiment = client.get_experiment_by_name("tracked")
    found = client.search_runs([experiment.experiment_id])
    assert len(found) == 2
    for run in found:
        for name in ("loss", "eval_loss", "rougeL", "bleu", "chunk", "learning_rate", "grad_norm"):
            assert name in run.data.metrics, name
        assert {"learning_rate", "lora.r"} <= set(run.data.params)
        assert run.info.status == "FINISHED"
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "loss")]
        assert steps == [1, 2, 3, 4]
    assert {run.data.tags["rftui.run_id"] for run in found} == {"r1", "r2"}


def test_ctrl_c_checkpoints_exits_130_and_resume_finishes(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    config = tmp_path / "interrupt.yaml"
    text = (SAMPLES / "smoke.yaml").read_text().replace("data/support.jsonl", str(SAMPLES / "data" / "support.jsonl"))
    text = text.replace("name: smoke", "name: chatqa-lite").replace("max_steps: 4", "max_steps: 24")
    config.write_text(text.replace("num_chunks: 2", "num_chunks: 4"))
    command = [sys.executable, "-m", "rftui", "run", str(config), "--no-ui",
               "--no-tracking", "--workdir", str(tmp_path)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 240
    db = tmp_path / "chatqa-lite" / "state.db"
    while time.monotonic() < deadline:  # wait until the first quantum is done, then interrupt
        time.sleep(0.5)
        if db.exists():
            import sqlite3

            with sqlite3.connect(db) as conn:
                if conn.execute("select count(*) from quanta where status='done'").fetchone()[0] >= 1:
                    break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "rftui resume chatqa-lite" in out
    assert "Traceback" not in err
    resumed = subprocess.run([sys.executable, "-m", "rftui", "resume", "chatqa-lite", "--no-ui", "--no-tracking",
                              "--workdir", str(tmp_path)], capture_output=True, text=True, env=env, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    import sqlite3

    with sqlite3.connect(db) as conn:
        statuses = {row[0] for row in conn.execute("select status from runs")}
        steps = conn.execute("select run_id, count(*), count(distinct step) from metrics where name='loss' "
                             "group by run_id").fetchall()
    assert statuses == {"completed"}
    assert len(steps) == 2 and all(count == distinct == 24 for _, count, distinct in steps), steps
