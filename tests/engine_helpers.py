"""Helpers for engine tests: small experiments on the fake backend (no torch in the workers)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from rftui.config.yaml_config import load_experiment_file
from rftui.engine.assemble import make_controller
from rftui.engine.setup import create_experiment

SAMPLES = Path(__file__).resolve().parent.parent / "sample_configs"
FAKE = "rftui.engine.fake_backend:FakeBackend"


def rows(n: int) -> list[dict]:
    return [{"instruction": f"question {i}", "response": f"answer {i}"} for i in range(n)]


def fake_experiment(tmp_path, name="exp", num_chunks=2, max_steps=4, runs=None, workers=1,
                    step_seconds=0.0, tracking=False, **options):
    spec = load_experiment_file(SAMPLES / "smoke.yaml")
    chosen = spec.runs if runs is None else tuple(runs)
    chosen = tuple(replace(r, training={**r.training, "max_steps": max_steps}) for r in chosen)
    spec = replace(spec, name=name, workdir=str(tmp_path), num_chunks=num_chunks, runs=chosen)
    exp, spec, store = create_experiment(spec, rows(16), rows(4))
    controller = make_controller(exp, spec, store, workers=workers, device="cpu", tracking=tracking,
                                 backend=FAKE, backend_options={"step_seconds": step_seconds, **options},
                                 preload=("rftui.engine.fake_backend",))
    return controller


def drive(controller, limit: float = 30.0, on_events=None) -> list:
    import time

    seen = list(controller.start())
    deadline = time.monotonic() + limit
    while not controller.finished:
        assert time.monotonic() < deadline, "experiment did not finish in time"
        events = controller.step(0.05)
        if on_events is not None:
            on_events(controller, events)
        seen += events
    return seen


def op_then_shut_down(controller, op: str, run_id: str) -> None:
    """Start, apply `op` to `run_id` at once, then stop the experiment (its quanta checkpoint) and close it."""
    try:
        controller.start()
        controller.apply_op(op, run_id, {}, "api", [])
        controller.begin_shutdown()
        while not controller.finished:
            controller.step(0.05)
    finally:
        controller.close()


def trained_experiment(tmp_path, name="exp", **kwargs):
    """A fake-backend experiment trained to its end and closed; its store stays open for the test to read."""
    ctl = fake_experiment(tmp_path, name, **kwargs)
    try:
        drive(ctl)
    finally:
        ctl.close()
    return ctl


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped: an owner that is gone."""
    import subprocess

    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid
