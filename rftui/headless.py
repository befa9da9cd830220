"""The `--no-ui` front end: progress bars on a TTY, timestamped lines otherwise, or JSON lines."""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
import time
from typing import Any, TextIO

from rftui.engine import events as ev
from rftui.engine.controller import Controller
from rftui.engine.messages import RunFailed
from rftui.engine.warning_tally import WarningTally, without_run_prefix
from rftui.report import counted, failure_reasons, json_safe, leaderboard_text, metric_text, show_data

REDRAW_SECONDS = 0.25
EXIT_INTERRUPTED = 130


@dataclasses.dataclass(frozen=True)
class ExperimentInterrupted:
    """The `--json` stream's last line after Ctrl-C (exit 130): `rftui resume` continues from the checkpoints."""

    name: str
    workdir: str


def event_json(event: Any) -> str:
    payload = dataclasses.asdict(event) if dataclasses.is_dataclass(event) else {"value": repr(event)}
    payload.pop("run", None)
    record = {"event": type(event).__name__, "time": round(time.time(), 3), **json_safe(payload)}
    return json.dumps(record, default=str, allow_nan=False)


def _metric_text(metrics: dict[str, float]) -> str:
    parts = []
    for name in ("loss", "eval_loss", "rougeL", "bleu"):
        if name in metrics:
            parts.append(f"{name}={metric_text(float(metrics[name]))}")
    return " ".join(parts)


class HeadlessView:
    """Renders engine events as text. Bars are redrawn in place only on a terminal."""

    def __init__(self, controller: Controller, stream: TextIO, json_lines: bool, tty: bool | None = None):
        self.ctl, self.out, self.json_lines = controller, stream, json_lines
        self.resume_with: str | None = None  # how the Python API continues; None: the CLI's `rftui resume`
        self.tty = stream.isatty() if tty is None else tty
        self.bar_lines = 0
        self.last_draw = 0.0
        self.closed = False  # the reader of the stream went away (`| head`): training goes on, quietly
        self.warned = WarningTally()
        self._earlier_unshown: set[str] = set()  # earlier sessions' warnings tallied, their line not yet written

    def _write(self, text: str, flush: bool = True) -> None:
        if self.closed:
            return
        try:
            self.out.write(text)
            if flush:
                self.out.flush()
        except (BrokenPipeError, ValueError):  # ValueError: the stream was closed under us
            self._reader_gone()

    def _reader_gone(self) -> None:
        """Stop writing progress; the experiment must not be lost because a pager closed."""
        self.closed = True
        self.bar_lines = 0
        point_at_devnull(self.out)
        try:
            exp = self.ctl.exp
            sys.stderr.write(f"rftui: output closed; training goes on without progress lines (see the results "
                             f"with `rftui show {exp.name} --workdir {exp.workdir}`)\n")
            sys.stderr.flush()
        except (OSError, ValueError, AttributeError):
            pass

    def line(self, text: str) -> None:
        self._clear_bars()
        stamp = time.strftime("%H:%M:%S")
        self._write(f"{stamp} {text}\n")

    def start_line(self) -> None:
        """The first line: the experiment's name (run_fit may have added -2), its size and where it lives."""
        ctl = self.ctl
        self.line(f"experiment {ctl.spec.name}: {counted(len(ctl.runs), 'run')}, {counted(ctl.spec.num_chunks, 'chunk')}"
                  f", directory {ctl.exp.root}")

    def render(self, events: list[Any]) -> None:
        if self.closed:
            return
        if not self.json_lines:
            self._tally_earlier(events)
        for event in events:
            if self.json_lines:
                self._write(event_json(event) + "\n", flush=False)
                continue
            text = self.describe(event)
            if text:
                self.line(text)
        if self.json_lines:
            self._write("", flush=True)
        elif self.tty and time.monotonic() - self.last_draw >= REDRAW_SECONDS:
            self._draw_bars()

    def describe(self, event: Any) -> str | None:
        if isinstance(event, ev.QuantumReport):
            label = self.ctl.runs[event.run_id].spec.label
            note = f" (preempted: {event.preempted})" if event.preempted else ""
            return (f"{event.run_id} [{label}] chunk {event.chunk + 1}/{event.num_chunks} "
                    f"step {event.steps_done}/{event.total_steps} {_metric_text(dict(event.metrics))} "
                    f"{event.seconds:.1f}s (switch {event.switch_seconds * 1000:.0f} ms){note}")
        if isinstance(event, ev.RunStatusChanged) and event.status in ("completed", "stopped", "failed", "deleted"):
            reason = f": {event.reason}" if event.reason else ""
            return f"{event.run_id} {event.status}{reason}"
        if isinstance(event, RunFailed):
            return None  # the RunStatusChanged line carries the reason
        if isinstance(event, ev.OpResolved):
            extra = f" -> {event.new_run_id}" if event.new_run_id else ""
            why = f" ({event.reason})" if event.reason else ""
            return f"op {event.op} {event.run_id or ''} from {event.source}: {event.status}{why}{extra}"
        if isinstance(event, ev.EngineWarning):
            return self._warning_line(event)
        if isinstance(event, ev.WorkerRestarted):
            return f"worker {event.worker_id} died ({event.reason}); started a fresh one"
        if isinstance(event, ev.Progress):
            return event.message
        if isinstance(event, ev.ExperimentFinished):
            return f"experiment {event.name} finished: " + ", ".join(f"{v} {k}" for k, v in event.counts.items())
        return None

    def _tally_earlier(self, events: list[Any]) -> None:
        """A resumed experiment's start repeats its earlier sessions' warnings together: tallied before any is
        written, each one's single line names all its runs."""
        for event in events:
            if isinstance(event, ev.EngineWarning) and event.earlier:
                counted = self.warned.add(event.message, event.run_id, earlier=True)
                if counted.first:
                    self._earlier_unshown.add(counted.text)

    def _warning_line(self, event: ev.EngineWarning) -> str | None:
        """A warning is shown once: the same one from every run of a grid (fp16 on a CPU) would fill the log,
        and one an earlier session gave is not shown again when it recurs. The summary at the end (the
        leaderboard's warnings) names every run each came from."""
        if event.earlier:  # tallied by render(); written at the first of its events
            text = without_run_prefix(event.message, event.run_id)
            if text not in self._earlier_unshown:
                return None
            self._earlier_unshown.discard(text)
            return self.warned.line(text)
        counted = self.warned.add(event.message, event.run_id)  # the line names the run once
        return self.warned.line(counted.text) if counted.first else None

    def _clear_bars(self) -> None:
        if self.tty and self.bar_lines:
            text, self.bar_lines = f"\x1b[{self.bar_lines}F\x1b[J", 0
            self._write(text, flush=False)

    def _draw_bars(self) -> None:
        self._clear_bars()
        lines, urgency = [], []
        for rec in self.ctl.runs.values():
            if rec.status == "deleted":
                continue
            urgency.append({"running": 0, "waiting": 1, "pending": 2}.get(rec.status, 3))
            done = max(rec.steps_done, rec.live_step) if rec.status == "running" else rec.steps_done
            fraction = done / rec.total_steps if rec.total_steps else 0.0
            filled = int(fraction * 24)
            loss = rec.last.get("loss")
            lines.append(f"  {rec.run_id:<4} [{'#' * filled}{'.' * (24 - filled)}] {done:>5}/{rec.total_steps:<5} "
                         f"{rec.status:<9} {rec.spec.label}" + (f"  loss {loss:.4f}" if loss is not None else ""))
        # The bars are erased by moving the cursor up one row per line: a line that wraps, or more lines than
        # the screen has rows, would leave stale bars behind in the scrollback at every redraw.
        columns, rows = self._terminal_size()
        if len(lines) > max(2, rows - 2):  # the runs training now first, in id order
            shown = max(2, rows - 2) - 1
            keep = sorted(sorted(range(len(lines)), key=lambda i: (urgency[i], i))[:shown])
            lines = [lines[i] for i in keep] + [f"  ... {len(lines) - shown} more runs (`rftui show "
                                                f"{self.ctl.exp.name}`)"]
        lines = [line[:max(20, columns - 1)] for line in lines]
        self._write("\n".join(lines) + "\n")
        self.bar_lines = 0 if self.closed else len(lines)
        self.last_draw = time.monotonic()

    def _terminal_size(self) -> tuple[int, int]:
        try:
            size = os.get_terminal_size(self.out.fileno())
            return size.columns, size.lines
        except (OSError, ValueError, AttributeError):
            return 80, 24

    def finish(self) -> None:
        self._clear_bars()
        if self.json_lines or self.closed:
            return
        data = show_data(self.ctl.exp, self.ctl.store, include_deleted=False)
        # the leaderboard ends with every warning state.db kept, this session's and earlier ones', as `rftui show`
        summary = leaderboard_text(data, failure_reasons(self.ctl.store), self.resume_with)
        self._write("\n" + summary + "\n")


