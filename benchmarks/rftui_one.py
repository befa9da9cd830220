"""rftui headless on the benchmark's configs, in a fresh process, with every engine event time-stamped.

    python benchmarks/rftui_one.py JOB.json OUT.json

Drives the engine the way `rftui run --no-ui` does (create_experiment -> make_controller -> step loop), with
MLflow tracking off. Two thin wrappers around the worker pool, in this process only, add the timings the events do
not carry: when each command left the controller (`pool.send`) and when each worker event arrived
(`pool.poll_events`). From them the driver computes the controller-side gap between a QuantumDone and the next
dispatch on the same worker. The engine itself is not modified.
"""
from __future__ import annotations

import time

T_PROCESS = time.time()

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def read_jsonl(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def event_record(event, stamp: float, worker_id: int | None = None) -> dict:
    rec = {"type": type(event).__name__, "time": stamp}
    if worker_id is not None:
        rec["worker_id"] = worker_id
    for name in ("run_id", "chunk", "step", "steps_done", "start_step", "end_step", "load_seconds", "train_seconds",
                 "switch_seconds", "eval_seconds", "tokens", "completed", "preempted", "worker_id"):
        if hasattr(event, name) and name not in rec:
            value = getattr(event, name)
            if isinstance(value, (int, float, str, bool)) or value is None:
                rec[name] = value
    metrics = getattr(event, "metrics", None)
    if metrics is not None and type(event).__name__ in ("EvalDone", "StepLogged"):
        rec["metrics"] = {k: float(v) for k, v in dict(metrics).items() if isinstance(v, (int, float))}
    if type(event).__name__ in ("RunFailed", "WorkerWarning", "EngineWarning"):
        rec["reason"] = str(getattr(event, "reason", getattr(event, "message", "")))[:500]
    return rec


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("job")
    parser.add_argument("out")
    opts = parser.parse_args()
    with open(opts.job, encoding="utf-8") as fh:
        job = json.load(fh)

    from rftui.config.runspec import RunSpec
    from rftui.config.yaml_config import load_experiment_file
    from rftui.engine.assemble import make_controller
    from rftui.engine.messages import TrainQuantum
    from rftui.engine.setup import create_experiment

    base = load_experiment_file(REPO / "sample_configs" / "chatqa_lite.yaml")
    template = base.runs[0]
    runs = []
    for cfg in job["configs"]:
        training = dict(cfg["training"])
        if job["device"] == "cuda":
            training.update({k: True for k in ("bf16", "fp16") if job.get(k)})
        runs.append(RunSpec(
            run_id=cfg["run_id"], label=cfg["label"], model_name=job["model_name"], training=training,
            lora=dict(cfg["lora"]), model_kwargs=dict(job.get("model_kwargs") or {}),
            generation={"enabled": False},  # the TRL baseline computes eval loss only; so do we here
            formatting_func=template.formatting_func,
            knobs={"lora.r": cfg["lora"]["r"], "training.learning_rate": training["learning_rate"]}))
    spec = dataclasses.replace(base, name=job["name"], workdir=job["workdir"], num_chunks=int(job["num_chunks"]),
                               runs=tuple(runs), seed=int(job.get("seed", 42)))
    train_rows, eval_rows = read_jsonl(job["raw_train_file"]), read_jsonl(job["raw_eval_file"])
    t_setup = time.time()
    exp, spec, store = create_experiment(spec, train_rows, eval_rows)
    options = {"num_threads": int(job["threads"])} if job.get("threads") else {}
    if job.get("adapter_budget_bytes"):
        options["adapter_budget_bytes"] = int(job["adapter_budget_bytes"])
    controller = make_controller(exp, spec, store, workers=1, device=job["device"], tracking=False,
                                 backend_options=options)

    sends: list[dict] = []
    received: list[dict] = []
    pool = controller.pool
    real_send, real_poll = pool.send, pool.poll_events

    def send(worker_id, command):
        ok = real_send(worker_id, command)
        if isinstance(command, TrainQuantum):
            sends.append({"time": time.time(), "worker_id": worker_id, "run_id": command.run.run_id,
                          "chunk": command.chunk, "start_step": command.start_step, "ok": bool(ok)})
        return ok

    def poll_events(timeout, extra=()):
        events, woke = real_poll(timeout, extra)
        now = time.time()
        for worker_id, event in events:
            received.append(event_record(event, now, worker_id))
        return events, woke

    pool.send, pool.poll_events = send, poll_events
    t_start = time.time()
    controller.start()
    failures = []
    try:
        while not controller.finished:
            for event in controller.step(0.25):  # as `rftui run --no-ui` (events end the wait early)
                if type(event).__name__ in ("RunFailed",):
                    failures.append(str(getattr(event, "reason", event)))
    finally:
        t_close = time.time()
        controller.close()
    t_closed = time.time()
    quanta = controller.store.list_quanta()
    checkpoint_bytes = {}
    for run_dir in Path(exp.checkpoints).iterdir():
        sizes = []
        for step_dir in run_dir.iterdir():
            if step_dir.is_dir():
                sizes.append(sum(f.stat().st_size for f in step_dir.rglob("*") if f.is_file()))
        if sizes:
            checkpoint_bytes[run_dir.name] = max(sizes)
    statuses = {rec.run_id: rec.status for rec in controller.runs.values()}
    out = {
        "process_start": T_PROCESS, "setup_start": t_setup, "engine_start": t_start, "close_start": t_close,
        "closed": t_closed, "sends": sends, "events": received, "quanta": quanta, "statuses": statuses,
        "failures": failures, "checkpoint_bytes": checkpoint_bytes, "workdir": str(exp.root),
    }
    with open(opts.out, "w", encoding="utf-8") as fh:
        json.dump(out, fh, default=str)
    return 0 if not failures and all(s == "completed" for s in statuses.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
