"""The key footer: Textual's Footer, on two rows when one row is too narrow for every key.

On one row the keys that do not fit are cut at the right edge (at 80 columns that was `q Quit`);
every key the screen shows in the footer stays visible instead.
"""
from __future__ import annotations

import math

from rich.cells import cell_len
from textual.app import ComposeResult
from textual.widgets import Footer


class KeysFooter(Footer):
    DEFAULT_CSS = """
    KeysFooter.-two-rows { height: 2; layout: grid; grid-gutter: 0; }
    """

    def compose(self) -> ComposeResult:
        yield from super().compose()
        self.call_after_refresh(self.fit)

    def on_resize(self) -> None:
        self.fit()

    def one_row_width(self) -> int:
        """Cells the keys need on one row (compact style: `k Description`, one space after each)."""
        return sum(cell_len(key.key_display) + (1 + cell_len(key.description) if key.description else 0) + 1
                   for key in self.query("FooterKey"))

    def fit(self) -> None:
        keys = len(self.query("FooterKey"))
        two_rows = keys > 1 and self.one_row_width() > self.size.width
        if two_rows:
            self.styles.grid_size_columns = math.ceil(keys / 2)
        self.set_class(two_rows, "-two-rows")
