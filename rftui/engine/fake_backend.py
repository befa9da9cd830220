"""FakeBackend: a stand-in for TrainingHost that "trains" by sleeping; for pool and controller tests.

Options (keyword arguments, all optional):
  step_seconds   seconds slept per optimizer step (default 0)
  eval_seconds   seconds slept for the chunk-end evaluation (default 0)
  crash_at       iterable of (run_id, step[, how]): before optimizer step `step` (1-based) of
                 `run_id` ("*" matches any run), do `how`: "exit" (os._exit(3), the default),
                 "kill" (SIGKILL itself), "raise" (RuntimeError), "oom" (MemoryError),
                 "hang" (sleep without polling for preemption)
  crash_marker_dir  when set, each crash happens once only: a marker file is written there
                 first, and a later worker (a restart) that sees it trains on
  call_hooks     call `run.formatting_func` (when callable) with {"chunk": c} at quantum start
                 and report its result as a WorkerWarning ("hook: <result>")
  import_modules modules to import at construction (to time heavy backends)
Checkpoints are small JSON files (`<checkpoint_root>/<run_id>/fake_state.json`), so resume and
retry paths work; a quantum whose start_step disagrees with the state it finds is an error.
No torch here.
"""
from __future__ import annotations

import importlib
import json
import math
import os
import signal
import sys
import time
import zlib
from typing import Any, Callable, Iterable

from rftui.engine.messages import (
    EvalDone,
    QuantumDone,
    QuantumStarted,
    StepLogged,
    TrainQuantum,
    WorkerWarning,
)

STATE_FILE = "fake_state.json"


def fake_loss(run_id: str, step: int) -> float:
    """Deterministic, decreasing, different per run."""
    offset = (zlib.crc32(run_id.encode()) % 1000) / 1000.0
    return round((1.0 + offset) * math.exp(-0.02 * step) + 0.1, 6)


def _write_json_atomic(path: str, data: dict) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle)
    os.replace(tmp, path)


