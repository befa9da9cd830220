"""The ops table of state.db: IC ops (stop, resume, clone, delete) queued across processes.

`rftui ctl`, a watcher and the API insert an op `pending`; the controller that owns the experiment
polls for pending ones and resolves each once (applied or refused, with its reason); the submitter
waits on that answer. The controller also records the ops it applied itself (its UI's keys).
`Store` (rftui.engine.store) has these methods through `OpQueue`.
"""
from __future__ import annotations

import json
import sqlite3
import time

OP_SOURCES = ("tui", "ctl", "api", "auto")
OP_KINDS = ("stop", "resume", "clone", "delete")
OP_STATUSES = ("pending", "applied", "refused")


def check_choice(value: str, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; expected one of {', '.join(allowed)}")


def _op_row(row: sqlite3.Row) -> dict:
    d = dict(row)
    d["args"] = json.loads(d["args_json"])
    return d


class OpQueue:
    """The op methods of `Store` (they use its `_write`, `_read` and `path`)."""

    def submit_op(self, source: str, op: str, run_id: str | None, args: dict | None = None) -> int:
        """Queue an op for the controller (from any process); returns its id."""
        return self._insert_op(source, op, run_id, args, "pending", None, None)

    def record_op(self, source: str, op: str, run_id: str | None, args: dict | None,
                  status: str, reason: str | None = None, new_run_id: str | None = None) -> int:
        """Log an op the controller has already applied or refused."""
        if status == "pending":
            raise ValueError("record_op is for resolved ops; use submit_op to queue one")
        return self._insert_op(source, op, run_id, args, status, reason, new_run_id)

    def _insert_op(self, source, op, run_id, args, status, reason, new_run_id) -> int:
        check_choice(source, OP_SOURCES, "op source")
        check_choice(op, OP_KINDS, "op")
        check_choice(status, OP_STATUSES, "op status")
        now = time.time()
        with self._write() as c:
            return c.execute(
                "INSERT INTO ops(created_at, source, op, run_id, args_json, status, reason,"
                " new_run_id, resolved_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (now, source, op, run_id, json.dumps(args or {}), status, reason, new_run_id,
                 None if status == "pending" else now)).lastrowid

    def pending_ops(self) -> list[dict]:
        return [_op_row(r) for r in
                self._read("SELECT * FROM ops WHERE status = 'pending' ORDER BY id")]

    def resolve_op(self, op_id: int, status: str, reason: str | None = None,
                   new_run_id: str | None = None, run_id: str | None = None) -> None:
        """Mark a pending op applied or refused. An op is resolved once only. `run_id`, when given,
        replaces the run as the submitter typed it with the run it resolved to (the controller's)."""
        if status not in ("applied", "refused"):
            raise ValueError(f"an op resolves to 'applied' or 'refused', not {status!r}")
        with self._write() as c:
            cur = c.execute("UPDATE ops SET status = ?, reason = ?, new_run_id = ?, run_id = COALESCE(?, run_id),"
                            " resolved_at = ? WHERE id = ? AND status = 'pending'",
                            (status, reason, new_run_id, run_id, time.time(), op_id))
            if cur.rowcount == 0:
                raise KeyError(f"op {op_id} is not pending in {self.path}")

    def withdraw_op(self, op_id: int, reason: str) -> bool:
        """Refuse a still-pending op on the submitter's side (its controller went away without reading
        it). True when this call resolved it; False when the controller had already answered."""
        try:
            self.resolve_op(op_id, "refused", reason)
        except KeyError:
            return False
        return True

    def get_op(self, op_id: int) -> dict | None:
        rows = self._read("SELECT * FROM ops WHERE id = ?", (op_id,))
        return _op_row(rows[0]) if rows else None

    def list_ops(self) -> list[dict]:
        return [_op_row(r) for r in self._read("SELECT * FROM ops ORDER BY id")]

    def wait_op(self, op_id: int, timeout: float, poll: float = 0.05) -> dict:
        """Poll until the op is resolved or `timeout` seconds pass; returns the op as it
        stands (status still 'pending' on timeout, e.g. when no controller is running)."""
        deadline = time.monotonic() + timeout
        while True:
            op = self.get_op(op_id)
            if op is None:
                raise KeyError(f"no op {op_id} in {self.path}")
            if op["status"] != "pending" or time.monotonic() >= deadline:
                return op
            time.sleep(min(poll, max(0.0, deadline - time.monotonic())))
