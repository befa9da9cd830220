"""state.db: the experiment's SQLite store, its source of truth for resume.

Several processes share the file: the controller writes, while `rftui ctl`, `show` and
`watch` read it and insert ops. So the database runs in WAL mode (readers never block the
writer), every write is one `BEGIN IMMEDIATE` transaction, and each connection waits up to
`BUSY_TIMEOUT_MS` for the write lock instead of failing with "database is locked".
Inside one process each thread gets its own connection (the controller thread writes, a
TUI thread reads). Stdlib only: this module must stay importable without torch.
The ops table's methods (the IC op queue) are in rftui.engine.op_queue.
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from rftui.engine.op_queue import OpQueue, check_choice as _check
from rftui.errors import ExperimentError

SCHEMA_VERSION = 1
APPLICATION_ID = 0x52465455  # "RFTU": marks the file as an rftui state.db
BUSY_TIMEOUT_MS = 5000

RUN_STATUSES = ("pending", "running", "waiting", "completed", "stopped", "failed", "deleted")
QUANTUM_STATUSES = ("running", "done", "preempted", "failed", "lost")

_SCHEMA = """
CREATE TABLE experiment (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY, ord INTEGER NOT NULL, label TEXT, spec_json TEXT NOT NULL,
    status TEXT NOT NULL, parent TEXT, warm_start INTEGER NOT NULL DEFAULT 0,
    steps_done INTEGER NOT NULL DEFAULT 0, total_steps INTEGER NOT NULL,
    chunks_done INTEGER NOT NULL DEFAULT 0, num_chunks INTEGER NOT NULL,
    checkpoint_dir TEXT, adapter_dir TEXT, reason TEXT, worker_id INTEGER,
    mlflow_run_id TEXT, created_at REAL NOT NULL, updated_at REAL NOT NULL);
CREATE TABLE quanta (
    id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, chunk INTEGER NOT NULL,
    worker_id INTEGER, start_step INTEGER NOT NULL, end_step INTEGER NOT NULL,
    status TEXT NOT NULL, started_at REAL NOT NULL, ended_at REAL,
    train_seconds REAL, switch_seconds REAL, eval_seconds REAL, tokens INTEGER,
    attempt INTEGER NOT NULL DEFAULT 1);
CREATE INDEX quanta_by_run ON quanta(run_id, id);
CREATE TABLE metrics (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, step INTEGER NOT NULL,
    name TEXT NOT NULL, value REAL, kind TEXT NOT NULL DEFAULT 'train', wall_time REAL,
    UNIQUE (run_id, step, name));
CREATE INDEX metrics_by_name ON metrics(run_id, name, step);
CREATE TABLE ops (
    id INTEGER PRIMARY KEY AUTOINCREMENT, created_at REAL NOT NULL, source TEXT NOT NULL,
    op TEXT NOT NULL, run_id TEXT, args_json TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL, reason TEXT, new_run_id TEXT, resolved_at REAL);
