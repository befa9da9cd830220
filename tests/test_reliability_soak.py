"""Soak: the smoke config, again and again, with random kill -9 of the controller and of workers and random IC ops
from `rftui ctl`. After every disruption the store's invariants hold; at the end every run is in a legal final
state, and the original runs that completed equal an undisturbed run bitwise.

Not in the default run (`-m soak`). RFTUI_SOAK_ITERATIONS (default 20) and RFTUI_SOAK_SECONDS (a time budget;
no new iteration starts after it) size it."""
from __future__ import annotations

import os
import random
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from reliability_helpers import (
    RUN_IDS, adapter_file, assert_same_adapter, baseline, check_store_invariants, cli, cli_popen, descendants,
    kill_tree_leftovers, losses, metric_steps, query, wait_gone, write_config,
)

ITERATIONS = int(os.environ.get("RFTUI_SOAK_ITERATIONS", "20"))
BUDGET = float(os.environ.get("RFTUI_SOAK_SECONDS", "3600"))
STEPS, CHUNKS = 12, 4


def worker_pids(controller_pid: int) -> list[int]:
    """Workers are the children of the controller's forkserver."""
    pids = []
    for child in descendants(controller_pid):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"forkserver" in cmdline:
            pids += [p for p in descendants(child)]
    return pids


def statuses(db: Path) -> dict[str, str]:
    return dict(query(db, "select run_id, status from runs"))


