"""Run details (enter): status, the full config, a table of recent metrics and the worker log tail."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import yaml
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Label, Static

from rftui.ui.model import ExperimentModel

TAIL_BYTES = 16_384
TAIL_LINES = 40
TABLE_ROWS = 15
REFRESH_SECONDS = 1.0


def log_tail(path: Path | None, lines: int = TAIL_LINES) -> str:
    """The last lines of a log file (reads only its end)."""
    if path is None:
        return "(no worker has run this run yet)"
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - TAIL_BYTES))
            data = handle.read().decode("utf-8", errors="replace")
    except OSError as exc:
        return f"(cannot read {path}: {exc.strerror or exc})"
    tail = data.splitlines()[-lines:]
    return "\n".join(tail) if tail else f"({path} is empty)"


def metrics_rows(model: ExperimentModel, run_id: str, limit: int = TABLE_ROWS) -> tuple[list[str], list[list[str]]]:
    """(metric names, rows of [step, values...]) for the run's last `limit` logged steps."""
    per_run = model.series.get(run_id, {})
    names = [n for n in ("loss", "eval_loss", "rougeL", "bleu", "learning_rate", "grad_norm") if n in per_run]
    names += sorted(n for n in per_run if n not in names)
    by_step: dict[int, dict[str, float]] = {}
    for name in names:
        series = per_run[name]
        for step, value in zip(series.steps[-limit:], series.values[-limit:]):
            by_step.setdefault(step, {})[name] = value
    steps = sorted(by_step)[-limit:]
    rows = [[str(step)] + [f"{by_step[step][n]:.5g}" if n in by_step[step] else "" for n in names]
            for step in reversed(steps)]
    return names, rows


class _ConfigDumper(yaml.SafeDumper):
    """Mappings in block style (one knob a line), lists of values inline (`[q_proj, v_proj]`)."""


def _inline_list(dumper: yaml.SafeDumper, data: list | tuple) -> yaml.Node:
    return dumper.represent_sequence("tag:yaml.org,2002:seq", list(data), flow_style=True)


_ConfigDumper.add_representer(list, _inline_list)
_ConfigDumper.add_representer(tuple, _inline_list)


def config_text(spec: dict, knobs: dict) -> str:
    """The run's config as YAML: every section, a knob a line. `knobs` (the same values flattened) and the
    id and label (in the summary above it) are left out; before, flow-style sections wrapped mid-mapping."""
    config = {k: v for k, v in spec.items() if k not in ("knobs", "run_id", "label")} if spec else {"knobs": knobs}
    return yaml.dump(config, Dumper=_ConfigDumper, sort_keys=False, default_flow_style=False,
                     allow_unicode=True, width=1_000_000).rstrip("\n")


class DetailsScreen(Screen[None]):
    DEFAULT_CSS = """
    DetailsScreen VerticalScroll { padding: 0 1; }
    DetailsScreen .heading { text-style: bold; color: $primary; margin-top: 1; }
    DetailsScreen #config, DetailsScreen #log { background: $surface; padding: 0 1; }
    DetailsScreen DataTable { height: auto; max-height: 18; }
    """
    BINDINGS = [Binding("escape,enter,q", "close", "Back", id="details-close")]

    def __init__(self, model: ExperimentModel, run_id: str, log_path: Path | None,
                 find_log: Callable[[], Path | None] | None = None) -> None:
        """`find_log` finds the log again on each refresh (a pending run gets a worker later)."""
        super().__init__()
        self.model, self.run_id, self.log_path = model, run_id, log_path
        self.find_log = find_log
        self._shown: dict[str, object] = {}

    def summary(self) -> str:
        row = self.model.runs[self.run_id]
        lines = [f"{row.run_id}  {row.label}", f"status {row.status}"
                 + (f" ({row.reason})" if row.reason else ""),
                 f"step {row.step}/{row.total_steps}, chunk {row.chunks_done}/{row.num_chunks}"]
        if row.parent:
            lines.append(f"clone of {row.parent}" + (" (warm start)" if row.warm_start else ""))
        return "\n".join(lines)

    def compose(self) -> ComposeResult:
        row = self.model.runs[self.run_id]
        with VerticalScroll():
            yield Static(id="summary")
            yield Label("Metrics (latest steps first)", classes="heading")
            yield DataTable(id="metrics", zebra_stripes=True, cursor_type="none")
            yield Label("Config", classes="heading")
            yield Static(Text(config_text(dict(row.spec), dict(row.knobs))), id="config")
            yield Label("Log tail", id="log-heading", classes="heading")
            yield Static(id="log")
        yield Footer()

    def on_mount(self) -> None:
        self.refresh_details()
        # The run goes on training while this is open: a snapshot showed `running` long after it ended.
        self.set_interval(REFRESH_SECONDS, self.refresh_details, name="details")

    def refresh_details(self) -> None:
        """Show what changed since the last refresh (status, new metric rows, new log lines)."""
        if self.find_log is not None:
            self.log_path = self.find_log() or self.log_path
        where = str(self.log_path) if self.log_path else "worker log"
        parts = {"summary": self.summary(), "metrics": metrics_rows(self.model, self.run_id),
                 "log-heading": f"Log tail: {where}", "log": log_tail(self.log_path)}
        for key, value in parts.items():
            if self._shown.get(key) == value:
                continue
            self._shown[key] = value
            if key == "metrics":
                self._fill_table(*value)
            else:
                self.query_one(f"#{key}", Static).update(Text(value))  # Text: a log line is never markup

    def _fill_table(self, names: list[str], rows: list[list[str]]) -> None:
        table = self.query_one("#metrics", DataTable)
        table.clear(columns=True)
        if not rows:
            table.add_column("no metrics logged yet")
            return
        table.add_columns("step", *names)
        for values in rows:
            table.add_row(*values)

    def action_close(self) -> None:
        self.dismiss(None)
