"""The worker process: serves TrainQuantum / Preempt / DropRun / Shutdown commands from one pipe.

Wire format: one pickle per `send_bytes` message. A command travels as the envelope
`(run_id, cloudpickle bytes)`, so hooks defined in a user's `__main__` travel by value and a
payload the worker cannot unpickle still fails the right run. Events are written with plain
pickle (cloudpickle when that fails). Everything is read with `pickle.loads`.
This module imports nothing heavy at import time: it is preloaded into the forkserver.
"""
from __future__ import annotations

import collections
import gc
import importlib
import logging
import os
import pickle
import signal
import sys
import threading
import time
import traceback
from typing import Any, Callable

from rftui.engine.messages import (
    DropRun,
    Preempt,
    QuantumDone,
    RunFailed,
    Shutdown,
    TrainQuantum,
    WorkerReady,
    WorkerWarning,
)

DEFAULT_BACKEND = "rftui.training.host:TrainingHost"
OOM_HINT = "out of memory: lower per_device_train_batch_size or max_length"
# Exit status of a worker whose accelerator context is unusable (see is_accelerator_broken); the
# controller restarts it like any dead worker.
EXIT_ACCELERATOR_BROKEN = 86
FORKSERVER_LOG_ENV = "RFTUI_FORKSERVER_LOG"
# Options the worker itself reads; they are also passed on to the backend.
WORKER_OPTION_THREADS = "num_threads"


# ----------------------------------------------------------------------------- wire format


def dumps_command(command: Any) -> bytes:
    """An envelope `(run_id, payload)`: the worker can name the run even if unpickling fails."""
    import cloudpickle

    run = getattr(command, "run", None)
    run_id = getattr(run, "run_id", None) or getattr(command, "run_id", None)
    return pickle.dumps((run_id, cloudpickle.dumps(command)), protocol=pickle.HIGHEST_PROTOCOL)


def loads_command(data: bytes) -> Any:
    """The command, or an `UnreadableCommand` naming the run when the payload cannot be read."""
    run_id, payload = pickle.loads(data)
    try:
        return pickle.loads(payload)
    except Exception as exc:
        return UnreadableCommand(run_id, one_line_reason(exc), traceback.format_exc())


def dumps_event(event: Any) -> bytes:
    try:
        return pickle.dumps(event, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        import cloudpickle

        return cloudpickle.dumps(event)


def loads_event(data: bytes) -> Any:
    return pickle.loads(data)


# ----------------------------------------------------------------------------- helpers


class UnreadableCommand:
    """A command whose payload failed to unpickle in the worker (e.g. a hook's module is missing)."""

    def __init__(self, run_id: str | None, reason: str, traceback_text: str) -> None:
        self.run_id, self.reason, self.traceback = run_id, reason, traceback_text


def one_line_reason(exc: BaseException, limit: int = 400) -> str:
    """`TypeName: first line of the message`, at most `limit` characters."""
    text = str(exc).strip().splitlines()
    message = text[0] if text else ""
    reason = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return reason if len(reason) <= limit else reason[: limit - 1] + "…"


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    torch = sys.modules.get("torch")
    if torch is not None:
        oom_types = tuple(
            t for t in (getattr(torch, "OutOfMemoryError", None),
                        getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None))
            if isinstance(t, type)
        )
        if oom_types and isinstance(exc, oom_types):
            return True
    return False


def is_accelerator_broken(exc: BaseException) -> bool:
    """True for CUDA errors after which the process's CUDA context stays unusable (a device-side
    assert, an illegal memory access, a launch failure): every later kernel fails too, so the
    worker must be replaced. Out of memory is not one of them."""
    if is_out_of_memory(exc):
        return False
    torch = sys.modules.get("torch")
    accelerator_error = getattr(torch, "AcceleratorError", None) if torch is not None else None
    if isinstance(accelerator_error, type) and isinstance(exc, accelerator_error):
        return True
    return isinstance(exc, RuntimeError) and "CUDA error" in str(exc)


def load_backend_factory(spec: str) -> Callable[..., Any]:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"backend spec {spec!r} must look like 'package.module:ClassName'")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _redirect_output(log_path: str) -> None:
    """Point fds 0/1/2 at /dev/null and the log file, so nothing reaches the terminal."""
    os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    null_fd = os.open(os.devnull, os.O_RDONLY)
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except Exception:
            pass
    os.dup2(null_fd, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    os.close(null_fd)
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is None or getattr(stream, "closed", False):
            setattr(sys, name, open(1 if name == "stdout" else 2, "w", closefd=False))
        else:
            try:
                stream.reconfigure(line_buffering=True)
            except Exception:
                pass


def _quiet_forkserver() -> None:
    """In the forkserver process only: send its stdout/stderr (preload warnings) to a log."""
    path = os.environ.pop(FORKSERVER_LOG_ENV, None)
    if not path:
        return
    import multiprocessing

    proc = multiprocessing.current_process()
    if proc.name != "MainProcess" or getattr(proc, "_inheriting", False):
        return  # a spawned child unpickling its target, not the forkserver
    try:
        _redirect_output(path)
    except OSError:
        pass


_quiet_forkserver()


# ----------------------------------------------------------------------------- the worker


class _Channel:
    """The worker's end of the pipe: sends events, buffers commands read mid-quantum."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.pending: collections.deque[Any] = collections.deque()
        self.eof = False
        self.shutdown_requested = False
        self._send_lock = threading.Lock()

    def emit(self, event: Any) -> None:
        data = dumps_event(event)
        with self._send_lock:
            self.conn.send_bytes(data)

    def receive(self) -> Any:
        """Next command (pending first); None on EOF."""
        if self.pending:
            return self.pending.popleft()
        try:
            return loads_command(self.conn.recv_bytes())
        except (EOFError, OSError):
            self.eof = True
            return None

    def drain(self) -> None:
        """Move every command waiting in the pipe to `pending`, without blocking."""
        try:
            while not self.eof and self.conn.poll(0):
                self.pending.append(loads_command(self.conn.recv_bytes()))
        except (EOFError, OSError):
            self.eof = True

    def preempt_poller(self, run_id: str) -> Callable[[], str | None]:
        state: dict[str, str | None] = {"reason": None}

        def poll_preempt() -> str | None:
            if state["reason"] is not None:
                return state["reason"]
            self.drain()
            if self.eof:
                # The controller is gone: a checkpoint written now could never be recorded in state.db, and it
                # would race the resumed experiment's own writes. Abandon the quantum; the worker exits.
                raise BrokenPipeError("the controller went away")
            for command in list(self.pending):
                if isinstance(command, Preempt) and command.run_id == run_id:
                    self.pending.remove(command)
                    state["reason"] = command.reason or "stop"
                    return state["reason"]
                if isinstance(command, Shutdown):
                    self.shutdown_requested = True
                    state["reason"] = "shutdown"
                    return state["reason"]
            return None

        return poll_preempt


def _setup_process(worker_id: int, device: str, log_path: str, options: dict) -> logging.Logger:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the controller's to handle
    os.environ.pop(FORKSERVER_LOG_ENV, None)
    _redirect_output(log_path)
    handler = logging.FileHandler(log_path, mode="a", encoding="utf-8")
    handler.setFormatter(logging.Formatter(
        f"%(asctime)s worker-{worker_id} %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    log = logging.getLogger("rftui.worker")
    log.info("==== worker %d started: pid %d, device %s ====", worker_id, os.getpid(), device)
    threads = options.get(WORKER_OPTION_THREADS)
    if threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(int(threads))
    if (threads and "torch" in sys.modules) or device.startswith("cuda"):
        import torch

        if threads:
            torch.set_num_threads(int(threads))
        if device.startswith("cuda"):
            torch.cuda.set_device(0)  # the one GPU this worker sees (see _pin_gpu)
    return log


def _pin_gpu(device: str) -> str:
    """Make "cuda:N" the only GPU this process sees and return "cuda".

    transformers' single-process Trainer trains on cuda:0 and TRL refuses when several GPUs are
    visible, so each worker sees exactly its own. A CPU worker sees none: otherwise model loading
    would pick GPU-only options and the DataLoader's pinned memory would open a CUDA context in it.
    Must run before anything initialises CUDA.
    """
    if device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        return device
    if not device.startswith("cuda:"):
        return device
    index = int(device.split(":", 1)[1])
    visible = [v for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    os.environ["CUDA_VISIBLE_DEVICES"] = visible[index] if index < len(visible) else str(index)
    return "cuda"


def _free_memory(backend: Any, run_id: str, device: str, log: logging.Logger) -> None:
    try:
        backend.drop_run(run_id)
    except Exception:
        log.exception("drop_run(%s) failed while recovering from an error", run_id)
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and device.startswith("cuda"):
        try:
            torch.cuda.empty_cache()
        except Exception:
            log.exception("torch.cuda.empty_cache failed")


def _run_quantum(worker_id: int, backend: Any, cmd: TrainQuantum, channel: _Channel,
                 device: str, log: logging.Logger) -> bool:
    """Train one quantum and report it; False when this process can no longer train (see
    is_accelerator_broken): the run is reported failed and the caller exits."""
    run_id = cmd.run.run_id
    log.info("quantum: run %s chunk %d steps %d..%d", run_id, cmd.chunk, cmd.start_step, cmd.end_step)
    failed: RunFailed | None = None
    broken = False
    try:
        done = backend.train_quantum(cmd, channel.emit, channel.preempt_poller(run_id))
    except (BrokenPipeError, ConnectionResetError):
        raise
    except BaseException as exc:  # noqa: BLE001 - a failing run must not take the worker down
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        tb = traceback.format_exc()
        log.error("run %s failed in chunk %d:\n%s", run_id, cmd.chunk, tb)
        reason = one_line_reason(exc)
        broken = is_accelerator_broken(exc)
        if is_out_of_memory(exc):
            reason = f"{reason} ({OOM_HINT})"
        elif broken:
            reason = f"{reason} (the worker's CUDA context is unusable after this error; it restarts)"
        failed = RunFailed(worker_id, run_id, reason=reason, traceback=tb)
    if failed is not None:
        # Out of the except block: its traceback no longer holds the failed step's tensors, so they can be freed.
        if not broken:
            _free_memory(backend, run_id, device, log)
        channel.emit(failed)
        return not broken
    if done is not None:
        channel.emit(done)
    log.info("quantum done: run %s -> %s", run_id, getattr(done, "steps_done", None))
    return True


def _skipped_quantum(worker_id: int, cmd: TrainQuantum) -> QuantumDone:
    """Reply for a quantum that was still queued when Shutdown arrived: no progress made."""
    return QuantumDone(
        worker_id=worker_id, run_id=cmd.run.run_id, chunk=cmd.chunk,
        steps_done=cmd.start_step, completed=False, preempted="shutdown",
        checkpoint_dir=cmd.checkpoint_dir or "", train_seconds=0.0, switch_seconds=0.0,
    )


def worker_main(worker_id: int, conn: Any, device: str, log_path: str,
                backend_spec: str = DEFAULT_BACKEND, backend_options: Any = None) -> None:
    """Entry point of a worker process. `backend_options` is a dict or its cloudpickle bytes."""
    options = pickle.loads(backend_options) if isinstance(backend_options, bytes) else dict(backend_options or {})
    train_device = _pin_gpu(device)
    log = _setup_process(worker_id, train_device, log_path, options)
    channel = _Channel(conn)

    backend: Any = None
    backend_error: str | None = None
    t0 = time.perf_counter()
    try:
        factory = load_backend_factory(backend_spec)
        backend = factory(worker_id, device=train_device, log=log, **options)
    except Exception as exc:  # keep serving: every quantum gets the reason
        backend_error = f"worker backend {backend_spec} failed to start: {one_line_reason(exc)}"
        log.error("%s\n%s", backend_error, traceback.format_exc())
    threads = options.get(WORKER_OPTION_THREADS)
    if threads and "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(int(threads))
    log.info("backend %s ready in %.2fs", backend_spec, time.perf_counter() - t0)

    try:
        channel.emit(WorkerReady(worker_id, os.getpid(), device))
        if backend_error:
            channel.emit(WorkerWarning(worker_id, None, backend_error))
        _serve(worker_id, backend, backend_error, channel, device, log)
    except (BrokenPipeError, ConnectionResetError, EOFError):
        channel.eof = True
    if channel.eof:
        log.info("controller went away; exiting")
    if backend is not None:
        try:
            backend.close()
        except Exception:
            log.exception("backend.close() failed")
    log.info("==== worker %d exiting ====", worker_id)
    logging.shutdown()


def _serve(worker_id: int, backend: Any, backend_error: str | None, channel: _Channel,
           device: str, log: logging.Logger) -> None:
    while True:
        if channel.shutdown_requested:
            # Shutdown arrived mid-quantum: answer queued quanta, drop the rest, exit.
            for command in channel.pending:
                if isinstance(command, TrainQuantum):
                    channel.emit(_skipped_quantum(worker_id, command))
            return
        command = channel.receive()
        if command is None or isinstance(command, Shutdown):
            return
        if isinstance(command, TrainQuantum):
            if backend is None:
                channel.emit(RunFailed(worker_id, command.run.run_id, reason=str(backend_error)))
            elif not _run_quantum(worker_id, backend, command, channel, device, log):
                log.error("exiting: the CUDA context is unusable; the controller starts a fresh worker")
                logging.shutdown()
                os._exit(EXIT_ACCELERATOR_BROKEN)  # no cleanup: it would touch CUDA again
            if channel.eof:
                return
        elif isinstance(command, DropRun):
            if backend is not None:
                try:
                    backend.drop_run(command.run_id)
                except Exception as exc:
                    log.exception("drop_run(%s) failed", command.run_id)
                    channel.emit(WorkerWarning(worker_id, command.run_id,
                                               f"drop_run failed: {one_line_reason(exc)}"))
        elif isinstance(command, UnreadableCommand):
            message = f"could not read a command in the worker: {command.reason}"
            log.error("%s\n%s", message, command.traceback)
            if command.run_id is not None:
                channel.emit(RunFailed(worker_id, command.run_id, reason=message, traceback=command.traceback))
            else:
                channel.emit(WorkerWarning(worker_id, None, message))
        elif isinstance(command, Preempt):
            log.info("ignoring preempt for %s: it is not training here", command.run_id)
        else:
            log.warning("ignoring unknown command %r", type(command).__name__)
            channel.emit(WorkerWarning(worker_id, None, f"unknown command {type(command).__name__}"))
