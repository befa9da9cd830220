"""Quitting: a hosted experiment stops and checkpoints (it stays resumable); a watched one is left alone.

Training cannot go on in the background once this process exits (the workers are its children),
so a hosted app offers "stop & checkpoint" or "cancel". Dismisses with "stop", "quit" or None.
"""
from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static


def watched_state(state: str, following: bool) -> str:
    """A watcher's word for the experiment, from what its screen shows: running or stopping (its own process
    trains it), finished, interrupted (its process is gone or quit: nothing trains it until `rftui resume`),
    created, or unknown (not read yet, or this screen stopped following it while it said running)."""
    if state in ("running", "stopping"):
        return state if following else "unknown"
    return state if state in ("finished", "interrupted", "created") else "unknown"


class QuitDialog(ModalScreen[str | None]):
    DEFAULT_CSS = """
    QuitDialog { align: center middle; }
    QuitDialog > Vertical { width: 64; max-width: 95%; height: auto; border: thick $primary;
                            background: $surface; padding: 1 2; }
    QuitDialog #title { text-style: bold; width: 1fr; }
    QuitDialog #body { width: 1fr; margin: 1 0; }
    QuitDialog #buttons { height: auto; align-horizontal: right; }
    QuitDialog Button { margin-left: 1; min-width: 10; }
    """
    BINDINGS = [
        Binding("escape,n", "choose('')", "Cancel", id="quit-cancel"),
        Binding("q,y", "choose('default')", "Quit", id="quit-confirm"),
    ]

    def __init__(self, hosted: bool, name: str, finished: bool = False, resume_command: str | None = None,
                 watched: str = "running") -> None:
        """`watched`: a watcher's `watched_state` of the experiment (the hosted app ignores it)."""
        super().__init__()
        self.hosted, self.name_text, self.finished, self.watched = hosted, name, finished, watched
        self.resume = resume_command or f"rftui resume {name}"  # the command rftui prints on exit
        self.default = "stop" if hosted else "quit"

    def compose(self) -> ComposeResult:
        if not self.hosted:
            title, body = "Stop watching?", self._watcher_body()
            label = "Quit (q)"
        elif self.finished:
            title, body = "Quit?", f"Experiment {self.name_text} has finished; everything is saved."
            label = "Quit (q)"
        else:
            title = "Stop and checkpoint?"
            body = (f"Running quanta stop at their next optimizer step and checkpoint; then rftui exits. "
                    f"Continue later with `{self.resume}`. Training cannot go on "
                    "in the background once rftui exits.")
            label = "Stop & checkpoint (q)"
        with Vertical():
            yield Label(title, id="title")
            yield Static(body, id="body")
            with Horizontal(id="buttons"):
                yield Button(label, variant="primary", id="confirm")
                yield Button("Cancel (esc)", id="cancel")

    def _watcher_body(self) -> str:
        """What quitting leaves, as it is: the experiment's own process may be gone, or done."""
        name, state = self.name_text, self.watched
        if state == "running":
            return f"Experiment {name} is not touched: it keeps running in its own process."
        if state == "stopping":
            return (f"Experiment {name} is not touched: its own process is stopping it (running quanta "
                    f"checkpoint). Continue it later with `{self.resume}`.")
        if state == "finished":
            return f"Experiment {name} has finished; quitting only closes this screen."
        if state == "interrupted":
            return (f"Experiment {name} is interrupted: no process trains it now. Continue it with "
                    f"`{self.resume}`; quitting only closes this screen.")
        if state == "created":
            return (f"Experiment {name} has not started: no process trains it. Start it with "
                    f"`{self.resume}`; quitting only closes this screen.")
        return f"Quitting does not touch experiment {name}, whether or not its own process trains it now."

    def on_mount(self) -> None:
        self.query_one("#confirm", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(self.default if event.button.id == "confirm" else None)

    def action_choose(self, choice: str) -> None:
        self.dismiss(self.default if choice == "default" else None)
