"""Helpers for the UI tests: recorded engine batches (no training) and sources that replay them.

`record()` runs the real Controller over `ScriptedPool`, an in-process pool that finishes
quanta when told to, with deterministic, per-run loss curves and fixed timings. The batches
the hosted source produced are then replayed into the app by `ReplaySource`, through the real
bridge thread. Ops sent by the app are applied to the same controller, so the screen reacts
exactly as it would to a live engine.
"""
from __future__ import annotations

import asyncio
import math
import threading
import time
import zlib
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from rftui.config.yaml_config import load_experiment_file
from rftui.data.sources import load_rows
from rftui.engine import events as ev
from rftui.engine.controller import Controller
from rftui.engine.messages import (
    EvalDone, Preempt, QuantumDone, StepLogged, TrainQuantum, WorkerReady,
)
from rftui.engine.setup import create_experiment
from rftui.ui.model import Batch
from rftui.ui.sources import HostedSource

SAMPLES = Path(__file__).resolve().parent.parent / "sample_configs"


def curve(run_id: str, step: int) -> float:
    """A decreasing, per-run loss with a little deterministic wobble."""
    seed = zlib.crc32(run_id.encode()) % 1000 / 1000.0
    return round(0.6 + (1.4 + seed) * math.exp(-step / (20 + 30 * seed)) + 0.04 * math.sin(step * 0.9 + seed * 6), 5)


