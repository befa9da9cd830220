"""Colours shared by the table and the charts: one colour per run, one style per run status."""
from __future__ import annotations

from typing import Mapping

from textual.color import Color

# Ten well-separated hues, in a bright set for dark backgrounds and a deep set for light ones.
_DARK = [(95, 175, 255), (255, 175, 95), (95, 215, 135), (215, 135, 255), (255, 215, 95),
         (255, 95, 135), (95, 215, 215), (175, 215, 95), (255, 135, 215), (175, 175, 255)]
_LIGHT = [(0, 95, 175), (175, 80, 0), (30, 123, 58), (120, 40, 160), (150, 110, 0),
          (190, 30, 70), (0, 120, 130), (90, 120, 0), (170, 30, 140), (70, 70, 170)]


def run_color(index: int, dark: bool) -> tuple[int, int, int]:
    palette = _DARK if dark else _LIGHT
    return palette[index % len(palette)]


def hex_color(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


_STATUS_VARIABLE = {
    "running": "primary", "waiting": "foreground", "pending": "foreground-muted", "completed": "success",
    "stopped": "warning", "failed": "error", "deleted": "foreground-muted",
}


def theme_color(name: str, variables: Mapping[str, str]) -> str:
    """A theme variable as an opaque `#rrggbb` (translucent ones blended onto the background)."""
    try:
        color = Color.parse(variables.get(name) or variables.get("foreground", "#c0c0c0"))
        if color.a < 1.0:
            color = Color.parse(variables.get("background", "#000000")) + color
        return color.hex6
    except Exception:  # an odd value ("auto 60%") never breaks rendering
        return ""


def status_style(status: str, variables: Mapping[str, str]) -> str:
    """A Rich style for a status, from the current theme's CSS variables."""
    color = theme_color(_STATUS_VARIABLE.get(status, "foreground"), variables)
    extra = {"running": " bold", "failed": " bold", "deleted": " strike"}.get(status, "")
    return f"{color}{extra}".strip()