def point_at_devnull(stream: TextIO) -> None:
    """The reader of `stream` went away: send what is left to /dev/null, so that no later flush (ours, or the
    interpreter's last one) raises again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def run_headless(controller: Controller, stream: TextIO = sys.stdout, json_lines: bool = False,
                 tty: bool | None = None, first_events: list[Any] | None = None) -> int:
    """Drive the controller to the end; Ctrl-C checkpoints at the next optimizer step and exits 130."""
    view = HeadlessView(controller, stream, json_lines, tty)
    interrupted = {"count": 0}

    def on_sigint(signum, frame):
        interrupted["count"] += 1
        if interrupted["count"] > 1:
            raise KeyboardInterrupt
        controller.begin_shutdown()

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        if not json_lines:  # first: the warnings a resumed experiment's start repeats come after it
            view.start_line()
        view.render(list(first_events or []))
        while not controller.finished:
            if interrupted["count"] == 1 and not controller.stopping:
                controller.begin_shutdown()
            view.render(controller.step(0.25))
        if interrupted["count"]:
            note = f"interrupted: checkpointed; continue with `{controller.exp.resume_command}`"
            if json_lines:  # stdout carries JSON only: the stream says it too, the person reads stderr
                view.render([ExperimentInterrupted(controller.spec.name, str(controller.exp.workdir))])
                print(f"rftui: {note}", file=sys.stderr)
            else:
                view.line(note)
    finally:
        signal.signal(signal.SIGINT, previous)
        late = controller.close()
    view.render(late)
    view.finish()
    return EXIT_INTERRUPTED if interrupted["count"] else 0
