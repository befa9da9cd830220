"""The UI's view of an experiment: runs, metric series, workers and ETA, updated from engine batches.

Plain Python (no Textual) so sources, widgets and tests share it. A source turns whatever it
reads (controller events, store rows) into `Batch`es; `ExperimentModel.apply` folds a batch in
and says what changed, and the widgets redraw only that.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any, Iterable

from rftui.engine import events as ev
from rftui.engine.messages import RunFailed
from rftui.engine.warning_tally import WarningTally

TERMINAL = ("completed", "failed", "deleted")
ACTIVE = ("pending", "running", "waiting")
METRICS = ("loss", "eval_loss", "rougeL", "bleu", "learning_rate")
EVAL_KIND = "eval"

Point = tuple  # (run_id, step, name, value, kind)


@dataclass
class RunRow:
    """One run as the UI shows it (a copy; the engine's records never cross threads)."""

    run_id: str
    label: str
    status: str
    steps_done: int
    total_steps: int
    chunks_done: int
    num_chunks: int
    knobs: dict[str, Any] = field(default_factory=dict)
    spec: dict[str, Any] = field(default_factory=dict)
    live_step: int = 0
    parent: str | None = None
    warm_start: bool = False
    reason: str | None = None
    worker_id: int | None = None
    last: dict[str, float] = field(default_factory=dict)
    checkpointed: bool = False  # has state to warm-start a clone from (the engine refuses otherwise)

    @property
    def step(self) -> int:
        """The step to show: the live one while a quantum runs, else the checkpointed one."""
        return max(self.steps_done, self.live_step) if self.status == "running" else self.steps_done

    @classmethod
    def from_record(cls, rec: Any) -> "RunRow":
        return cls(run_id=rec.run_id, label=rec.spec.label, status=rec.status, steps_done=rec.steps_done,
                   total_steps=rec.total_steps, chunks_done=rec.chunks_done, num_chunks=rec.num_chunks,
                   knobs=dict(rec.spec.knobs), spec=rec.spec.to_dict(), live_step=rec.live_step,
                   parent=rec.parent, warm_start=rec.warm_start, reason=rec.reason,
                   worker_id=rec.worker_id, last=dict(rec.last), checkpointed=rec.checkpoint_dir is not None)

    @classmethod
    def from_store(cls, row: dict[str, Any]) -> "RunRow":
        spec = row.get("spec") or {}
        return cls(run_id=row["run_id"], label=row.get("label") or "", status=row["status"],
                   steps_done=row.get("steps_done") or 0, total_steps=row.get("total_steps") or 0,
                   chunks_done=row.get("chunks_done") or 0, num_chunks=row.get("num_chunks") or 0,
                   knobs=dict(spec.get("knobs") or {}), spec=spec, parent=row.get("parent"),
                   warm_start=bool(row.get("warm_start")), reason=row.get("reason"),
                   worker_id=row.get("worker_id"), checkpointed=row.get("checkpoint_dir") is not None)


@dataclass
class Batch:
    """What a source read in one go. `runs`/`workers` are full snapshots when not None."""

    events: list[Any] = field(default_factory=list)
    points: list[Point] = field(default_factory=list)
    runs: list[RunRow] | None = None
    workers: dict[int, str | None] | None = None
    status: str | None = None  # the experiment's state.db status (running, finished, ...)

    def empty(self) -> bool:
        return not (self.events or self.points or self.runs is not None or self.workers is not None
                    or self.status is not None)

    def merge(self, later: "Batch") -> "Batch":
        """This batch followed by `later` (snapshots: the later one wins)."""
        return Batch(self.events + later.events, self.points + later.points,
                     later.runs if later.runs is not None else self.runs,
                     later.workers if later.workers is not None else self.workers,
                     later.status if later.status is not None else self.status)


class Series:
    """One metric of one run: steps ascending; a re-logged step replaces what followed it."""

    __slots__ = ("steps", "values", "version", "_sampled")

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.values: list[float] = []
        self.version = 0
        self._sampled: dict[int, tuple[int, tuple[list[int], list[float]]]] = {}

    def sampled(self, buckets: int) -> tuple[list[int], list[float]]:
        """`downsample` of this series, cached until the series changes."""
        hit = self._sampled.get(buckets)
        if hit is not None and hit[0] == self.version:
            return hit[1]
        result = downsample(self.steps, self.values, buckets)
        if len(self._sampled) > 8:
            self._sampled.clear()
        self._sampled[buckets] = (self.version, result)
        return result

    def add(self, step: int, value: float) -> None:
        if self.steps and step <= self.steps[-1]:
            cut = bisect.bisect_left(self.steps, step)
            del self.steps[cut:], self.values[cut:]
        self.steps.append(step)
        self.values.append(value)
        self.version += 1

    def __len__(self) -> int:
        return len(self.steps)


def downsample(xs: list[int], ys: list[float], buckets: int) -> tuple[list[int], list[float]]:
    """At most ~2*buckets points keeping each bucket's min and max (spikes stay visible)."""
    n = len(xs)
    if buckets <= 0 or n <= 2 * buckets:
        return list(xs), list(ys)
    out_x: list[int] = []
    out_y: list[float] = []
    for b in range(buckets):
        lo, hi = b * n // buckets, (b + 1) * n // buckets
        if hi <= lo:
            continue
        chunk = ys[lo:hi]
        i_min = lo + chunk.index(min(chunk))
        i_max = lo + chunk.index(max(chunk))
        for i in sorted({i_min, i_max}):
            out_x.append(xs[i])
            out_y.append(ys[i])
    if out_x[-1] != xs[-1]:
        out_x.append(xs[-1])
        out_y.append(ys[-1])
    return out_x, out_y


@dataclass
class LogLine:
    level: str  # info | success | warning | error | op
    text: str
    key: str | None = None  # a later line with the same key replaces this one where it stands


@dataclass
class Changes:
    runs: set[str] = field(default_factory=set)       # runs whose row or series changed
    series: set[str] = field(default_factory=set)     # runs with new metric points
    columns: bool = False                             # the set of runs (so knob columns) changed
    log: list[LogLine] = field(default_factory=list)
    status: bool = False                              # status bar content changed
    statuses: set[str] = field(default_factory=set)   # runs whose status (running, stopped, ...) changed


def _metric_text(metrics: dict[str, float]) -> str:
    names = (("loss", "loss"), ("eval_loss", "eval loss"), ("rougeL", "ROUGE-L"))
    return "".join(f", {title} {metrics[n]:.3f}" for n, title in names if metrics.get(n) is not None)


def describe(event: Any, runs: dict[str, RunRow]) -> LogLine | None:
    """The event log line for an engine event, or None for events the log does not show."""
    if isinstance(event, ev.QuantumReport):
        where = f"{event.run_id} chunk {event.chunk + 1}/{event.num_chunks}"
        metrics = _metric_text(dict(event.metrics))
        if event.preempted == "lost":  # only a watcher reports one (from state.db): its steps_done is where it restarts
            where_from = f"its checkpoint at step {event.steps_done}" if event.steps_done else "step 0"
            return LogLine("warning", f"{where} lost (its worker or process died mid-chunk): restarts from "
                                      f"{where_from}/{event.total_steps}{metrics}")
        if event.preempted:
            return LogLine("info", f"{where} cut short at step {event.steps_done}/{event.total_steps} "
                                   f"({event.preempted}){metrics} ({event.seconds:.1f} s)")
        return LogLine("info", f"{where} done: step {event.steps_done}/{event.total_steps}{metrics} "
                               f"({event.seconds:.1f} s)")
    if isinstance(event, ev.RunStatusChanged) and event.status in ("completed", "stopped", "failed", "deleted"):
        level = {"completed": "success", "failed": "error", "stopped": "warning"}.get(event.status, "info")
        reason = f": {event.reason}" if event.reason else ""
        return LogLine(level, f"{event.run_id} {event.status}{reason}")
    if isinstance(event, ev.RunAdded):
        origin = ""
        if event.parent:
            origin = f" (clone of {event.parent}{', warm start' if event.warm_start else ''})"
            return LogLine("success", f"{event.run_id} added: {event.label}{origin}")
        return None
    if isinstance(event, ev.OpResolved):
        return op_line(event)
    if isinstance(event, ev.WorkerRestarted):
        return LogLine("warning", f"worker {event.worker_id} died ({event.reason}); started a fresh one")
    if isinstance(event, RunFailed):
        return None  # the RunStatusChanged line carries the reason
    if isinstance(event, ev.Progress):
        return LogLine("info", event.message)
    if isinstance(event, ev.ExperimentFinished):
        counts = ", ".join(f"{v} {k}" for k, v in event.counts.items())
        return LogLine("success", f"experiment {event.name} finished: {counts}")
    return None


def op_line(event: ev.OpResolved) -> LogLine:
    target = f" {event.run_id}" if event.run_id else ""
    via = "" if event.source == "tui" else f" (from {event.source})"
    if event.status == "applied":
        extra = f" -> new run {event.new_run_id}" if event.new_run_id else ""
        why = f": {event.reason}" if event.reason else ""
        return LogLine("success", f"{event.op}{target}{via}: applied{why}{extra}")
    return LogLine("error", f"{event.op}{target}{via}: {event.status}: {event.reason or 'no reason given'}")


class ExperimentModel:
    """Everything the main screen shows, folded from batches."""

    def __init__(self, name: str, num_workers: int = 1):
        self.name = name
        self.runs: dict[str, RunRow] = {}
        self.series: dict[str, dict[str, Series]] = {}
        self.workers: dict[int, str | None] = {w: None for w in range(num_workers)}
        self.status = "starting"
        self.finished = False
        self._dispatched: dict[str, int] = {}
        self._last_worker: dict[str, int] = {}
        self._ran_on: dict[str, list[int]] = {}  # the workers a run's quanta went to, first use first
        self._seconds = 0.0
        self._steps = 0
        self._warnings = WarningTally()

    # ------------------------------------------------------------------ folding

    def apply(self, batch: Batch) -> Changes:
        changes = Changes()
        if batch.runs is not None:
            self._apply_snapshot(batch.runs, changes)
        if batch.workers is not None and batch.workers != self.workers:
            self.workers = dict(batch.workers)
            changes.status = True
        if batch.status is not None and batch.status != self.status:
            self.status = batch.status
            changes.status = True
        self._apply_points(batch.points, changes)
        for event in batch.events:
            self._apply_event(event, changes)
        return changes

    def _apply_snapshot(self, rows: Iterable[RunRow], changes: Changes) -> None:
        for row in rows:
            old = self.runs.get(row.run_id)
            if old is None:
                changes.columns = True
                self.series.setdefault(row.run_id, {})
            else:
                row.live_step = max(row.live_step, old.live_step) if row.status == "running" else row.live_step
                row.last = {**old.last, **row.last}
                if row == old:
                    continue
                if row.status != old.status:
                    changes.statuses.add(row.run_id)
            self.runs[row.run_id] = row
            changes.runs.add(row.run_id)
            changes.status = True

    def _apply_points(self, points: Iterable[Point], changes: Changes) -> None:
        for run_id, step, name, value, _kind in points:
            if value is None:
                continue
            per_run = self.series.setdefault(run_id, {})
            series = per_run.get(name)
            if series is None:
                series = per_run[name] = Series()
            series.add(int(step), float(value))
            changes.series.add(run_id)
            row = self.runs.get(run_id)
            if row is not None:
                row.last[name] = float(value)
                if row.status == "running":
                    row.live_step = max(row.live_step, int(step))
                changes.runs.add(run_id)

    def _apply_event(self, event: Any, changes: Changes) -> None:
        row = self.runs.get(getattr(event, "run_id", None) or "")
        if isinstance(event, ev.QuantumDispatched):
            self._dispatched[event.run_id] = event.start_step
            self._last_worker[event.run_id] = event.worker_id
            ran_on = self._ran_on.setdefault(event.run_id, [])
            if event.worker_id not in ran_on:
                ran_on.append(event.worker_id)
            self.workers[event.worker_id] = event.run_id
            changes.status = True
        elif isinstance(event, ev.QuantumReport):
            start = self._dispatched.pop(event.run_id, None)
            if start is not None and event.steps_done > start and event.seconds > 0:
                self._steps += event.steps_done - start
                self._seconds += event.seconds
            if self.workers.get(event.worker_id) == event.run_id:
                self.workers[event.worker_id] = None
            if row is not None:
                row.steps_done = max(row.steps_done, event.steps_done)
                # Points already set the latest values; a report (a past chunk's, from a watcher) only fills gaps.
                for name, value in event.metrics.items():
                    if value is not None:
                        row.last.setdefault(name, value)
                changes.runs.add(row.run_id)
            changes.status = True
        elif isinstance(event, ev.RunStatusChanged) and row is not None:
            if row.status != event.status:
                changes.statuses.add(row.run_id)
            row.status = event.status
            if event.status in ACTIVE:
                self._reopen()  # a run resumed after the experiment had finished
            if event.reason is not None:
                row.reason = event.reason or None
            changes.runs.add(row.run_id)
            changes.status = True
        elif isinstance(event, ev.ExperimentFinished):
            self.finished = True
            self.status = "finished"
            changes.status = True
        elif isinstance(event, ev.RunAdded):
            self._reopen()
        if isinstance(event, ev.EngineWarning):
            line = self._warning_line(event)
        else:
            line = describe(event, self.runs)
        if line is not None:
            changes.log.append(line)

    def _warning_line(self, event: ev.EngineWarning) -> LogLine | None:
        """A warning is shown once: the same one from every run of a grid would fill the log. A run that
        gives it too re-lists the runs in that line (its key); the same run saying it again adds nothing. A
        resumed experiment's earlier sessions' warnings are marked so, until this session gives them too."""
        counted = self._warnings.add(event.message, event.run_id, earlier=event.earlier)
        if not (counted.first or counted.new_run or counted.revived):
            return None
        return LogLine("warning", self._warnings.line(counted.text), key=f"warning: {counted.text}")

    def _reopen(self) -> None:
        """A clone or a resume after the finish: the experiment is training again."""
        self.finished = False
        if self.status == "finished":
            self.status = "running"

    # ------------------------------------------------------------------ queries

    def state(self) -> str:
        """The experiment's state for the status bar: running while any run trains, whatever the
        last experiment-wide status said (a watched store says `interrupted` while a clone of a
        finished experiment trains)."""
        if self.status != "stopping" and any(r.status == "running" for r in self.runs.values()):
            return "running"
        return "finished" if self.finished else self.status

    def visible_runs(self) -> list[RunRow]:
        return [r for r in self.runs.values() if r.status != "deleted"]

    def last_worker(self, run_id: str) -> int | None:
        row = self.runs.get(run_id)
        if row is not None and row.worker_id is not None:
            return row.worker_id
        return self._last_worker.get(run_id)

    def run_workers(self, run_id: str) -> list[int]:
        """Every worker the run's quanta went to (a run trains its chunks wherever a worker is free),
        with the stored last one (a resumed session did not see the earlier quanta); -1 (unknown) left out."""
        workers = list(self._ran_on.get(run_id, []))
        last = self.last_worker(run_id)
        if last is not None and last not in workers:
            workers.append(last)
        return sorted(w for w in workers if w >= 0)

    def seconds_per_step(self) -> float | None:
        return self._seconds / self._steps if self._steps else None

    def eta_seconds(self) -> float | None:
        """Remaining steps of unfinished runs at the measured pace, spread over the workers."""
        pace = self.seconds_per_step()
        remaining = sum(max(0, r.total_steps - r.step) for r in self.runs.values() if r.status in ACTIVE)
        if remaining == 0:
            return 0.0
        if pace is None:
            return None
        return remaining * pace / max(1, len(self.workers))

    def metric_series(self, run_id: str, metric: str) -> tuple[Series | None, Series | None]:
        """(line, points) for a chart: loss shows train loss as a line and eval loss as points."""
        per_run = self.series.get(run_id, {})
        if metric == "loss":
            return per_run.get("loss"), per_run.get("eval_loss")
        if metric == "learning_rate":
            return per_run.get("learning_rate"), None
        return per_run.get(metric), per_run.get(metric)
