"""The clone dialog: the run's editable knobs as YAML; validated before anything is sent.

Only knobs a clone may change are shown: training arguments (bare names), `lora.*` and
`generation.*`. On submit the text is parsed and checked with the config validator; problems
are listed under the editor and the dialog stays open. It dismisses with the edits (only the
knobs whose value changed) or None when cancelled.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import yaml
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static, TextArea

from rftui.config.rules import coerce, known_args, knob_section
from rftui.config.validate import validate_knobs
from rftui.config.yaml_lines import duplicate_keys
from rftui.engine.ops import parse_edits, short_name_problems, warm_fixed_edits, warm_fixed_reason
from rftui.ui.model import RunRow

NOT_EDITABLE = ("model_name", "tokenizer", "formatting_func", "compute_metrics")
SHOWN_CHARS = 40  # a longer value or key is cut in a problem, so the problem's hint stays in view


def editable_knobs(knobs: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name, value in knobs.items():
        if name.startswith(("lora.", "generation.")) or ("." not in name and name not in NOT_EDITABLE):
            out[name] = value
    return out


def knobs_yaml(knobs: dict[str, Any]) -> str:
    return yaml.safe_dump(editable_knobs(knobs), sort_keys=False, default_flow_style=None, allow_unicode=True)


def _typed(name: str, value: Any) -> Any:
    """YAML reads `1e-4` as text; make it the number the knob expects (as config files do)."""
    section, arg = knob_section(name)
    return coerce(known_args(section).get(arg, "any"), value)


def check_edits(text: str, original: dict[str, Any], warm: bool,
                spec: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """(edits, problems) for the dialog's text against the run's editable knobs (`spec`: the run's config)."""
    has_lora = spec.get("lora", {}) is not None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        return {}, [f"{where}not valid YAML ({getattr(exc, 'problem', None) or exc})"]
    if data is None:
        data = {}
    if not isinstance(data, dict):
        return {}, ["write one `knob: value` per line (a YAML mapping)"]
    # YAML keeps the last of two equal keys without a word; the user meant one of them.
    problems = [f"line {dup.line}: `{dup.path}` is given twice (also on line {dup.first}) — "
                "keep one of them" for dup in duplicate_keys(text)]
    problems += [_removed(name) for name in original if name not in data]
    typed = {str(k): _typed(str(k), v) for k, v in data.items()}
    changed = {k: v for k, v in typed.items() if k not in original or original[k] != v}
    edits, parse_problems = parse_edits(changed)
    problems += parse_problems
    problems += short_name_problems(edits, assign=": ")  # `lr:` as labels show it: name the knob, as the CLI does
    for p in validate_knobs(edits):
        if p.path in edits and edits[p.path] is None:
            # The validator's "or leave it out" does not hold here: a clone keeps every knob.
            p = replace(p, hint=f"`{p.path}` takes no null; write a value (a clone keeps every knob, "
                                "so it cannot be left out either)")
        problems.append(str(p))
    if not has_lora:
        problems += [f"{k}: this run is full fine-tuning; it has no LoRA knobs" for k in edits if k.startswith("lora.")]
    fixed = warm_fixed_edits(spec.get("lora"), spec.get("training") or {}, edits) if warm else []
    if fixed:  # the controller's own rule and words, so that the dialog refuses exactly what the controller would
        problems.append(warm_fixed_reason(fixed))
    long = {t for k, v in list(data.items()) + list(typed.items()) for t in (str(k), repr(v))
            if len(t) > SHOWN_CHARS}
    return edits, [_clipped(p, long) for p in problems]


def _removed(name: str) -> str:
    """A knob left out: refused, and the way to reset it that the validator does accept (null, where it may)."""
    nullable = not validate_knobs({name: None})
    return (f"{name}: cannot be removed; a clone keeps every knob — change its value"
            + (", or write null for the library's default" if nullable else ""))


def _clipped(problem: str, long: set[str]) -> str:
    for text in sorted(long, key=len, reverse=True):
        problem = problem.replace(text, text[:SHOWN_CHARS - 1] + "…")
    return problem


class CloneDialog(ModalScreen[dict | None]):
    DEFAULT_CSS = """
    CloneDialog { align: center middle; }
    CloneDialog > Vertical { width: 80%; max-width: 100; min-width: 50; height: 90%; max-height: 40;
                             border: thick $accent; background: $surface; padding: 0 1; }
    CloneDialog #title { text-style: bold; color: $accent; width: 1fr; }
    CloneDialog #hint { color: $foreground-muted; width: 1fr; }
    CloneDialog TextArea { height: 1fr; min-height: 4; }
    CloneDialog #problems-box { height: auto; max-height: 8; }
    CloneDialog #problems { color: $error; height: auto; width: 1fr; }
    CloneDialog #buttons { height: auto; align-horizontal: right; }
    CloneDialog Button { margin-left: 1; min-width: 10; }
    """
    BINDINGS = [
        # Not a priority binding: those run in the app's queue at once, before the editor has taken the keys
        # typed just before (a fast burst cloned the text without them). This one reaches the dialog through
        # the editor, after them.
        Binding("ctrl+s", "submit", "Clone", id="clone-submit"),
        Binding("escape", "cancel", "Cancel", id="clone-cancel", priority=True),
    ]

    def __init__(self, run: RunRow, warm: bool) -> None:
        super().__init__()
        self.run = run
        self.warm = warm
        self.original = editable_knobs(dict(run.knobs))
        self.problems: list[str] = []

    def compose(self) -> ComposeResult:
        kind = "clone with warm start" if self.warm else "clone"
        with Vertical():
            yield Label(f"{kind.capitalize()} {self.run.run_id} ({self.run.label})", id="title")
            start = ("starts from its current adapter, optimizer and data position"
                     if self.warm else "trains from scratch")
            yield Label(f"Edit the knobs; unchanged ones are copied. The new run {start}. "
                        "ctrl+s clones, esc cancels.", id="hint")
            yield TextArea(knobs_yaml(dict(self.run.knobs)), id="knobs", soft_wrap=False,
                           show_line_numbers=True, tab_behavior="indent")
            with VerticalScroll(id="problems-box"):  # many problems scroll instead of hiding the last
                yield Static("", id="problems")
            with Horizontal(id="buttons"):
                yield Button("Clone", variant="primary", id="submit")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one(TextArea).focus()

    @on(Button.Pressed, "#submit")
    def action_submit(self) -> None:
        text = self.query_one(TextArea).text
        edits, self.problems = check_edits(text, self.original, self.warm, self.run.spec)
        problems = self.query_one("#problems", Static)
        if self.problems:
            problems.update("\n".join(f"• {p}" for p in self.problems))
            return
        problems.update("")
        self.dismiss(edits)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
