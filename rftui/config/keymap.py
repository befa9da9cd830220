"""The `ui.keymap` section: binding ids the terminal UI lets users remap, and their check.

The ids are those of the UI's `Binding(..., id=...)` declarations (rftui/ui); they are listed here
as plain text so that validating a config never imports the UI. tests/test_config_values.py keeps
the two in step.
"""
from __future__ import annotations

from typing import Any

from rftui.config.problems import Problem
from rftui.config.rules import did_you_mean

BINDING_IDS = (
    # main screen
    "stop", "resume", "clone", "clone-warm", "delete", "details", "metric", "sort", "theme", "help", "quit",
    # anywhere in the app
    "quit-ctrl", "interrupt",
    # dialogs and screens
    "clone-submit", "clone-cancel", "confirm-yes", "confirm-no", "details-close", "help-close",
    "quit-confirm", "quit-cancel",
)


def check_keymap(value: Any, path: str) -> list[Problem]:
    """Problems with a `{binding id: keys}` mapping, e.g. {stop: ctrl+x, help: "f1,question_mark"}."""
    if value is None:
        return []
    if not isinstance(value, dict):
        return [Problem(path, f"expected a mapping of binding ids to keys, got {type(value).__name__}",
                        "e.g. keymap: {stop: ctrl+x}")]
    problems = []
    for binding, keys in value.items():
        where = f"{path}.{binding}"
        if binding not in BINDING_IDS:
            hint = did_you_mean(str(binding), BINDING_IDS) or f"known binding ids: {', '.join(BINDING_IDS)}"
            problems.append(Problem(where, f"unknown binding id `{binding}`", hint))
        elif not (isinstance(keys, str) and all(k.strip() for k in keys.split(","))):
            quote = f' (quote it: {binding}: "{keys}")' if isinstance(keys, (int, float)) else ""
            problems.append(Problem(where, f"expected keys such as ctrl+x, got {keys!r}",
                                    f"write a key or comma-separated keys, e.g. {binding}: ctrl+x{quote}"))
    return problems