CREATE INDEX ops_by_status ON ops(status, id);
"""
# metrics.seq only ever grows (AUTOINCREMENT never reuses a value), so a watcher can poll
# "points since seq X"; INSERT OR REPLACE on the unique key gives a redone point a new seq.

# Engine warnings, kept so that `rftui watch` shows them too. Added after schema version 1 shipped:
# IF NOT EXISTS lets a writable open add it to an older state.db (same version, one table more),
# and readers treat a missing table as no warnings. One row per (run, message); a NULL run_id is
# folded to '' in the index because UNIQUE treats NULLs as all different.
_WARNINGS_SCHEMA = """
CREATE TABLE IF NOT EXISTS warnings (
    id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT, message TEXT NOT NULL,
    created_at REAL NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS warnings_once ON warnings(COALESCE(run_id, ''), message);
"""

_RUN_FIELDS = frozenset({
    "ord", "label", "spec", "spec_json", "status", "parent", "warm_start", "steps_done",
    "total_steps", "chunks_done", "num_chunks", "checkpoint_dir", "adapter_dir", "reason",
    "worker_id", "mlflow_run_id"})
_QUANTUM_FINISH_FIELDS = frozenset({
    "end_step", "ended_at", "train_seconds", "switch_seconds", "eval_seconds", "tokens"})


def _run_row(row: sqlite3.Row) -> dict:
    d = dict(row)
    d["spec"] = json.loads(d["spec_json"])
    d["warm_start"] = bool(d["warm_start"])
    return d


class Store(OpQueue):
    """One open state.db. Build it with `Store.create` or `Store.open`, never directly."""

    def __init__(self, path: Path, readonly: bool) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._closed = False

    # ---- opening and closing -------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike) -> "Store":
        """Make a new, empty state.db at `path`; refuse if any file is already there."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:  # O_EXCL: two processes racing to create the same experiment cannot both win
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        except FileExistsError:
            raise ExperimentError(
                f"state.db already exists at {path}; resume that experiment "
                f"(rftui resume) or pick another experiment name") from None
        store = cls(path, readonly=False)
        try:
            with store._write() as conn:  # executescript would commit early: run one by one
                for statement in filter(str.strip, (_SCHEMA + _WARNINGS_SCHEMA).split(";")):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        except BaseException:
            store.close()
            path.unlink(missing_ok=True)
            raise
        return store

    @classmethod
    def open(cls, path: str | os.PathLike, readonly: bool = False) -> "Store":
        """Open an existing state.db; raise ExperimentError if it is missing, foreign or damaged."""
        path = Path(path)
        if not path.is_file():
            raise ExperimentError(
                f"no state.db at {path}; check the experiment name and --workdir, "
                f"or start a new experiment with rftui run")
        store = cls(path, readonly=readonly)
        try:
            store._validate()
            if not readonly:
                store._add_missing_tables()
        except BaseException:
            store.close()
            raise
        return store

    def _validate(self) -> None:
        try:
            conn = self._conn()
            if not self.readonly:
                problems = [r[0] for r in conn.execute("PRAGMA quick_check").fetchall()]
                if problems != ["ok"]:
                    raise sqlite3.DatabaseError("; ".join(problems[:3]))
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError as e:
            raise self._damaged(e) from e
        if app_id != APPLICATION_ID:
            raise ExperimentError(
                f"{self.path} is an SQLite file but not an rftui state.db; "
                f"point rftui at an experiment directory or start a new experiment with --new")
        if version != SCHEMA_VERSION:
            raise ExperimentError(
                f"state.db at {self.path} has schema version {version}, this rftui reads "
                f"version {SCHEMA_VERSION}; use the rftui release that wrote it, "
                f"or start a new experiment with --new")

    def _add_missing_tables(self) -> None:
        """Give a state.db from an older rftui the tables added since (checked first, so that
        opening a current one takes no write lock)."""
        if self._read("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'warnings'"):
            return
        with self._write() as conn:
            for statement in filter(str.strip, _WARNINGS_SCHEMA.split(";")):
                conn.execute(statement)

    def _damaged(self, err: BaseException) -> ExperimentError:
        return ExperimentError(
            f"state.db at {self.path} is damaged ({err}); restore it from a backup "
            f"or start a new experiment with --new")

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use."""
        if self._closed:
            raise ExperimentError(f"state.db at {self.path} was closed; open it again")
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self.readonly:
                conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True,
                                       isolation_level=None, check_same_thread=False)
            else:
                conn = sqlite3.connect(self.path, isolation_level=None,
                                       check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if not self.readonly:
                try:
                    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                except sqlite3.DatabaseError as e:
                    conn.close()
                    raise self._damaged(e) from e
                if mode.lower() != "wal":
                    conn.close()
                    raise ExperimentError(
                        f"state.db at {self.path} cannot use WAL mode (got {mode!r}); "
                        f"put the experiment on a local filesystem")
            self._local.conn = conn
            self._local.sync = None
            with self._conns_lock:
                self._conns.append(conn)
        return conn

    def close(self) -> None:
        """Close every thread's connection. Safe to call twice."""
        with self._conns_lock:
            conns, self._conns = self._conns, []
            self._closed = True
        for conn in conns:
            conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- transactions --------------------------------------------------------------
    @contextmanager
    def _write(self, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """One atomic write. IMMEDIATE takes the write lock up front (waiting up to the busy
        timeout), so a transaction never fails half way because another writer got in.
        `durable` commits with synchronous=FULL (survives power loss); metrics use NORMAL,
        which still survives a crash or kill -9 of the process."""
        conn = self._conn()
        sync = "FULL" if durable else "NORMAL"
        try:
            if self._local.sync != sync:
                conn.execute(f"PRAGMA synchronous = {sync}")
                self._local.sync = sync
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.DatabaseError as e:
            raise self._busy_or_damaged(e) from e
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as e:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(e, sqlite3.DatabaseError) and not isinstance(e, sqlite3.IntegrityError):
                raise self._busy_or_damaged(e) from e
            raise

    def _read(self, sql: str, params: tuple | list = ()) -> list[sqlite3.Row]:
        try:
            return self._conn().execute(sql, params).fetchall()
        except sqlite3.DatabaseError as e:
            raise self._busy_or_damaged(e) from e

    def _busy_or_damaged(self, err: sqlite3.DatabaseError) -> ExperimentError:
        text = str(err)
        if self.readonly and "readonly" in text:
            return ExperimentError(f"state.db at {self.path} was opened read-only; "
                                   f"open it with readonly=False to change it")
        if "locked" in text or "busy" in text:
            return ExperimentError(f"state.db at {self.path} is not writable now ({text}); "
                                   f"check that no other program holds it and try again")
        return self._damaged(err)

    # ---- experiment metadata (JSON values) -----------------------------------------
    def set_meta(self, key: str, value: Any) -> None:
        with self._write() as c:
            c.execute("INSERT OR REPLACE INTO experiment(key, value) VALUES (?, ?)",
                      (key, json.dumps(value)))

    def get_meta(self, key: str, default: Any = None) -> Any:
        rows = self._read("SELECT value FROM experiment WHERE key = ?", (key,))
        return json.loads(rows[0][0]) if rows else default

    def meta(self) -> dict[str, Any]:
        return {r[0]: json.loads(r[1]) for r in self._read("SELECT key, value FROM experiment")}

    # ---- runs ------------------------------------------------------------------------
    def add_run(self, run_id: str, *, ord: int, label: str, spec: dict, total_steps: int,
                num_chunks: int, status: str = "pending", parent: str | None = None,
                warm_start: bool = False) -> None:
        _check(status, RUN_STATUSES, "run status")
        now = time.time()
        try:
            with self._write() as c:
                c.execute(
                    "INSERT INTO runs(run_id, ord, label, spec_json, status, parent, warm_start,"
                    " total_steps, num_chunks, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (run_id, ord, label, json.dumps(spec), status, parent, int(warm_start),
                     total_steps, num_chunks, now, now))
        except sqlite3.IntegrityError:
            raise ValueError(f"run {run_id!r} already exists in {self.path}") from None

    def update_run(self, run_id: str, **fields: Any) -> None:
        """Set some columns of one run (`spec=` takes a dict); updated_at is set for you."""
        unknown = set(fields) - _RUN_FIELDS
        if unknown:
            raise ValueError(f"unknown run field(s): {', '.join(sorted(unknown))}")
        if "status" in fields:
            _check(fields["status"], RUN_STATUSES, "run status")
        if "spec" in fields:
            fields["spec_json"] = json.dumps(fields.pop("spec"))
        if "warm_start" in fields:
            fields["warm_start"] = int(bool(fields["warm_start"]))
        fields["updated_at"] = time.time()
        assignments = ", ".join(f"{name} = ?" for name in fields)
        with self._write() as c:
            cur = c.execute(f"UPDATE runs SET {assignments} WHERE run_id = ?",
                            (*fields.values(), run_id))
            if cur.rowcount == 0:
                raise KeyError(f"no run {run_id!r} in {self.path}")

    def get_run(self, run_id: str) -> dict | None:
        rows = self._read("SELECT * FROM runs WHERE run_id = ?", (run_id,))
        return _run_row(rows[0]) if rows else None

    def list_runs(self, include_deleted: bool = True) -> list[dict]:
        where = "" if include_deleted else "WHERE status != 'deleted'"
        return [_run_row(r) for r in self._read(f"SELECT * FROM runs {where} ORDER BY ord, rowid")]

    def next_run_ord(self) -> int:
        return self._read("SELECT COALESCE(MAX(ord) + 1, 0) FROM runs")[0][0]

    # ---- quanta ----------------------------------------------------------------------
    def start_quantum(self, run_id: str, chunk: int, worker_id: int | None, start_step: int,
                      end_step: int, attempt: int = 1) -> int:
        with self._write() as c:
            cur = c.execute(
                "INSERT INTO quanta(run_id, chunk, worker_id, start_step, end_step, status,"
                " started_at, attempt) VALUES (?, ?, ?, ?, ?, 'running', ?, ?)",
                (run_id, chunk, worker_id, start_step, end_step, time.time(), attempt))
            return cur.lastrowid

    def finish_quantum(self, quantum_id: int, status: str, **timings: Any) -> None:
        """Close a quantum: status plus any of end_step, ended_at, train_seconds,
        switch_seconds, eval_seconds, tokens."""
        _check(status, QUANTUM_STATUSES, "quantum status")
        unknown = set(timings) - _QUANTUM_FINISH_FIELDS
        if unknown:
            raise ValueError(f"unknown quantum field(s): {', '.join(sorted(unknown))}")
        timings.setdefault("ended_at", time.time())
        fields = {"status": status, **timings}
        assignments = ", ".join(f"{name} = ?" for name in fields)
        with self._write() as c:
            cur = c.execute(f"UPDATE quanta SET {assignments} WHERE id = ?",
                            (*fields.values(), quantum_id))
            if cur.rowcount == 0:
                raise KeyError(f"no quantum {quantum_id} in {self.path}")

    def list_quanta(self, run_id: str | None = None) -> list[dict]:
        if run_id is None:
            return [dict(r) for r in self._read("SELECT * FROM quanta ORDER BY id")]
        return [dict(r) for r in
                self._read("SELECT * FROM quanta WHERE run_id = ? ORDER BY id", (run_id,))]

    def mark_running_quanta_lost(self) -> int:
        """After a crash: quanta still 'running' never finished; mark them 'lost'."""
        with self._write() as c:
            return c.execute("UPDATE quanta SET status = 'lost', ended_at = ?"
                             " WHERE status = 'running'", (time.time(),)).rowcount

    # ---- metrics ---------------------------------------------------------------------
    def add_metrics(self, run_id: str, step: int, metrics: dict[str, float],
                    kind: str = "train", wall_time: float | None = None) -> None:
        wall = time.time() if wall_time is None else wall_time
        self.add_metrics_batch([(run_id, step, name, value, kind, wall)
                                for name, value in metrics.items()])

    def add_metrics_batch(self, points: list[tuple]) -> None:
        """Points are (run_id, step, name, value, kind, wall_time); a point that already
        exists for (run_id, step, name) is replaced, never duplicated."""
        if not points:
            return
        with self._write(durable=False) as c:
            c.executemany("INSERT OR REPLACE INTO metrics(run_id, step, name, value, kind,"
                          " wall_time) VALUES (?, ?, ?, ?, ?, ?)", points)

    def delete_metrics_after(self, run_id: str, step: int) -> int:
        """Drop the run's points with step > `step` (before a quantum is redone)."""
        with self._write() as c:
            return c.execute("DELETE FROM metrics WHERE run_id = ? AND step > ?",
                             (run_id, step)).rowcount

    def last_metrics(self, run_id: str, max_step: int | None = None) -> dict[str, float]:
        """Each metric's value at its latest step (at most `max_step` when given)."""
        limit = 2**62 if max_step is None else max_step
        rows = self._read(
            "SELECT m.name, m.value FROM metrics m"
            " JOIN (SELECT name, MAX(step) AS step FROM metrics WHERE run_id = ? AND step <= ? GROUP BY name) l"
            " ON m.name = l.name AND m.step = l.step WHERE m.run_id = ?", (run_id, limit, run_id))
        return {r[0]: r[1] for r in rows}

    def metric_series(self, run_id: str, name: str) -> list[tuple[int, float]]:
        rows = self._read("SELECT step, value FROM metrics WHERE run_id = ? AND name = ?"
                          " ORDER BY step", (run_id, name))
        return [(r[0], r[1]) for r in rows]

    def all_metrics(self, since_rowid: int = 0) -> list[dict]:
        """Points whose `seq` is above `since_rowid`, oldest first. A watcher passes the
        largest seq it has seen; a replaced point comes back with a new, larger seq."""
        return [dict(r) for r in self._read(
            "SELECT seq, run_id, step, name, value, kind, wall_time FROM metrics"
            " WHERE seq > ? ORDER BY seq", (since_rowid,))]

    # ---- warnings --------------------------------------------------------------------
    def add_warning(self, message: str, run_id: str | None = None) -> bool:
        """Keep an engine warning; False when this run (or none) already gave this message."""
        with self._write(durable=False) as c:  # a lost warning after a power cut is no loss
            return c.execute("INSERT OR IGNORE INTO warnings(run_id, message, created_at)"
                             " VALUES (?, ?, ?)", (run_id, message, time.time())).rowcount > 0

    def warnings(self, since_id: int = 0) -> list[dict]:
        """Warnings whose id is above `since_id`, oldest first (none from an older state.db that
        has no warnings table: a read-only reader cannot add it)."""
        try:
            rows = self._conn().execute(
                "SELECT id, run_id, message, created_at FROM warnings WHERE id > ? ORDER BY id",
                (since_id,)).fetchall()
        except sqlite3.OperationalError as e:
            if "no such table" in str(e):
                return []
            raise self._busy_or_damaged(e) from e
        except sqlite3.DatabaseError as e:
            raise self._busy_or_damaged(e) from e
        return [dict(r) for r in rows]
