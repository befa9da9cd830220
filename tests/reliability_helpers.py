"""Helpers for the reliability tests: small configs on disk, the CLI in a subprocess, process trees,
an undisturbed baseline to compare crashed-and-resumed experiments against, and store invariants."""
from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from safetensors.torch import load_file

from engine_helpers import SAMPLES, drive

ROOT = Path(__file__).resolve().parent.parent
SMOKE = SAMPLES / "smoke.yaml"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
       "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
RUN_IDS = ("r1", "r2")


def smoke_text(name: str = "smoke", max_steps: int = 12, num_chunks: int = 4) -> str:
    """smoke.yaml with an absolute data path, so the config works from any directory."""
    text = SMOKE.read_text().replace("data/support.jsonl", str(SAMPLES / "data" / "support.jsonl"))
    return (text.replace("name: smoke", f"name: {name}").replace("max_steps: 4", f"max_steps: {max_steps}")
            .replace("num_chunks: 2", f"num_chunks: {num_chunks}"))


def write_config(directory: Path, name: str = "smoke", max_steps: int = 12, num_chunks: int = 4) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.yaml"
    path.write_text(smoke_text(name, max_steps, num_chunks))
    return path


def cli(*args: str, timeout: float = 300, env: dict | None = None, cwd: Path | None = None
        ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rftui", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env or ENV, cwd=cwd)


def cli_popen(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "rftui", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env or ENV)


# ----------------------------------------------------------------------------- processes


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (forkserver, resource tracker, workers), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def is_running(pid: int) -> bool:
    """True for a live process; a zombie (dead, not yet reaped) counts as gone."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    """Wait until none of `pids` runs; returns those still running after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [p for p in pids if is_running(p)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.05)


def kill_tree_leftovers(pids: list[int]) -> None:
    for pid in pids:
        if is_running(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


# ----------------------------------------------------------------------------- state.db


def query(db: Path, sql: str, params: tuple = ()) -> list[tuple]:
    """Read state.db with a plain connection (None when it is not readable yet)."""
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def metric_steps(db: Path, run_id: str, name: str) -> list[int]:
    return [s for (s,) in query(db, "select step from metrics where run_id=? and name=? order by step",
                                (run_id, name))]


def losses(db: Path, run_id: str) -> list[tuple[int, float]]:
    return query(db, "select step, value from metrics where run_id=? and name='loss' order by step", (run_id,))


def dump(db: Path) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): file_digest(p) for p in sorted(root.rglob("*")) if p.is_file()}


def adapter_file(exp_root: Path, run_id: str) -> Path:
    return exp_root / "adapters" / run_id / "adapter_model.safetensors"


def assert_same_adapter(a: Path, b: Path) -> None:
    """Bitwise: the same tensors (names, dtypes, values); the safetensors files themselves too."""
    ta, tb = load_file(str(a)), load_file(str(b))
    assert ta.keys() == tb.keys()
    for key in ta:
        assert ta[key].dtype == tb[key].dtype and ta[key].shape == tb[key].shape, key
        assert ta[key].view(-1).view_as(ta[key]).equal(tb[key]), f"{key} differs"
    assert a.read_bytes() == b.read_bytes()


def check_store_invariants(db: Path, at_rest: bool = True) -> None:
    """What must hold in any state.db at rest: legal run states, contiguous quanta, metrics no further than
    the run's progress allows, finished runs with their final adapter."""
    legal = {"pending", "waiting", "completed", "stopped", "failed", "deleted"} | (set() if at_rest else {"running"})
    runs = query(db, "select run_id, status, steps_done, total_steps, chunks_done, num_chunks, checkpoint_dir, "
                     "adapter_dir, reason, warm_start from runs")
    assert runs, "no runs"
    for run_id, status, steps, total, chunks, num_chunks, ckpt, adapter, reason, warm in runs:
        assert status in legal, (run_id, status)
        assert 0 <= steps <= total and 0 <= chunks <= num_chunks, (run_id, steps, chunks)
        if status == "completed":
            assert steps == total and chunks == num_chunks and adapter, run_id
            assert Path(adapter, "adapter_model.safetensors").is_file(), run_id
        if status == "failed":
            assert reason, f"{run_id} failed without a reason"
        if steps:
            assert ckpt and Path(ckpt, "manifest.json").is_file(), (run_id, ckpt)
        quanta = query(db, "select start_step, end_step, status from quanta where run_id=? order by id", (run_id,))
        position = quanta[0][0] if warm and quanta else 0  # a warm clone starts at its parent's position
        for start, end, qstatus in quanta:
            assert qstatus in ("done", "preempted", "failed", "lost") or (qstatus == "running" and not at_rest), qstatus
            assert start == position, f"{run_id}: quantum starts at {start}, the run was at {position}"
            if qstatus in ("done", "preempted"):
                position = end
        assert position == steps, f"{run_id}: quanta reach step {position}, the run says {steps}"
        top = query(db, "select max(step) from metrics where run_id=?", (run_id,))[0][0]
        if at_rest and status != "failed":  # a failed run keeps the points it logged before it failed
            assert top is None or top <= steps, f"{run_id}: a metric at step {top} beyond its progress {steps}"


# ----------------------------------------------------------------------------- baseline

_BASELINES: dict[tuple, dict] = {}


def smoke_controller(root: Path, name: str, max_steps: int = 12, num_chunks: int = 4, tracking_uri: str | None = None,
                     **backend_options):
    """The smoke config as `rftui run` would build it, on the real tiny model, one CPU worker, in-process."""
    from dataclasses import replace

    from rftui.config.yaml_config import load_experiment_file
    from rftui.data.sources import load_rows
    from rftui.engine.assemble import make_controller
    from rftui.engine.setup import create_experiment

    spec = load_experiment_file(write_config(root, name, max_steps, num_chunks))
    spec = replace(spec, workdir=str(root / "runs"))
    base = Path(spec.data.base_dir)
    exp, spec, store = create_experiment(spec, load_rows(spec.data.train, base), load_rows(spec.data.eval, base))
    return make_controller(exp, spec, store, workers=1, device="cpu", tracking=tracking_uri is not None,
                           tracking_uri=tracking_uri, backend_options={"num_threads": 1, **backend_options})


def baseline(root: Path, max_steps: int = 12, num_chunks: int = 4) -> dict:
    """An undisturbed run of the smoke config, in-process (cached for the test session):
    {"root": experiment dir, "db": state.db, "losses": {run: [(step, loss)]}}."""
    key = (max_steps, num_chunks)
    if key not in _BASELINES:
        controller = smoke_controller(root, "baseline", max_steps, num_chunks)
        try:
            drive(controller, limit=300)
        finally:
            controller.close()
        db = controller.exp.state_db
        _BASELINES[key] = {"root": controller.exp.root, "db": db, "losses": {r: losses(db, r) for r in RUN_IDS}}
    return _BASELINES[key]
