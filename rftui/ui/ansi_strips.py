"""plotext's ANSI output straight to Textual Strips (a fast path for the charts).

`Text.from_ansi` plus Textual's content conversion cost more than plotext's own build for a
big chart; plotext only emits a few SGR codes (reset, bold, 256-colour and true-colour fg/bg),
so a small parser with a style cache does the same job several times faster.
"""
from __future__ import annotations

import re

from rich.color import Color
from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip

_SGR = re.compile(r"\x1b\[([0-9;]*)m")
_STYLES: dict[tuple, Style] = {}


def _color(params: list[str], i: int) -> tuple[Color | None, int]:
    """The colour starting at params[i] (after 38/48) and the index after it."""
    if i < len(params) and params[i] == "5" and i + 1 < len(params):
        return Color.from_ansi(int(params[i + 1])), i + 2
    if i < len(params) and params[i] == "2" and i + 3 < len(params):
        return Color.from_rgb(int(params[i + 1]), int(params[i + 2]), int(params[i + 3])), i + 4
    return None, len(params)


def _style(fg: Color | None, bg: Color | None, bold: bool) -> Style:
    key = (fg, bg, bold)
    style = _STYLES.get(key)
    if style is None:
        if len(_STYLES) > 4096:
            _STYLES.clear()
        style = _STYLES[key] = Style(color=fg, bgcolor=bg, bold=bold or None)
    return style


_Ops = tuple  # ((what, value), ...): what is "reset", "bold", "fg" or "bg"
_SGR_OPS: dict[str, _Ops] = {}


def _ops(sgr: str) -> _Ops:
    """What one SGR sequence does (cached: plotext repeats a handful of them thousands of times)."""
    ops = _SGR_OPS.get(sgr)
    if ops is not None:
        return ops
    params = sgr.split(";") if sgr else ["0"]
    out: list[tuple] = []
    i = 0
    while i < len(params):
        code = params[i]
        if code in ("0", ""):
            out.append(("reset", None))
            i += 1
        elif code in ("1", "22"):
            out.append(("bold", code == "1"))
            i += 1
        elif code in ("38", "48"):
            color, i = _color(params, i + 1)
            out.append(("fg" if code == "38" else "bg", color))
        elif code in ("39", "49"):
            out.append(("fg" if code == "39" else "bg", None))
            i += 1
        else:
            i += 1
    if len(_SGR_OPS) > 4096:
        _SGR_OPS.clear()
    ops = _SGR_OPS[sgr] = tuple(out)
    return ops


def ansi_to_strips(text: str, width: int) -> list[Strip]:
    """One Strip per line, each exactly `width` cells (plotext draws one cell per character)."""
    strips = []
    for line in text.split("\n"):
        segments: list[Segment] = []
        fg = bg = None
        bold = False
        pos = 0
        for match in _SGR.finditer(line):
            if match.start() > pos:
                segments.append(Segment(line[pos:match.start()], _style(fg, bg, bold)))
            pos = match.end()
            for what, value in _ops(match.group(1)):
                if what == "reset":
                    fg = bg = None
                    bold = False
                elif what == "bold":
                    bold = value
                elif what == "fg":
                    fg = value
                else:
                    bg = value
        if pos < len(line):
            segments.append(Segment(line[pos:], _style(fg, bg, bold)))
        cells = sum(len(s.text) for s in segments)
        strips.append(Strip(segments, cells).adjust_cell_length(width))
    return strips