class FakeBackend:
    def __init__(self, worker_id: int, device: str = "cpu", log: Any = None, *,
                 step_seconds: float = 0.0, eval_seconds: float = 0.0,
                 crash_at: Iterable[Any] = (), crash_marker_dir: str | None = None,
                 call_hooks: bool = False, import_modules: Iterable[str] = (),
                 **_ignored: Any) -> None:
        self.worker_id = worker_id
        self.device = device
        self.log = log
        self.step_seconds = float(step_seconds)
        self.eval_seconds = float(eval_seconds)
        self.crashes: dict[tuple[str, int], str] = {}
        for entry in crash_at or ():
            run_id, step, *rest = entry
            self.crashes[(str(run_id), int(step))] = rest[0] if rest else "exit"
        self.crash_marker_dir = crash_marker_dir
        self.call_hooks = call_hooks
        self.steps: dict[str, int] = {}  # resident state: run_id -> optimizer steps done
        for name in import_modules or ():
            importlib.import_module(name)
        # Plain prints on purpose: the worker must route them to its log file.
        print(f"[fake] backend up on {device} (worker {worker_id})", flush=True)
        os.write(2, f"[fake] stderr line from worker {worker_id}\n".encode())

    # ------------------------------------------------------------------ TrainingHost interface

    def train_quantum(self, cmd: TrainQuantum, emit: Callable[[Any], None],
                      poll_preempt: Callable[[], str | None]) -> QuantumDone:
        t_start = time.perf_counter()
        run_id = cmd.run.run_id
        step = self._load(cmd)
        checkpoint_dir = os.path.join(cmd.checkpoint_root, run_id)
        emit(QuantumStarted(self.worker_id, run_id, cmd.chunk, step, time.perf_counter() - t_start))
        print(f"[fake] run {run_id} chunk {cmd.chunk} from step {step}", flush=True)
        if self.call_hooks and callable(cmd.run.formatting_func):
            result = cmd.run.formatting_func({"chunk": cmd.chunk})
            emit(WorkerWarning(self.worker_id, run_id, f"hook: {result}"))
        logging_steps = max(1, int(cmd.run.training.get("logging_steps", 1) or 1))

        preempted: str | None = None
        t_train0 = time.perf_counter()
        while step < cmd.end_step:
            preempted = poll_preempt()
            if preempted:
                break
            self._maybe_crash(run_id, step + 1)
            if self.step_seconds:
                time.sleep(self.step_seconds)
            step += 1
            self.steps[run_id] = step
            if step % logging_steps == 0 or step == cmd.end_step:
                lr = float(cmd.run.training.get("learning_rate", 1e-4))
                lr_now = lr * max(0.0, 1.0 - step / max(1, cmd.total_steps))
                emit(StepLogged(run_id, step, {"loss": fake_loss(run_id, step),
                                               "learning_rate": lr_now,
                                               "epoch": step / max(1, cmd.total_steps)}))
        train_seconds = time.perf_counter() - t_train0

        eval_seconds = 0.0
        if preempted is None:
            t_eval = time.perf_counter()
            if self.eval_seconds:
                time.sleep(self.eval_seconds)
            emit(EvalDone(run_id, step, {"eval_loss": round(fake_loss(run_id, step) * 1.1, 6)}))
            eval_seconds = time.perf_counter() - t_eval

        _write_json_atomic(os.path.join(checkpoint_dir, STATE_FILE), {"run_id": run_id, "step": step})
        completed = step >= cmd.total_steps
        adapter_dir = None
        if completed:
            adapter_dir = os.path.join(cmd.adapters_root, run_id)
            _write_json_atomic(os.path.join(adapter_dir, "fake_adapter.json"), {"run_id": run_id, "step": step})
        total = time.perf_counter() - t_start
        return QuantumDone(
            worker_id=self.worker_id, run_id=run_id, chunk=cmd.chunk, steps_done=step,
            completed=completed, preempted=preempted, checkpoint_dir=checkpoint_dir,
            train_seconds=train_seconds, switch_seconds=max(0.0, total - train_seconds - eval_seconds),
            eval_seconds=eval_seconds, tokens=16 * (step - cmd.start_step), adapter_dir=adapter_dir,
        )

    def drop_run(self, run_id: str) -> None:
        self.steps.pop(run_id, None)

    def close(self) -> None:
        self.steps.clear()

    # ------------------------------------------------------------------ internals

    def _load(self, cmd: TrainQuantum) -> int:
        """The run's step count at quantum start; raise when it disagrees with the command."""
        run_id = cmd.run.run_id
        if self.steps.get(run_id) == cmd.start_step:
            return cmd.start_step
        found: int | None = None
        source = cmd.checkpoint_dir or (cmd.warm_from if cmd.start_step == 0 else None)
        if source and os.path.exists(os.path.join(source, STATE_FILE)):
            with open(os.path.join(source, STATE_FILE), encoding="utf-8") as handle:
                found = int(json.load(handle)["step"])
            if source == cmd.warm_from:
                found = 0  # warm start: the source's state, this run's own step count
        elif cmd.start_step == 0:
            found = 0
        if found != cmd.start_step:
            raise ValueError(
                f"fake backend: run {run_id} asked to start at step {cmd.start_step}, "
                f"but its state is at {found if found is not None else 'nothing'} "
                f"(resident={self.steps.get(run_id)}, checkpoint_dir={cmd.checkpoint_dir})")
        self.steps[run_id] = found
        return found

    def _maybe_crash(self, run_id: str, step: int) -> None:
        how = self.crashes.get((run_id, step)) or self.crashes.get(("*", step))
        if how is None:
            return
        if self.crash_marker_dir:
            marker = os.path.join(self.crash_marker_dir, f"crash-{run_id}-{step}")
            if os.path.exists(marker):
                return
            os.makedirs(self.crash_marker_dir, exist_ok=True)
            open(marker, "w").close()
        print(f"[fake] crashing ({how}) at run {run_id} step {step}", flush=True)
        sys.stderr.flush()
        if how == "raise":
            raise RuntimeError(f"fake failure in run {run_id} at step {step}\nsecond line of the message")
        if how == "oom":
            raise MemoryError(f"fake out of memory in run {run_id} at step {step}")
        if how == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if how == "hang":
            while True:
                time.sleep(3600)
        os._exit(3)
