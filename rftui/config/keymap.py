"""The `ui.keymap` section: binding ids the terminal UI lets users remap, and their check.

The ids, default keys and screens are those of the UI's `Binding(..., id=...)` declarations
(rftui/ui); they are written here as plain text so that validating a config never imports the UI.
tests/test_keymap_conflicts.py keeps the two in step.
"""
from __future__ import annotations

import string
import unicodedata
from typing import Any

from rftui.config.problems import Problem
from rftui.config.rules import did_you_mean

# Each screen's remappable bindings and their default keys. A key is one binding's per screen;
# the app-wide ones are priority bindings, so they take their keys in every screen.
SCREENS: dict[str, dict[str, str]] = {
    "main screen": {"stop": "s", "resume": "r", "clone": "c", "clone-warm": "w", "delete": "d",
                    "details": "enter", "metric": "m", "sort": "o", "theme": "t", "help": "question_mark",
                    "quit": "q"},
    "clone dialog": {"clone-submit": "ctrl+s", "clone-cancel": "escape"},
    "delete dialog": {"confirm-yes": "y", "confirm-no": "escape,n"},
    "run details screen": {"details-close": "escape,enter,q"},
    "help screen": {"help-close": "escape,question_mark,q"},
    "quit dialog": {"quit-confirm": "q,y", "quit-cancel": "escape,n"},
}
APP_WIDE: dict[str, str] = {"quit-ctrl": "ctrl+q", "interrupt": "ctrl+c"}
# Keys a screen's focused widget uses, which no keymap moves: it takes them before the screen's own
# bindings (and a priority binding would take them from it). The runs table moves its cursor; the clone
# dialog's text editor (Textual's TextArea bindings) edits the knobs, and takes every printable key.
_EDITOR_KEYS = (
    "up", "down", "left", "right", "ctrl+left", "ctrl+right", "home", "ctrl+a", "end", "ctrl+e", "pageup",
    "pagedown", "ctrl+shift+left", "ctrl+shift+right", "shift+home", "shift+end", "shift+up", "shift+down",
    "shift+left", "shift+right", "f6", "f7", "backspace", "ctrl+w", "ctrl+backspace", "alt+backspace", "delete",
    "ctrl+d", "alt+delete", "ctrl+x", "super+x", "ctrl+c", "super+c", "ctrl+v", "ctrl+u", "super+backspace",
    "ctrl+k", "ctrl+shift+k", "ctrl+z", "super+z", "ctrl+y", "super+y", "enter", "tab")
FIXED: dict[str, dict[str, str]] = {
    "main screen": {**{k: "moves the runs table's cursor on the main screen" for k in (
        "up", "down", "left", "right", "pageup", "pagedown", "home", "end", "ctrl+home", "ctrl+end")},
        "ctrl+p": "opens the command palette on the main screen"},
    "clone dialog": {k: "is a key of the clone dialog's text editor" for k in _EDITOR_KEYS},
}
TYPED_IN = "clone dialog"  # the screen whose text editor takes printable keys

BINDING_IDS = (*SCREENS["main screen"], *APP_WIDE,
               *(b for screen, ids in SCREENS.items() if screen != "main screen" for b in ids))
DEFAULT_KEYS: dict[str, str] = {b: k for ids in (*SCREENS.values(), APP_WIDE) for b, k in ids.items()}


def key_name(key: str) -> str:
    """A key as Textual names it: `?` is `question_mark`, `-` is `minus` (as textual.keys does)."""
    key = key.strip()
    if len(key) == 1 and not key.isalnum():
        try:
            key = unicodedata.name(key).lower().replace("-", "_").replace(" ", "_")
        except ValueError:
            return "tab" if key == "\t" else key
        key = {"solidus": "slash", "reverse_solidus": "backslash", "commercial_at": "at",
               "hyphen_minus": "minus", "plus_sign": "plus", "low_line": "underscore"}.get(key, key)
    return key


def _keys(text: str) -> list[str]:
    return list(dict.fromkeys(key_name(k) for k in text.split(",")))


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
    if problems:
        return problems
    return _conflicts({str(b): k for b, k in value.items()}, path)


def _printable(key: str) -> bool:
    """A key that types a character (`x`, `question_mark`, `space`), as a text editor takes it."""
    if len(key) == 1:
        return True
    name = {"slash": "solidus", "backslash": "reverse_solidus", "at": "commercial_at", "minus": "hyphen_minus",
            "plus": "plus_sign", "underscore": "low_line"}.get(key, key)
    try:
        return unicodedata.lookup(name.replace("_", " ")).isprintable()
    except KeyError:
        return False


def _conflicts(keymap: dict[str, str], path: str) -> list[Problem]:
    """A remapped key that another binding of the same screen still has, or that the screen's focused
    widget uses, would silently go to one of them: refuse it, naming both and some free keys. A key a
    binding has by default is left alone (ctrl+c is both the interrupt and the editor's copy)."""
    keys = {b: _keys(keymap.get(b, default)) for b, default in DEFAULT_KEYS.items()}
    taken = {screen: {k for b in [*ids, *APP_WIDE] for k in keys[b]} | set(FIXED.get(screen, {}))
             for screen, ids in SCREENS.items()}

    def free(binding: str, screen: str) -> str:
        # A key typed in the clone dialog's editor is not free there, nor, for the app-wide bindings, anywhere.
        app_wide = binding in APP_WIDE
        letters = not (app_wide or screen == TYPED_IN)
        candidates = list(string.ascii_lowercase) if letters else [f"f{i}" for i in range(1, 13)]
        used = set().union(*taken.values()) if app_wide else taken[screen]
        return ", ".join([c for c in candidates if c not in used][:4])

    problems, seen = [], set()
    for screen, ids in SCREENS.items():
        active = [*ids, *APP_WIDE]
        fixed = FIXED.get(screen, {})
        for binding in (b for b in active if b in keymap):
            for key in keys[binding]:
                if key not in _keys(DEFAULT_KEYS[binding]) and (key in fixed or (
                        screen == TYPED_IN and _printable(key))):
                    what = fixed.get(key, "is typed into the clone dialog's text editor")
                    if (binding, key) not in seen:
                        seen.add((binding, key))
                        problems.append(Problem(f"{path}.{binding}", f"`{key}` {what}",
                                                f"pick a free key, e.g. one of {free(binding, screen)}"))
                for other in (b for b in active if b != binding and key in keys[b]):
                    if (frozenset((binding, other)), key) in seen:
                        continue
                    seen.add((frozenset((binding, other)), key))
                    default = "" if other in keymap else " by default"
                    hint = (f"a key does one thing: pick a free one ({free(binding, screen)}) "
                            f"or give {other} another key too")
                    problems.append(Problem(f"{path}.{binding}",
                                            f"`{key}` is already {other}'s key{default} on the {screen}", hint))
    return problems