class Soak:
    def __init__(self, tmp_path: Path, index: int, rng: random.Random):
        self.rng, self.index = rng, index
        self.name = f"soak{index}"
        self.config = write_config(tmp_path, self.name, STEPS, CHUNKS)
        self.workdir = tmp_path / "runs"
        self.uri = f"sqlite:///{tmp_path}/mlflow.db"
        self.db = self.workdir / self.name / "state.db"
        self.log: list[str] = []
        self.proc = None
        self.controller_kills = 0

    def start(self, command: str) -> None:
        args = [self.config] if command == "run" else [self.name]
        self.proc = cli_popen(command, *args, "--no-ui", "--workdir", self.workdir, "--tracking-uri", self.uri)

    def ctl(self, *argv: str) -> None:
        result = cli("ctl", self.name, *argv, "--workdir", self.workdir, timeout=60)
        self.log.append(f"ctl {' '.join(argv)} -> {result.returncode} {result.stdout.strip()}"
                        f"{result.stderr.strip()}"[:200])
        assert result.returncode in (0, 2), result.stderr  # 2: refused (e.g. the run just completed), said why
        assert "Traceback" not in result.stderr

    def disrupt(self) -> None:
        if not self.db.exists():
            return  # the experiment directory is not there yet
        runs = statuses(self.db)
        live = [r for r, s in runs.items() if s in ("pending", "waiting", "running")]
        stopped = [r for r, s in runs.items() if s == "stopped"]
        choice = self.rng.choices(["kill-controller", "kill-worker", "stop", "resume", "clone", "nothing"],
                                  weights=[2 if self.controller_kills < 2 else 0, 3, 2, 3 if stopped else 0,
                                           1 if len(runs) < 4 else 0, 2])[0]
        if choice == "kill-controller":
            tree = [self.proc.pid, *descendants(self.proc.pid)]
            self.proc.send_signal(signal.SIGKILL)
            self.proc.communicate(timeout=30)
            left = wait_gone(tree, 15)
            kill_tree_leftovers(left)
            assert not left, f"processes outlived the controller: {left}"
            self.controller_kills += 1
            check_store_invariants(self.db, at_rest=False)
            if stopped and self.rng.random() < 0.5:  # an op while no controller runs: applied offline
                self.ctl("resume", self.rng.choice(stopped))
            self.log.append("kill -9 controller; resume")
            self.start("resume")
        elif choice == "kill-worker":
            workers = worker_pids(self.proc.pid)
            if workers:
                os.kill(self.rng.choice(workers), signal.SIGKILL)
                self.log.append("kill -9 worker")
        elif choice == "stop" and live:
            self.ctl("stop", self.rng.choice(live))
        elif choice == "resume" and stopped:
            self.ctl("resume", self.rng.choice(stopped))
        elif choice == "clone" and runs:
            edits = ["--set", f"learning_rate={self.rng.choice(['5e-4', '2e-3'])}"]
            self.ctl("clone", self.rng.choice(sorted(runs)), *edits, *(["--warm"] if self.rng.random() < 0.5 else []))

    def run(self, deadline: float) -> None:
        self.start("run")
        while True:
            while self.proc.poll() is None:
                time.sleep(self.rng.uniform(0.5, 4.0))
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    break
                try:
                    self.disrupt()
                except sqlite3.Error as exc:  # state.db being written right now: try again later
                    self.log.append(f"skipped a disruption: {exc}")
            if self.proc.poll() is None:
                self.proc.wait(600)
            out, err = self.proc.communicate()
            assert self.proc.returncode == 0, (self.log, err[-2000:])
            assert "Traceback" not in err
            runs = statuses(self.db)
            if all(s in ("completed", "failed", "deleted") for s in runs.values()):
                return
            for run_id in [r for r, s in runs.items() if s == "stopped"]:  # it ended with runs stopped
                self.ctl("resume", run_id)
            self.log.append(f"ended with {runs}; resume")
            self.start("resume")

    def check(self, base: dict) -> dict:
        check_store_invariants(self.db)
        runs = statuses(self.db)
        assert set(runs.values()) <= {"completed", "failed"}, runs
        compared = []
        for run_id in RUN_IDS:
            if runs[run_id] == "completed":
                assert losses(self.db, run_id) == base["losses"][run_id], (run_id, self.log)
                assert_same_adapter(adapter_file(self.db.parent, run_id), adapter_file(base["root"], run_id))
                compared.append(run_id)
        from mlflow import MlflowClient

        client = MlflowClient(self.uri)
        found = client.search_runs([client.get_experiment_by_name(self.name).experiment_id])
        assert sorted(r.data.tags["rftui.run_id"] for r in found) == sorted(runs)  # one MLflow run per run
        for mlflow_run in found:
            run_id = mlflow_run.data.tags["rftui.run_id"]
            for name in mlflow_run.data.metrics:
                steps = [m.step for m in client.get_metric_history(mlflow_run.info.run_id, name)]
                assert len(steps) == len(set(steps)), (run_id, name, sorted(steps))
                if runs[run_id] == "completed":
                    assert sorted(steps) == metric_steps(self.db, run_id, name), (run_id, name)
        return {"runs": runs, "compared": compared, "controller_kills": self.controller_kills,
                "ops": sum(line.startswith("ctl") for line in self.log),
                "worker_kills": sum(line == "kill -9 worker" for line in self.log)}


@pytest.mark.soak
def test_soak_random_kills_and_ops_keep_every_invariant(tmp_path):
    started = time.monotonic()
    base = baseline(tmp_path / "baseline", STEPS, CHUNKS)
    rng = random.Random(int(os.environ.get("RFTUI_SOAK_SEED", "2026")))
    summary = []
    for index in range(ITERATIONS):
        if time.monotonic() - started > BUDGET:
            break
        soak = Soak(tmp_path / f"it{index}", index, rng)
        t0 = time.monotonic()
        try:
            soak.run(deadline=started + BUDGET + 600)
        finally:
            if soak.proc is not None and soak.proc.poll() is None:
                kill_tree_leftovers([soak.proc.pid, *descendants(soak.proc.pid)])
        result = soak.check(base)
        result["seconds"] = round(time.monotonic() - t0, 1)
        summary.append(result)
        print(f"iteration {index}: {result}", flush=True)
    print(f"soak: {len(summary)} iterations in {time.monotonic() - started:.0f}s")
    assert summary and len(summary) >= min(ITERATIONS, 1)
