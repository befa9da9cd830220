"""Run details (enter): status, the full config, a table of recent metrics and the run's lines of its workers' logs."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import yaml
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Label, Static

from rftui.ui.charts import metric_name
from rftui.ui.model import ExperimentModel

TAIL_BYTES = 1 << 20  # a run's last quantum may lie behind many other runs' lines
TAIL_LINES = 80  # room for a traceback (transformers' are long) and the quantum's first line
TABLE_ROWS = 15
REFRESH_SECONDS = 1.0


def _read_end(path: Path, size: int) -> str:
    """The file's last `size` bytes, from the first whole line in them."""
    with open(path, "rb") as handle:
        handle.seek(0, 2)
        start = max(0, handle.tell() - size)
        handle.seek(start)
        data = handle.read().decode("utf-8", errors="replace")
    return data.split("\n", 1)[-1] if start else data


def run_blocks(text: str, run_id: str) -> list[tuple[int, list[str]]]:
    """A worker log's quanta of `run_id` as (chunk, lines): each from the worker's `quantum: run ID chunk C`
    line to its `quantum done: run ID` line, or to the next quantum or worker start (rftui.engine.worker
    writes these), so a failure's traceback, what a crash left on stderr and the pool's restart line stay
    with the run. A worker trains one quantum at a time, so the lines in between (transformers' output,
    warnings) are that run's."""
    start, done = f"rftui.worker: quantum: run {run_id} chunk ", f"rftui.worker: quantum done: run {run_id} -> "
    blocks: list[tuple[int, list[str]]] = []
    inside = False
    for line in text.splitlines():
        if "rftui.worker: quantum: run " in line or "rftui.worker: ==== worker " in line:
            inside = start in line
            if inside:
                chunk = line.split(start, 1)[1].split(" ", 1)[0]
                blocks.append((int(chunk) if chunk.isdigit() else -1, []))
        if inside:
            blocks[-1][1].append(line)
            inside = done not in line
    return blocks


def run_lines(text: str, run_id: str) -> list[str]:
    """The lines of a worker log that concern `run_id` (its quanta, as run_blocks finds them)."""
    return [line for _, lines in run_blocks(text, run_id) for line in lines]


def run_log_tail(paths: Path | list[Path] | None, run_id: str, lines: int = TAIL_LINES) -> str:
    """The last lines that concern `run_id` in the logs of the workers its quanta ran on (a worker's log
    holds many runs; a run's chunks may train on different workers). Quanta are put in chunk order, then
    by when they started (a retried chunk after its failed try), each file read to its last TAIL_BYTES."""
    paths = [paths] if isinstance(paths, Path) else list(paths or [])
    if not paths:
        return "(no worker has run this run yet)"
    found: list[tuple[int, str, int, int, list[str]]] = []
    notes: list[str] = []
    for index, path in enumerate(paths):
        try:
            blocks = run_blocks(_read_end(path, TAIL_BYTES), run_id)
        except FileNotFoundError:
            notes.append(f"({path} does not exist yet)")
            continue
        except OSError as exc:
            notes.append(f"(cannot read {path}: {exc.strerror or exc})")
            continue
        # The logging time that starts each line (`2026-01-01 10:00:01,000`) orders two files' tries of one chunk.
        found += [(chunk, block[0][:23], index, pos, block) for pos, (chunk, block) in enumerate(blocks)]
    mine = [line for *_, block in sorted(found, key=lambda f: f[:4]) for line in block]
    if not mine:
        where = "this log" if len(paths) == 1 else "these logs"
        return "\n".join(notes) if len(notes) == len(paths) else \
            f"(no lines of {run_id} in the last {TAIL_BYTES // 1024} KiB of {where} yet)"
    return "\n".join(mine[-lines:]).rstrip()  # a traceback ends its log record with a blank line


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

    def __init__(self, model: ExperimentModel, run_id: str, log_paths: list[Path],
                 find_logs: Callable[[], list[Path]] | None = None) -> None:
        """`log_paths`: the logs of the workers the run's quanta ran on. `find_logs` finds them again on each
        refresh (a pending run gets a worker later, a running one its next chunk's)."""
        super().__init__()
        self.model, self.run_id, self.log_paths = model, run_id, list(log_paths)
        self.find_logs = find_logs
        self._shown: dict[str, object] = {}
        self._log_read: tuple[object, str] = (None, "")  # (the logs' paths, sizes and mtimes; their text)

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
        if self.find_logs is not None:
            self.log_paths = self.find_logs() or self.log_paths
        where = ", ".join(map(str, self.log_paths)) or "worker log"
        parts = {"summary": self.summary(), "metrics": metrics_rows(self.model, self.run_id),
                 "log-heading": f"Log tail, {self.run_id}'s lines: {where}",
                 "log": self._log()}
        for key, value in parts.items():
            if self._shown.get(key) == value:
                continue
            self._shown[key] = value
            if key == "metrics":
                self._fill_table(*value)
            else:
                self.query_one(f"#{key}", Static).update(Text(value))  # Text: a log line is never markup

    def _log(self) -> str:
        """This run's log lines, read again only when a file changed (each may be a MiB, every second)."""
        try:
            key: object = tuple((path, stat.st_size, stat.st_mtime_ns)
                                for path, stat in ((p, os.stat(p)) for p in self.log_paths))
        except OSError:
            key = object()  # never equal: say why it cannot be read
        if key == () or key != self._log_read[0]:
            self._log_read = (key, run_log_tail(self.log_paths, self.run_id))
        return self._log_read[1]

    def _fill_table(self, names: list[str], rows: list[list[str]]) -> None:
        table = self.query_one("#metrics", DataTable)
        table.clear(columns=True)
        if not rows:
            table.add_column("no metrics logged yet")
            return
        table.add_columns("step", *map(metric_name, names))  # as the runs table and the charts name them
        for values in rows:
            table.add_row(*values)

    def action_close(self) -> None:
        self.dismiss(None)
