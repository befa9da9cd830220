"""What the terminal UI costs training: `rftui run` in a real pseudo-terminal against `--no-ui`.

    python benchmarks/tui_overhead.py [--rounds 6] [--steps 64] [--size 120x40] [--out FILE.json]

Each round runs the same config (chatqa_lite's 4 runs, `--steps` optimizer steps each, 4 chunks, MLflow
off) once per arm: headless (`--no-ui`), the UI drawn into a pty of `--size` (`ui`), and the UI with
its redraw pacing off (`ui-unpaced`, RFTUI_UI_CPU_BUDGET=off: the screen before pacing existed). The
order rotates between rounds so a slow drift of a shared machine cancels. Nothing is pinned: every arm
gets the machine's defaults (torch's thread count included), as a user would.

Per arm it reads the experiment's state.db:
  * train tokens/s  = sum(tokens) / sum(train_seconds) over all quanta (optimizer steps only);
  * quanta span     = last quantum end - first quantum start (training + eval + generation + switches);
and the controller process's own CPU seconds (the UI lives there; the worker is a separate process).
Reported: per-round ratios (UI arm / headless) and their medians. `cost` = 1 - throughput ratio.
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import pty
import select
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(Path(__file__).resolve().parent)]

import run as bench  # noqa: E402  (benchmarks/run.py: its /proc reader)
from rftui.engine.store import Store  # noqa: E402
SAMPLE = REPO / "sample_configs" / "chatqa_lite.yaml"
ARMS = {"headless": {}, "ui": {}, "ui-unpaced": {"RFTUI_UI_CPU_BUDGET": "off"}}  # arm -> extra environment


def write_config(folder: Path, steps: int) -> Path:
    config = yaml.safe_load(SAMPLE.read_text(encoding="utf-8"))
    config["training"]["max_steps"] = steps
    config["training"]["eval_steps"] = max(1, steps // 4)
    for part in ("train", "eval"):
        config["data"][part]["path"] = str(SAMPLE.parent / config["data"][part]["path"])
    path = folder / "tui_overhead.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def command(config: Path, workdir: Path, name: str, ui: bool) -> list[str]:
    cmd = [sys.executable, "-m", "rftui", "run", str(config), "--name", name, "--workdir", str(workdir),
           "--no-tracking"]
    return cmd if ui else cmd + ["--no-ui"]


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (not its children)."""
    got = bench._cpu_and_name(pid)
    return got[0] if got else float("nan")


def experiment_status(db: Path) -> str | None:
    try:
        store = Store.open(db, readonly=True)
    except Exception:  # not created yet, or mid-creation
        return None
    try:
        return store.get_meta("status")
    finally:
        store.close()


def run_headless(config: Path, workdir: Path, name: str, timeout: float) -> dict:
    started = time.time()
    proc = subprocess.Popen(command(config, workdir, name, ui=False), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=workdir)
    cpu, samples = 0.0, []
    while proc.poll() is None:
        cpu = max(cpu, cpu_seconds(proc.pid))
        samples.append((time.time(), cpu))
        experiment_status(workdir / name / "state.db")  # the UI arm's loop reads it too: same cost here
        if time.time() - started > timeout:
            proc.kill()
            raise SystemExit(f"headless run {name} took over {timeout:.0f} s")
        time.sleep(0.2)
    if proc.returncode != 0:
        raise SystemExit(f"headless run {name} exited with {proc.returncode}")
    return {"controller_cpu_seconds": cpu, "wall": time.time() - started, "cpu_samples": samples}


def run_in_pty(config: Path, workdir: Path, name: str, size: tuple[int, int], timeout: float,
               extra_env: dict[str, str]) -> dict:
    """The UI in a pseudo-terminal; its output is read (and dropped) as a terminal would."""
    cols, rows = size
    started = time.time()
    pid, fd = pty.fork()
    if pid == 0:  # child: a terminal of the requested size, then rftui
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        os.chdir(workdir)
        env = dict(os.environ, TERM="xterm-256color", COLORTERM="truecolor", **extra_env)
        cmd = command(config, workdir, name, ui=True)
        os.execvpe(cmd[0], cmd, env)
    db = workdir / name / "state.db"
    cpu, screen_bytes, quit_sent, finished_at, samples = 0.0, 0, 0.0, None, []
    status, checked = None, 0.0
    while True:
        readable, _, _ = select.select([fd], [], [], 0.2)
        if readable:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            screen_bytes += len(chunk)
        now = time.time()
        if now - checked < 0.2:  # the same pace as the headless arm's loop: this process competes too
            continue
        checked = now
        cpu = max(cpu, cpu_seconds(pid))
        samples.append((now, cpu))
        if finished_at is None:
            status = experiment_status(db)
            if status == "finished":
                finished_at = now
        if finished_at is not None and now - quit_sent > 1.0:
            os.write(fd, b"q")  # opens the quit dialog; the next q confirms it
            quit_sent = now
        if now - started > timeout:
            os.kill(pid, signal.SIGKILL)
            raise SystemExit(f"UI run {name} took over {timeout:.0f} s (status {status})")
    _, code = os.waitpid(pid, 0)
    os.close(fd)
    if finished_at is None:
        raise SystemExit(f"UI run {name} ended before its experiment finished (wait status {code})")
    return {"controller_cpu_seconds": cpu, "wall": time.time() - started, "screen_bytes": screen_bytes,
            "cpu_samples": samples}