class ScriptedPool:
    """Quanta finish only when `finish_next()` / `finish_preempted()` is called."""

    def __init__(self, num_workers: int = 2, seconds_per_step: float = 0.25):
        self.num_workers = num_workers
        self.seconds_per_step = seconds_per_step
        self.in_flight: dict[int, TrainQuantum] = {}
        self.preempt: dict[int, str] = {}
        self.pending: list[tuple[int, Any]] = [(w, WorkerReady(w, 0, "cpu")) for w in range(num_workers)]

    def start(self):
        return self

    def log_path(self, worker_id: int) -> Path:
        return Path("/nonexistent") / f"worker-{worker_id}.log"

    def send(self, worker_id, command):
        if isinstance(command, TrainQuantum):
            self.in_flight[worker_id] = command
        elif isinstance(command, Preempt):
            cmd = self.in_flight.get(worker_id)
            if cmd is not None and cmd.run.run_id == command.run_id:
                self.preempt[worker_id] = command.reason
        return True

    def _finish(self, worker_id: int) -> None:
        cmd = self.in_flight.pop(worker_id)
        reason = self.preempt.pop(worker_id, None)
        run_id = cmd.run.run_id
        end = cmd.end_step if reason is None else min(cmd.end_step, cmd.start_step + max(1, (cmd.end_step - cmd.start_step) // 3))
        lr = float(cmd.run.training.get("learning_rate", 1e-4))
        for step in range(cmd.start_step + 1, end + 1):
            self.pending.append((worker_id, StepLogged(run_id, step, {
                "loss": curve(run_id, step), "learning_rate": lr * (1 - step / cmd.total_steps), "grad_norm": 1.0})))
        if reason is None:
            eval_loss = round(curve(run_id, end) * 1.08 + 0.05, 5)
            self.pending.append((worker_id, EvalDone(run_id, end, {
                "eval_loss": eval_loss, "rougeL": round(0.9 - eval_loss / 3, 4), "bleu": round(30 - eval_loss * 8, 3)})))
        done = end >= cmd.total_steps
        checkpoint = Path(cmd.checkpoint_root) / run_id / f"step-{end}"
        checkpoint.mkdir(parents=True, exist_ok=True)
        steps = end - cmd.start_step
        self.pending.append((worker_id, QuantumDone(
            worker_id, run_id, cmd.chunk, end, completed=done, preempted=reason if end < cmd.end_step else None,
            checkpoint_dir=str(checkpoint), train_seconds=steps * self.seconds_per_step, switch_seconds=0.5,
            eval_seconds=0.0 if reason else 1.0)))

    def finish_next(self) -> bool:
        if not self.in_flight:
            return False
        self._finish(min(self.in_flight))
        return True

    def finish_preempted(self) -> None:
        for worker_id in sorted(self.preempt):
            if worker_id in self.in_flight:
                self._finish(worker_id)

    def poll_events(self, timeout, extra=()):
        events, self.pending = self.pending, []
        return events, []

    def dead_workers(self):
        return []

    def shutdown(self, timeout=10.0):
        self.in_flight.clear()
        return []


def make_experiment(tmp_path: Path, config: str = "chatqa_lite", workers: int = 2, runs: int | None = None,
                    max_steps: int | None = None):
    spec = load_experiment_file(SAMPLES / f"{config}.yaml")
    chosen = spec.runs if runs is None else spec.runs[:runs]
    if max_steps is not None:
        chosen = tuple(replace(r, training={**r.training, "max_steps": max_steps}) for r in chosen)
    spec = replace(spec, workdir=str(tmp_path), runs=tuple(chosen))
    base = Path(spec.data.base_dir)
    train = load_rows(spec.data.train, base)
    evals = load_rows(spec.data.eval, base) if spec.data.eval else None
    exp, spec, store = create_experiment(spec, train, evals)
    pool = ScriptedPool(workers)
    return Controller(exp, spec, store, pool), pool


class ReplaySource:
    """A hosted-looking source that replays recorded batches, then applies the app's ops to the
    recording's controller (answering at once) and replays what they caused."""

    hosted = True

    def __init__(self, batches: list[Batch], controller: Controller | None = None, pool: ScriptedPool | None = None,
                 respond: Callable[[str, str | None, dict], ev.OpResolved] | None = None):
        self.batches = batches
        self.controller, self.pool = controller, pool
        self.spec = controller.spec if controller is not None else None
        self.name = self.spec.name if self.spec is not None else "replay"
        self.resume_command = controller.exp.resume_command if controller is not None else None  # as HostedSource's
        self.num_workers = pool.num_workers if pool is not None else 1
        self.respond = respond
        self.hosted_source = HostedSource(controller) if controller is not None else None
        self.ops_sent: list[tuple[str, str | None, dict]] = []
        self._queue: list[Batch] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.opened = threading.Event()

    def open(self) -> Batch:
        merged = Batch()
        for batch in self.batches:
            merged = merged.merge(batch)
        self.opened.set()
        return merged

    def poll(self) -> Batch:
        self._stop.wait(0.01)
        with self._lock:
            queued, self._queue = self._queue, []
        merged = Batch()
        for batch in queued:
            merged = merged.merge(batch)
        return merged

    def push(self, batch: Batch) -> None:
        with self._lock:
            self._queue.append(batch)

    def request_stop(self) -> None:
        self._stop.set()

    @property
    def done(self) -> bool:
        return self._stop.is_set()

    def close(self) -> None:
        pass

    def ops(self, op: str, run_id: str | None, args: dict | None = None) -> Future:
        args = dict(args or {})
        self.ops_sent.append((op, run_id, args))
        future: Future = Future()
        if self.respond is not None:
            future.set_result(self.respond(op, run_id, args))
            return future
        out: list[Any] = []
        resolved = self.controller.apply_op(op, run_id, args, "tui", out)
        self.pool.finish_preempted()
        out += self.controller.step(0)
        self.push(self.hosted_source._snapshot(out))
        future.set_result(resolved)
        return future

    def worker_log(self, worker_id: int):
        return None


def record(tmp_path: Path, quanta: int = 6, config: str = "chatqa_lite", workers: int = 2,
           runs: int | None = None, max_steps: int | None = None) -> ReplaySource:
    """Batches of an experiment `quanta` quanta in (and the controller, for ops)."""
    controller, pool = make_experiment(tmp_path, config, workers, runs, max_steps)
    source = HostedSource(controller)
    batches = [source.open()]
    for _ in range(3):  # workers report ready, then the first quanta are dispatched
        batches.append(source.poll())
    for _ in range(quanta):
        if not pool.finish_next():
            break
        batches.append(source.poll())
        batches.append(source.poll())  # the freed worker gets its next quantum
    return ReplaySource(batches, controller, pool)


class FixedClock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


async def settle(pilot, app, until: Callable[[], bool] | None = None, timeout: float = 5.0) -> None:
    """Wait until the replayed batches are in (and `until()` holds), then redraw everything."""
    deadline = time.monotonic() + timeout
    while True:
        await pilot.pause()
        ready = app.source.opened.is_set() and app.message_queue_size == 0 and bool(app.model.runs)
        if ready and (until is None or until()):
            break
        if time.monotonic() > deadline:
            raise AssertionError("the app did not reach the expected state in time")
        await asyncio.sleep(0.02)
    await pilot.pause()
    app.main.redraw_all()
    await charts_drawn(pilot, app)


def screen_text(app) -> str:
    """The plain text of what the terminal shows now (the top screen over the ones under it)."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


async def charts_drawn(pilot, app, timeout: float = 5.0) -> None:
    """Wait until every queued chart has been redrawn (they are drawn one per frame)."""
    deadline = time.monotonic() + timeout
    await pilot.pause()
    while app.main.charts_pending:
        assert time.monotonic() < deadline, "charts were not redrawn in time"
        await pilot.pause()


async def wait_for(condition, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


def quit_app_when(monkeypatch):
    """Make rftui.ui.run's entry points run their app headless: once `ready(app)` holds, q q quits it as a
    user would. Returns the setter for `ready`."""
    import rftui.ui.run as ui_run

    real = ui_run.build_app
    ready = {}

    def headless(source, **kwargs):
        app = real(source, **kwargs)
        run = app.run

        async def user(pilot):
            await wait_for(lambda: ready["when"](app))
            await pilot.press("q")
            await pilot.press("q")

        app.run = lambda: run(headless=True, size=(120, 36), auto_pilot=user)
        return app

    monkeypatch.setattr(ui_run, "build_app", headless)
    return lambda condition: ready.update(when=condition)
