"""A yes/no dialog (used before deleting a run). Cancel has the focus: enter alone never deletes."""
from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static


class ConfirmDialog(ModalScreen[bool]):
    DEFAULT_CSS = """
    ConfirmDialog { align: center middle; }
    ConfirmDialog > Vertical { width: 60; max-width: 90%; height: auto; border: thick $error;
                               background: $surface; padding: 1 2; }
    ConfirmDialog #title { text-style: bold; width: 1fr; }
    ConfirmDialog #body { width: 1fr; margin: 1 0; }
    ConfirmDialog #buttons { height: auto; align-horizontal: right; }
    ConfirmDialog Button { margin-left: 1; min-width: 10; }
    """
    BINDINGS = [
        Binding("escape,n", "answer(False)", "Cancel", id="confirm-no"),
        Binding("y", "answer(True)", "Yes", id="confirm-yes"),
    ]

    def __init__(self, title: str, body: str, confirm: str = "Delete") -> None:
        super().__init__()
        self.title_text, self.body, self.confirm = title, body, confirm

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.title_text, id="title")
            yield Static(self.body, id="body")
            with Horizontal(id="buttons"):
                yield Button(f"{self.confirm} (y)", variant="error", id="yes")
                yield Button("Cancel (n)", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