def quanta_measures(db: Path) -> dict:
    store = Store.open(db, readonly=True)
    try:
        rows = [q for q in store.list_quanta() if q["status"] == "done"]
    finally:
        store.close()
    if not rows:
        raise SystemExit(f"no finished quanta in {db}")
    tokens = sum(q["tokens"] or 0 for q in rows)
    train = sum(q["train_seconds"] or 0.0 for q in rows)
    first, last = min(q["started_at"] for q in rows), max(q["ended_at"] for q in rows)
    return {"quanta": len(rows), "tokens": tokens, "train_seconds": train, "tokens_per_train_second": tokens / train,
            "first_start": first, "last_end": last, "quanta_span": last - first}


def cpu_share_while_training(info: dict) -> float:
    """The controller process's CPU seconds per wall second between the first quantum's start and the
    last one's end (the UI's steady cost; start-up and quitting excluded)."""
    inside = [(t, c) for t, c in info.pop("cpu_samples") if info["first_start"] <= t <= info["last_end"]]
    if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
        return float("nan")
    return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--arms", default="headless,ui,ui-unpaced",
                        help="comma-separated, from: " + ", ".join(ARMS))
    parser.add_argument("--steps", type=int, default=64, help="optimizer steps per run (4 runs, 4 chunks)")
    parser.add_argument("--size", default="120x40", help="terminal COLSxROWS")
    parser.add_argument("--before", metavar="CHECKOUT", help="add an arm `ui-before`: the UI from another checkout of "
                        "rftui (e.g. a `git worktree` of an older commit), put first on PYTHONPATH")
    parser.add_argument("--threads", type=int, help="set OMP_NUM_THREADS for both arms (default: leave it)")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--out", help="write the measurements as JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the experiment directories")
    opts = parser.parse_args()
    cols, rows = (int(v) for v in opts.size.lower().split("x"))
    if opts.threads:
        os.environ["OMP_NUM_THREADS"] = str(opts.threads)
    folder = Path(tempfile.mkdtemp(prefix="rftui-tui-overhead-"))
    config = write_config(folder, opts.steps)
    arms = [a.strip() for a in opts.arms.split(",") if a.strip()]
    if opts.before:
        ARMS["ui-before"] = {"PYTHONPATH": str(Path(opts.before).resolve())}
        arms.append("ui-before")
    ui_arms = [a for a in arms if a != "headless"]
    if "headless" not in arms or not ui_arms or set(arms) - set(ARMS):
        parser.error(f"--arms: headless plus at least one of {', '.join(a for a in ARMS if a != 'headless')}")
    rounds = []
    try:
        for i in range(opts.rounds):
            order = arms[i % len(arms):] + arms[:i % len(arms)]  # rotate so no arm always goes first
            measured = {}
            for arm in order:
                name = f"p{i}-{arm}"
                if arm == "headless":
                    info = run_headless(config, folder, name, opts.timeout)
                else:
                    info = run_in_pty(config, folder, name, (cols, rows), opts.timeout, ARMS[arm])
                info.update(quanta_measures(folder / name / "state.db"))
                info["controller_cpu_share_training"] = cpu_share_while_training(info)
                measured[arm] = info
            base = measured["headless"]
            for arm in ui_arms:
                measured[arm]["throughput_ratio"] = (measured[arm]["tokens_per_train_second"]
                                                     / base["tokens_per_train_second"])
                measured[arm]["span_ratio"] = measured[arm]["quanta_span"] / base["quanta_span"]
            rounds.append(measured)
            print(f"round {i + 1}/{opts.rounds} ({' -> '.join(order)}): controller process while training "
                  f"{100 * base['controller_cpu_share_training']:.1f} % of a core headless; " + "; ".join(
                      f"{arm}: throughput x{measured[arm]['throughput_ratio']:.3f}, span "
                      f"x{measured[arm]['span_ratio']:.3f}, {100 * measured[arm]['controller_cpu_share_training']:.1f} %"
                      for arm in ui_arms), flush=True)
    finally:
        if not opts.keep:
            shutil.rmtree(folder, ignore_errors=True)

    def median(arm: str, key: str) -> float:
        return statistics.median(r[arm][key] for r in rounds)

    summary = {"rounds": len(rounds), "steps": opts.steps, "size": opts.size, "cpus": os.cpu_count(),
               "headless": {"controller_cpu_share_training": median("headless", "controller_cpu_share_training")}}
    for arm in ui_arms:
        summary[arm] = {key: median(arm, key) for key in ("throughput_ratio", "span_ratio",
                                                          "controller_cpu_share_training")}
        summary[arm]["throughput_cost"] = 1 - summary[arm]["throughput_ratio"]
        print(f"{arm}, median of {len(rounds)} rounds: train throughput vs headless x{summary[arm]['throughput_ratio']:.3f} "
              f"(cost {100 * summary[arm]['throughput_cost']:.1f} %), quanta span x{summary[arm]['span_ratio']:.3f}, "
              f"controller process {100 * summary[arm]['controller_cpu_share_training']:.1f} % of a core while training "
              f"(headless {100 * summary['headless']['controller_cpu_share_training']:.1f} %)")
    if opts.out:
        Path(opts.out).write_text(json.dumps({"summary": summary, "rounds": rounds}, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
