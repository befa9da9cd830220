"""The rftui Textual app and `build_app`, the one factory the CLI and the tests use.

The app knows a `Source` (hosted controller, watched store, or a test replay), never the engine
itself. Keys only enqueue ops through `source.ops()`; the answer arrives as a Message.
"""
from __future__ import annotations

import time
from concurrent.futures import Future
from typing import Any, Callable, Mapping

from textual.app import App
from textual.binding import Binding
from textual.worker import Worker, WorkerState

from rftui.engine import events as ev
from rftui.ui import themes
from rftui.ui.bridge import BridgeMixin
from rftui.ui.commands import RunCommands
from rftui.ui.help import HelpScreen
from rftui.ui.main_screen import MainScreen
from rftui.ui.messages import EngineBatch, OpAnswered, SourceClosed
from rftui.ui.model import ExperimentModel, LogLine, op_line
from rftui.ui.pacing import DEFAULT_BUDGET
from rftui.ui.quit_dialog import QuitDialog, watched_state

EXIT_INTERRUPTED = 130


class RftuiApp(BridgeMixin, App[int]):
    TITLE = "rftui"
    COMMANDS = App.COMMANDS | {RunCommands}
    BINDINGS = [
        Binding("ctrl+q", "request_quit", "Quit", id="quit-ctrl", show=False, priority=True),
        Binding("ctrl+c", "request_quit", "Quit", id="interrupt", show=False, priority=True),
    ]

    def __init__(self, source: Any, theme: str | None = None, clock: Callable[[], float] = time.monotonic,
                 keymap: Mapping[str, str] | None = None, start_bridge: bool = True, redraw_hz: float = 4.0,
                 size: tuple[int, int] | None = None, cpu_budget: float | None = DEFAULT_BUDGET) -> None:
        super().__init__()
        self.source = source
        self.clock = clock
        self.started_at = clock()
        self.redraw_hz = redraw_hz
        self.cpu_budget = cpu_budget  # share of a core for periodic redraws (None: always redraw_hz)
        self.preferred_size = size
        self.user_keymap = dict(keymap or {})
        self.auto_bridge = start_bridge
        self.bridge_alive = start_bridge
        self.stopping = False
        self.model = ExperimentModel(source.name, getattr(source, "num_workers", 1))
        self.sent_ops: list[tuple[str, str | None, dict]] = []
        self._shown_ops: set[int] = set()
        self._startup_notes: list[LogLine] = []
        self.theme_names = self._register_themes(theme)

    # ------------------------------------------------------------------ set-up

    def _register_themes(self, requested: str | None) -> list[str]:
        loaded, warnings = themes.bundled_themes()
        for theme in loaded:
            self.register_theme(theme)
        extra, name, more = themes.resolve(requested, {t.name: t for t in loaded})
        if extra is not None:
            self.register_theme(extra)
        for text in warnings + more:
            self._startup_notes.append(LogLine("warning", f"theme: {text}"))
        self.theme = name
        names = [t.name for t in loaded] + ([extra.name] if extra is not None else [])
        return names or [name]

    def get_default_screen(self) -> MainScreen:
        self._main = MainScreen(self.model)
        return self._main

    @property
    def main(self) -> MainScreen:
        return self._main

    def on_mount(self) -> None:
        if self.user_keymap:
            self.set_keymap(self.user_keymap)

    def screen_ready(self) -> None:
        """The main screen is composed: show start-up warnings, then start feeding it."""
        for line in self._startup_notes:
            self.main.log_line(line)
        if self.auto_bridge:
            self.start_bridge()

    def elapsed(self) -> float:
        return self.clock() - self.started_at

    # ------------------------------------------------------------------ the feed

    def on_engine_batch(self, message: EngineBatch) -> None:
        kept = []
        for event in message.batch.events:
            if isinstance(event, ev.OpResolved) and event.op_id is not None:
                if event.op_id in self._shown_ops:
                    continue  # already shown from the op's own answer
                self._shown_ops.add(event.op_id)
            kept.append(event)
        message.batch.events = kept
        self.main.apply_batch(message.batch)

    def on_source_closed(self, message: SourceClosed) -> None:
        self.bridge_alive = False
        if message.error:
            self.main.log_line(LogLine("error", f"engine stopped: {message.error}"))
            self.notify(f"engine stopped: {message.error}", severity="error", timeout=10)
        if self.stopping:
            self.exit(0 if self.model.finished else EXIT_INTERRUPTED)
        else:
            self.main.flush()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group == "engine" and event.state in (WorkerState.ERROR, WorkerState.CANCELLED,
                                                               WorkerState.SUCCESS):
            self.bridge_alive = False

    # ------------------------------------------------------------------ ops

    def send_op(self, op: str, run_id: str | None, args: dict | None = None) -> None:
        """Ask the source for an op; never blocks. The answer comes back as OpAnswered."""
        self.sent_ops.append((op, run_id, dict(args or {})))
        if self.stopping:
            self.notify("stopping: ops are no longer accepted", severity="warning")
            return
        try:
            future = self.source.ops(op, run_id, args or {})
        except Exception as exc:  # a source that cannot even queue it
            self.post_message(OpAnswered(op, run_id, None, f"{type(exc).__name__}: {exc}"))
            return
        self.main.log_line(LogLine("op", f"{op} {run_id or ''} requested".replace("  ", " ")))

        def answered(done: Future) -> None:
            try:
                self.post_message(OpAnswered(op, run_id, done.result()))
            except Exception as exc:
                self.post_message(OpAnswered(op, run_id, None, f"{type(exc).__name__}: {exc}"))

        future.add_done_callback(answered)

    def on_op_answered(self, message: OpAnswered) -> None:
        self.main.redraw_eagerly()
        resolved = message.resolved
        if message.error:
            self.main.log_line(LogLine("error", f"{message.op} {message.run_id}: failed: {message.error}"))
            self.notify(message.error, title=f"{message.op} failed", severity="error")
            return
        if resolved is None:
            return  # the source's feed reports the outcome
        if resolved.op_id is not None:
            if resolved.op_id in self._shown_ops:
                return
            self._shown_ops.add(resolved.op_id)
        self.main.log_line(op_line(resolved))
        if resolved.status != "applied":
            self.notify(resolved.reason or "refused", title=f"{resolved.op} {resolved.run_id}: refused",
                        severity="error", timeout=6)

    def run_command(self, op: str, run_id: str) -> None:
        """Palette entry point: the same paths as the keys."""
        screen = self.main
        if op in ("stop", "resume"):
            screen.action_op(op, run_id)
        elif op in ("clone", "clone-warm"):
            screen.action_clone(op == "clone-warm", run_id)
        elif op == "delete":
            screen.action_delete(run_id)
        elif op == "details":
            screen.action_details(run_id)

    # ------------------------------------------------------------------ app keys

    def action_cycle_theme(self) -> None:
        names = self.theme_names
        self.theme = names[(names.index(self.theme) + 1) % len(names)] if self.theme in names else names[0]
        self.notify(f"theme: {self.theme}", timeout=1.5)

    def key_help(self) -> list[tuple[str, str, str]]:
        rows = [("↑ ↓", "select a run", "")]
        for binding in MainScreen.BINDINGS + self.BINDINGS:
            if isinstance(binding, Binding) and binding.id:
                rows.append((self.key_shown(binding), binding.tooltip or binding.description, binding.id))
        rows.append(("ctrl+p", "command palette: every op for every run", ""))
        return rows

    def key_shown(self, binding: Binding | str) -> str:
        """The key(s) a binding has after the user's keymap, as the footer writes them (`c`, `ctrl+x`)."""
        if isinstance(binding, str):
            binding = next(b for b in MainScreen.BINDINGS + self.BINDINGS if isinstance(b, Binding) and b.id == binding)
        keys = self._keymap.get(binding.id, binding.key)
        return ", ".join(self.get_key_display(Binding(k, binding.action)) for k in keys.split(","))

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.key_help()))

    def action_request_quit(self) -> None:
        if self.stopping:
            self.notify("already stopping: waiting for running quanta to checkpoint", severity="warning")
            return
        if isinstance(self.screen, QuitDialog):
            return

        def chosen(choice: str | None) -> None:
            if choice == "stop":
                self.begin_stop()
            elif choice == "quit":
                self.exit(0)

        source = self.source
        exp = getattr(source, "exp", None)  # a watcher's ExperimentDir
        resume = getattr(source, "resume_command", None) or getattr(exp, "resume_command", None)
        watched = watched_state(self.model.state(), self.bridge_alive)  # a watcher's dialog says what quitting leaves
        self.push_screen(QuitDialog(source.hosted, self.model.name, self.model.finished, resume, watched), chosen)

    def begin_stop(self) -> None:
        """Hosted: checkpoint and exit once the source has closed (the bridge posts SourceClosed)."""
        self.stopping = True
        self.main.log_line(LogLine("warning", "stopping: running quanta checkpoint at their next optimizer step"))
        self.main.flush()
        if not self.bridge_alive:
            self.exit(0 if self.model.finished else EXIT_INTERRUPTED)
            return
        self.source.request_stop()


def build_app(source: Any, theme: str | None = None, clock: Callable[[], float] = time.monotonic,
              keymap: Mapping[str, str] | None = None, size: tuple[int, int] | None = None,
              start_bridge: bool = True, redraw_hz: float = 4.0,
              cpu_budget: float | None = DEFAULT_BUDGET) -> RftuiApp:
    """The app for a source; the CLI and the tests both build it here.

    `keymap` defaults to the experiment's `ui.keymap`, `theme` to its `ui.theme`.
    """
    ui = dict(getattr(source.spec, "ui", None) or {})
    merged_keymap = {**(ui.get("keymap") or {}), **(keymap or {})}
    return RftuiApp(source, theme=theme or ui.get("theme"), clock=clock, keymap=merged_keymap,
                    start_bridge=start_bridge, redraw_hz=redraw_hz, size=size, cpu_budget=cpu_budget)
