"""An in-process stand-in for WorkerPool: quanta finish (or get preempted) when the test says so."""
from __future__ import annotations

import random
from pathlib import Path

from rftui.engine.messages import Preempt, QuantumDone, StepLogged, TrainQuantum, WorkerReady


class FakePool:
    def __init__(self, num_workers: int, rng: random.Random):
        self.num_workers = num_workers
        self.rng = rng
        self.in_flight: dict[int, TrainQuantum] = {}
        self.preempt: dict[int, str] = {}
        self.pending: list[tuple[int, object]] = [(w, WorkerReady(w, 0, "cpu")) for w in range(num_workers)]
        self.sent: list[tuple[int, object]] = []

    def start(self):
        return self

    def send(self, worker_id, command):
        self.sent.append((worker_id, command))
        if isinstance(command, TrainQuantum):
            assert worker_id not in self.in_flight, f"worker {worker_id} got a second quantum"
            self.in_flight[worker_id] = command
        elif isinstance(command, Preempt):
            cmd = self.in_flight.get(worker_id)
            if cmd is not None and cmd.run.run_id == command.run_id:
                self.preempt[worker_id] = command.reason
        return True

    def finish_one(self) -> None:
        """Complete (or preempt) one random in-flight quantum."""
        if not self.in_flight:
            return
        worker_id = self.rng.choice(sorted(self.in_flight))
        cmd = self.in_flight.pop(worker_id)
        reason = self.preempt.pop(worker_id, None)
        end = cmd.end_step
        if reason is not None and cmd.end_step - cmd.start_step > 1:
            end = self.rng.randint(cmd.start_step + 1, cmd.end_step - 1)
        for step in range(cmd.start_step + 1, end + 1):
            self.pending.append((worker_id, StepLogged(cmd.run.run_id, step, {"loss": 1.0 / step})))
        checkpoint = Path(cmd.checkpoint_root) / cmd.run.run_id / f"step-{end}"
        checkpoint.mkdir(parents=True, exist_ok=True)
        (checkpoint / "state.json").write_text(f'{{"step": {end}}}')
        self.pending.append((worker_id, QuantumDone(
            worker_id, cmd.run.run_id, cmd.chunk, end, completed=end >= cmd.total_steps,
            preempted=reason if end < cmd.end_step else None,
            checkpoint_dir=str(checkpoint), train_seconds=0.01,
            switch_seconds=0.001)))

    def poll_events(self, timeout, extra=()):
        events, self.pending = self.pending, []
        return events, []

    def dead_workers(self):
        return []

    def shutdown(self, timeout=10.0):
        return []
