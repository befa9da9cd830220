"""The `?` screen: every key (after the user's keymap) and what it does."""
from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static

INTRO = ("Keys act on the selected run (arrows or a click select a run, a click on the selected one shows "
         "its details; a click on a column header sorts). Every key can be remapped by id in the config: "
         "ui: {keymap: {stop: ctrl+x}}.")


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 76; max-width: 95%; height: auto; max-height: 90%;
                                  border: thick $primary; background: $surface; padding: 0 1; }
    HelpScreen #title { text-style: bold; color: $primary; width: 1fr; }
    HelpScreen #intro { color: $foreground-muted; width: 1fr; margin-bottom: 1; }
    HelpScreen #keys { height: auto; }
    """
    BINDINGS = [Binding("escape,question_mark,q", "close", "Close", id="help-close")]

    def __init__(self, keys: list[tuple[str, str, str]]) -> None:
        """`keys`: (key display, description, binding id) rows."""
        super().__init__()
        self.keys = keys

    def compose(self) -> ComposeResult:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold", no_wrap=True)
        table.add_column(ratio=1)
        table.add_column(style="dim", no_wrap=True)
        for key, description, binding_id in self.keys:
            table.add_row(Text(key), Text(description), Text(binding_id))
        # One scrolling box, sized by the screen: at 80x24 the keys do not fit, and a scroll area
        # inside an auto-height box was cut by the box's own limit instead of scrolling (the last
        # keys, quit among them, could not be reached).
        with VerticalScroll(id="help"):
            yield Label("rftui keys", id="title")
            yield Static(INTRO, id="intro")
            yield Static(table, id="keys")

    def action_close(self) -> None:
        self.dismiss(None)
