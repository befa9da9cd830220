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

    def __init__(self, hosted: bool, name: str, finished: bool = False, resume_command: str | None = None) -> None:
        super().__init__()
        self.hosted, self.name_text, self.finished = hosted, name, finished
        self.resume = resume_command or f"rftui resume {name}"  # the command rftui prints on exit
        self.default = "stop" if hosted else "quit"

    def compose(self) -> ComposeResult:
        if not self.hosted:
            title, body = "Stop watching?", (f"Experiment {self.name_text} is not touched: it keeps "
                                             "running in its own process.")
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

    def on_mount(self) -> None:
        self.query_one("#confirm", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(self.default if event.button.id == "confirm" else None)

    def action_choose(self, choice: str) -> None:
        self.dismiss(self.default if choice == "default" else None)
