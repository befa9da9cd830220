"""WorkerPool: worker processes (one per device) behind one duplex Pipe each, polled with `wait`.

Imports nothing heavy: torch is imported only by `devices_for` when a GPU driver is there.
"""
from __future__ import annotations

import atexit
import contextlib
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any, Iterable

from rftui.engine.messages import Shutdown, WorkerWarning
from rftui.engine.worker import (
    DEFAULT_BACKEND,
    EXIT_ACCELERATOR_BROKEN,
    FORKSERVER_LOG_ENV,
    dumps_command,
    loads_event,
    worker_main,
)

log = logging.getLogger("rftui.pool")

DEFAULT_PRELOAD = ("torch", "transformers", "peft", "trl")
_main_lock = threading.Lock()
_MISSING = object()


def no_gpu_driver() -> bool:
    """True when this is Linux and no NVIDIA or AMD GPU driver is loaded: no CUDA/ROCm device can exist,
    and the controller need not import torch (1-2 s) to count devices."""
    return sys.platform.startswith("linux") and not any(
        os.path.exists(p) for p in ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd"))


def devices_for(num_workers_requested: int = 1, use_cuda: bool | None = None) -> list[str]:
    """One device string per worker: every CUDA device when CUDA is there, else N x "cpu".

    `use_cuda=False` forces CPU; `True` demands CUDA (RuntimeError without it); None = auto.
    The CUDA count comes from NVML where torch can, so the controller does not initialise CUDA.
    """
    count = 0
    if use_cuda is not False and not (use_cuda is None and no_gpu_driver()):
        try:
            import torch

            count = torch.cuda.device_count()
        except Exception:  # no torch, or a broken driver: run on the CPU
            count = 0
        if use_cuda and count == 0:
            raise RuntimeError("CUDA was requested but no CUDA device is visible")
    if count:
        return [f"cuda:{i}" for i in range(count)]
    return ["cpu"] * max(1, int(num_workers_requested))


def describe_exit(exitcode: int | None) -> str:
    """Words for a worker's exit code, for run failure reasons."""
    if exitcode is None:
        return "still running"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = " (the kernel's OOM killer sends SIGKILL when memory runs out)" if exitcode == -signal.SIGKILL else ""
        return f"worker process killed by {name}{hint}"
    if exitcode == EXIT_ACCELERATOR_BROKEN:
        return "worker process exited after a CUDA error left its GPU context unusable"
    return f"worker process exited with code {exitcode}"


@contextlib.contextmanager
def hidden_main():
    """Hide `__main__.__file__` / `__spec__` so spawn/forkserver children do not re-import it.

    A user's script without an `if __name__ == "__main__"` guard would otherwise run again in
    every worker. User callables reach workers by value (cloudpickle) instead.
    """
    main = sys.modules.get("__main__")
    with _main_lock:
        if main is None:
            yield
            return
        saved = {name: main.__dict__.get(name, _MISSING) for name in ("__file__", "__spec__")}
        main.__dict__.pop("__file__", None)
        main.__dict__["__spec__"] = None
        try:
            yield
        finally:
            for name, value in saved.items():
                if value is _MISSING:
                    main.__dict__.pop(name, None)
                else:
                    main.__dict__[name] = value


class _Slot:
    """One worker: its process, the controller's end of its pipe, and what we know of it."""

    def __init__(self, worker_id: int, device: str, log_path: Path) -> None:
        self.worker_id = worker_id
        self.device = device
        self.log_path = log_path
        self.process: Any = None
        self.conn: Any = None
        self.conn_open = False
        self.stopping = False  # Shutdown sent: an exit is expected
        self.death_seen = False  # sentinel fired and the pipe was drained
        self.send_lock = threading.Lock()


class WorkerPool:
    def __init__(self, num_workers: int, devices: list[str] | None, log_dir: Path | str,
                 backend_spec: str = DEFAULT_BACKEND, backend_options: dict | None = None,
                 preload: Iterable[str] = DEFAULT_PRELOAD, start_method: str = "forkserver") -> None:
        devices = list(devices) if devices else devices_for(num_workers, use_cuda=False)
        if len(devices) < num_workers:
            devices = [devices[i % len(devices)] for i in range(num_workers)]
        self.devices = devices[:num_workers] if num_workers else devices
        self.log_dir = Path(log_dir)
        self.backend_spec = backend_spec
        self.backend_options = dict(backend_options or {})
        self.preload = tuple(preload)
        self.start_method = start_method
        self._ctx = multiprocessing.get_context(start_method)
        self._slots = [_Slot(i, dev, self.log_dir / f"worker-{i}.log") for i, dev in enumerate(self.devices)]
        self._backlog: list[tuple[int, Any]] = []
        self._started = False
        self._closed = False
        self.start_seconds: dict[int, float] = {}  # worker id -> seconds spent in Process.start()

    # ------------------------------------------------------------------ lifecycle

    @property
    def num_workers(self) -> int:
        return len(self._slots)

    def log_path(self, worker_id: int) -> Path:
        return self._slots[worker_id].log_path

    def start(self) -> "WorkerPool":
        if self._started:
            return self
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if self.start_method == "forkserver":
            # The forkserver is one per controller process: the first pool's preload wins.
            self._ctx.set_forkserver_preload(["rftui.engine.worker", *self.preload])
        self._started = True
        atexit.register(self._atexit)
        for slot in self._slots:
            self._launch(slot)
        return self

    def _launch(self, slot: _Slot) -> None:
        import cloudpickle

        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(
            target=worker_main, name=f"rftui-worker-{slot.worker_id}",
            args=(slot.worker_id, child_conn, slot.device, str(slot.log_path),
                  self.backend_spec, cloudpickle.dumps(self.backend_options)),
        )
        t0 = time.perf_counter()
        os.environ[FORKSERVER_LOG_ENV] = str(self.log_dir / "forkserver.log")
        try:
            with hidden_main():
                process.start()
        finally:
            os.environ.pop(FORKSERVER_LOG_ENV, None)
            child_conn.close()
        self.start_seconds[slot.worker_id] = time.perf_counter() - t0
        slot.process, slot.conn, slot.conn_open = process, parent_conn, True
        slot.stopping = slot.death_seen = False
        log.info("worker %d started: pid %s on %s", slot.worker_id, process.pid, slot.device)

    def restart_worker(self, worker_id: int) -> None:
        """Replace worker `worker_id` with a fresh process on the same device (new log section).

        Events the old process sent before dying are kept and returned by the next poll_events.
        """
        slot = self._slots[worker_id]
        old = slot.process
        if old is not None:
            self._backlog.extend(self._drain(slot))
            if old.exitcode is None:
                self._stop_process(old, grace=0.5)
            exitcode, old_pid = old.exitcode, old.pid
            self._close_conn(slot)
            slot.process = None
            with contextlib.suppress(Exception):
                old.close()
            with open(slot.log_path, "a", encoding="utf-8") as handle:
                handle.write(f"\n---- {time.strftime('%Y-%m-%d %H:%M:%S')} restarting worker "
                             f"{worker_id}: previous process {old_pid}: {describe_exit(exitcode)} ----\n")
        self._launch(slot)

    def shutdown(self, timeout: float = 10.0) -> list[tuple[int, Any]]:
        """Ask every worker to stop, wait up to `timeout` s, then terminate/kill stragglers.

        Workers in a quantum stop at their next step (QuantumDone.preempted == "shutdown").
        Returns the events read while waiting (include them in the controller's bookkeeping).
        """
        if not self._started or self._closed:
            return []
        self._closed = True
        atexit.unregister(self._atexit)
        events: list[tuple[int, Any]] = list(self._backlog)
        self._backlog.clear()
        for slot in self._slots:
            slot.stopping = True
            if slot.process is not None and slot.process.exitcode is None:
                self._send(slot, Shutdown())
        deadline = time.monotonic() + timeout
        while True:
            running = [s for s in self._slots if s.process is not None and s.process.exitcode is None]
            if not running or time.monotonic() >= deadline:
                break
            waitables = ([s.conn for s in running if s.conn_open and not s.conn.closed]
                         + [s.process.sentinel for s in running])
            wait(waitables, timeout=min(0.2, max(0.0, deadline - time.monotonic())))
            for slot in running:
                events.extend(self._drain(slot))
        for slot in self._slots:
            if slot.process is not None:
                events.extend(self._drain(slot))
                if slot.process.exitcode is None:
                    log.warning("worker %d did not stop in %.0fs; terminating", slot.worker_id, timeout)
                    self._stop_process(slot.process, grace=2.0)
                self._close_conn(slot)
        return events

    def _atexit(self) -> None:
        """The controller is exiting without shutdown(): do not leave workers behind."""
        with contextlib.suppress(Exception):
            self.shutdown(timeout=3.0)

    def __enter__(self) -> "WorkerPool":
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.shutdown()

    # ------------------------------------------------------------------ talking to workers

    def send(self, worker_id: int, command: Any) -> bool:
        """Send a command; False when the worker is gone (dead_workers() will name it)."""
        return self._send(self._slots[worker_id], command)

    def _send(self, slot: _Slot, command: Any) -> bool:
        if not slot.conn_open:
            return False
        data = dumps_command(command)
        try:
            with slot.send_lock:
                slot.conn.send_bytes(data)
        except (BrokenPipeError, ConnectionResetError, OSError) as exc:
            log.warning("send to worker %d failed: %s", slot.worker_id, exc)
            return False
        return True

    def poll_events(self, timeout: float | None, extra: Iterable[Any] = ()) -> tuple[list[tuple[int, Any]], list[Any]]:
        """Wait up to `timeout` s for worker events, worker deaths or any `extra` waitable.

        Returns ([(worker_id, event), ...], [ready extra objects]); everything already readable
        is drained. A worker death wakes this at once; check `dead_workers()` afterwards.
        """
        extra = list(extra)
        events, self._backlog = self._backlog, []
        by_conn = {}
        by_sentinel = {}
        for slot in self._slots:
            if slot.process is None or slot.death_seen:
                continue
            if slot.conn_open:
                by_conn[slot.conn] = slot
            by_sentinel[slot.process.sentinel] = slot
        waitables = [*by_conn, *by_sentinel, *extra]
        if events:
            timeout = 0.0
        elif timeout is not None:
            timeout = max(0.0, timeout)
        if waitables:
            ready = wait(waitables, timeout=timeout)
        else:
            time.sleep(timeout if timeout is not None else 0.1)
            ready = []
        for conn, slot in by_conn.items():
            if conn in ready:
                events.extend(self._drain(slot))
        for sentinel, slot in by_sentinel.items():
            if sentinel in ready:
                events.extend(self._drain(slot))  # what it sent before dying comes first
                slot.death_seen = True
                if not slot.stopping:
                    log.warning("worker %d died: %s", slot.worker_id, describe_exit(slot.process.exitcode))
        return events, [obj for obj in extra if obj in ready]

    def _drain(self, slot: _Slot) -> list[tuple[int, Any]]:
        events: list[tuple[int, Any]] = []
        if not slot.conn_open:
            return events
        try:
            while slot.conn.poll(0):
                data = slot.conn.recv_bytes()
                try:
                    events.append((slot.worker_id, loads_event(data)))
                except Exception as exc:
                    events.append((slot.worker_id, WorkerWarning(
                        slot.worker_id, None, f"unreadable event from worker: {type(exc).__name__}: {exc}")))
        except (EOFError, OSError):
            self._close_conn(slot)  # the worker is gone; its sentinel tells the rest
        return events

    # ------------------------------------------------------------------ state

    def dead_workers(self) -> list[int]:
        """Workers that exited without being asked to (crash, kill -9, OOM killer)."""
        return [s.worker_id for s in self._slots
                if s.process is not None and not s.stopping and s.process.exitcode is not None]

    def exit_reason(self, worker_id: int) -> str:
        process = self._slots[worker_id].process
        return describe_exit(None if process is None else process.exitcode)

    def is_alive(self, worker_id: int) -> bool:
        process = self._slots[worker_id].process
        return process is not None and process.exitcode is None

    def worker_ids(self) -> list[int]:
        return [s.worker_id for s in self._slots]

    def worker_pids(self) -> dict[int, int | None]:
        return {s.worker_id: (s.process.pid if s.process is not None else None) for s in self._slots}

    # ------------------------------------------------------------------ internals

    def _close_conn(self, slot: _Slot) -> None:
        if slot.conn is not None and slot.conn_open:
            slot.conn_open = False
            with contextlib.suppress(Exception):
                slot.conn.close()

    @staticmethod
    def _stop_process(process: Any, grace: float) -> None:
        with contextlib.suppress(Exception):
            process.terminate()
            process.join(grace)
        if process.exitcode is None:
            with contextlib.suppress(Exception):
                process.kill()
                process.join(grace)
