"""state.db store: schema, CRUD, metrics replacement, ops across processes, damage handling."""
from __future__ import annotations

import multiprocessing as mp
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from rftui.engine.store import SCHEMA_VERSION, Store
from rftui.errors import ExperimentError


@pytest.fixture
def db(tmp_path):
    store = Store.create(tmp_path / "exp" / "state.db")
    yield store
    store.close()


def _add(store, run_id, ord, **kw):
    store.add_run(run_id, ord=ord, label=f"label-{run_id}", spec={"lr": 1e-4 * (ord + 1)},
                  total_steps=40, num_chunks=4, **kw)


# ---- create / open ------------------------------------------------------------------
def test_create_open_round_trip(tmp_path):
    path = tmp_path / "state.db"
    with Store.create(path) as s:
        s.set_meta("name", "exp1")
        s.set_meta("config", {"runs": [{"lr": 0.001}], "seed": 42})
        s.set_meta("status", "created")
        _add(s, "r1", 0)
    with Store.open(path) as s:
        assert s.get_meta("name") == "exp1"
        assert s.get_meta("config") == {"runs": [{"lr": 0.001}], "seed": 42}
        assert s.get_meta("missing", default=7) == 7
        assert s.meta() == {"name": "exp1", "config": {"runs": [{"lr": 0.001}], "seed": 42},
                            "status": "created"}
        assert s.get_run("r1")["spec"] == {"lr": 1e-4}
    with Store.open(path, readonly=True) as s:
        assert s.get_meta("name") == "exp1"
        with pytest.raises(ExperimentError):
            s.set_meta("name", "other")


def test_create_refuses_existing_file(tmp_path):
    path = tmp_path / "state.db"
    Store.create(path).close()
    with pytest.raises(ExperimentError, match=str(path)):
        Store.create(path)


def test_wal_mode_and_schema_version(db):
    conn = sqlite3.connect(db.path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"experiment", "runs", "quanta", "metrics", "ops"} <= tables
    finally:
        conn.close()
    assert db._conn().execute("PRAGMA busy_timeout").fetchone()[0] >= 5000


def test_open_missing_path(tmp_path):
    path = tmp_path / "nope" / "state.db"
    with pytest.raises(ExperimentError, match="no state.db") as info:
        Store.open(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("readonly", [False, True])
def test_open_corrupted_file(tmp_path, readonly):
    path = tmp_path / "state.db"
    path.write_bytes(b"this is not sqlite at all \x00\xff" * 200)
    with pytest.raises(ExperimentError) as info:
        Store.open(path, readonly=readonly)
    msg = str(info.value)
    assert str(path) in msg and "damaged" in msg and "--new" in msg


def test_open_damaged_pages(tmp_path):
    path = tmp_path / "state.db"
    with Store.create(path) as s:
        for i in range(50):
            _add(s, f"r{i}", i)
    raw = bytearray(path.read_bytes())
    raw[4096:] = b"\xa5" * (len(raw) - 4096)  # keep the header page, trash the rest
    path.write_bytes(bytes(raw))
    with pytest.raises(ExperimentError, match="damaged"):
        Store.open(path)


def test_open_other_schema_version(tmp_path):
    path = tmp_path / "state.db"
    Store.create(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(ExperimentError, match="schema version") as info:
        Store.open(path)
    assert str(path) in str(info.value)


def test_open_foreign_sqlite_file(tmp_path):
    path = tmp_path / "state.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t(x)")
    conn.commit()
    conn.close()
    with pytest.raises(ExperimentError, match="not an rftui state.db"):
        Store.open(path)


# ---- runs ---------------------------------------------------------------------------
def test_runs_crud_and_ordering(db):
    assert db.next_run_ord() == 0
    _add(db, "b", 1)
    _add(db, "a", 0)
    _add(db, "c", db.next_run_ord(), parent="a", warm_start=True)
    assert db.next_run_ord() == 3
    assert [r["run_id"] for r in db.list_runs()] == ["a", "b", "c"]
    c = db.get_run("c")
    assert c["parent"] == "a" and c["warm_start"] is True and c["status"] == "pending"
    assert c["steps_done"] == 0 and c["total_steps"] == 40 and c["num_chunks"] == 4

    before = db.get_run("a")["updated_at"]
    db.update_run("a", status="running", steps_done=10, chunks_done=1, worker_id=0,
                  checkpoint_dir="checkpoints/a", spec={"lr": 0.5})
    a = db.get_run("a")
    assert (a["status"], a["steps_done"], a["chunks_done"], a["worker_id"]) == ("running", 10, 1, 0)
    assert a["spec"] == {"lr": 0.5} and a["updated_at"] >= before

    db.update_run("b", status="deleted", reason="user")
    assert [r["run_id"] for r in db.list_runs(include_deleted=False)] == ["a", "c"]
    assert len(db.list_runs()) == 3
    assert db.get_run("zzz") is None

    with pytest.raises(ValueError, match="unknown run field"):
        db.update_run("a", colour="red")
    with pytest.raises(ValueError, match="run status"):
        db.update_run("a", status="exploded")
    with pytest.raises(KeyError):
        db.update_run("zzz", status="running")
    with pytest.raises(ValueError, match="already exists"):
        _add(db, "a", 9)


# ---- quanta -------------------------------------------------------------------------
def test_quanta_lifecycle_and_lost(db):
    _add(db, "a", 0)
    _add(db, "b", 1)
    q1 = db.start_quantum("a", 0, 0, 0, 10)
    db.finish_quantum(q1, "done", train_seconds=1.5, switch_seconds=0.01, eval_seconds=0.2,
                      tokens=1234)
    q2 = db.start_quantum("b", 0, 1, 0, 10)
    q3 = db.start_quantum("a", 1, 0, 10, 20, attempt=2)
    done = db.list_quanta("a")[0]
    assert done["status"] == "done" and done["tokens"] == 1234 and done["ended_at"] is not None
    assert [q["id"] for q in db.list_quanta("a")] == [q1, q3]
    assert db.list_quanta("a")[1]["attempt"] == 2

    assert db.mark_running_quanta_lost() == 2
    statuses = {q["id"]: q["status"] for q in db.list_quanta()}
    assert statuses == {q1: "done", q2: "lost", q3: "lost"}
    assert db.mark_running_quanta_lost() == 0

    with pytest.raises(ValueError):
        db.finish_quantum(q1, "weird")
    with pytest.raises(ValueError):
        db.finish_quantum(q1, "done", bogus=1)


# ---- metrics ------------------------------------------------------------------------
def test_metrics_replace_delete_last(db):
    _add(db, "a", 0)
    for step in range(1, 6):
        db.add_metrics("a", step, {"loss": 10.0 - step, "lr": 0.1}, wall_time=float(step))
    db.add_metrics("a", 5, {"eval_loss": 3.0}, kind="eval")
    # redo steps 4..5 with new values: one row per (run, step, name), new value wins
    assert db.delete_metrics_after("a", 3) == 5
    assert db.metric_series("a", "loss") == [(1, 9.0), (2, 8.0), (3, 7.0)]
    db.add_metrics("a", 3, {"loss": 7.5})
    db.add_metrics_batch([("a", 4, "loss", 6.25, "train", 4.0), ("a", 4, "loss", 6.5, "train", 4.0)])
    assert db.metric_series("a", "loss") == [(1, 9.0), (2, 8.0), (3, 7.5), (4, 6.5)]
    rows = db._conn().execute(
        "SELECT COUNT(*) FROM metrics WHERE run_id='a' AND step=3 AND name='loss'").fetchone()
    assert rows[0] == 1
    assert db.last_metrics("a") == {"loss": 6.5, "lr": 0.1}
    db.add_metrics("a", 4, {"eval_loss": 2.5}, kind="eval")
    assert db.last_metrics("a")["eval_loss"] == 2.5
    assert db.last_metrics("nobody") == {}


def test_all_metrics_since_seq(db):
    _add(db, "a", 0)
    db.add_metrics("a", 1, {"loss": 2.0})
    db.add_metrics("a", 2, {"loss": 1.5})
    first = db.all_metrics()
    assert [(p["step"], p["value"]) for p in first] == [(1, 2.0), (2, 1.5)]
    mark = first[-1]["seq"]
    assert db.all_metrics(mark) == []
    db.delete_metrics_after("a", 1)  # the highest seq is gone; new points must still be newer
    db.add_metrics("a", 2, {"loss": 1.25})
    db.add_metrics("a", 1, {"loss": 2.5})  # a replaced point comes back with a new seq
    new = db.all_metrics(mark)
    assert [(p["step"], p["value"]) for p in new] == [(2, 1.25), (1, 2.5)]
    assert all(p["seq"] > mark for p in new) and new[0]["seq"] < new[1]["seq"]


# ---- ops ----------------------------------------------------------------------------
def test_ops_in_process(db):
    _add(db, "a", 0)
    op = db.submit_op("tui", "clone", "a", {"edits": {"lr": 0.01}, "warm_start": True})
    pending = db.pending_ops()
    assert [p["id"] for p in pending] == [op]
    assert pending[0]["args"] == {"edits": {"lr": 0.01}, "warm_start": True}
    db.resolve_op(op, "applied", new_run_id="a-clone")
    assert db.pending_ops() == []
    got = db.get_op(op)
    assert got["status"] == "applied" and got["new_run_id"] == "a-clone" and got["resolved_at"]
    with pytest.raises(KeyError):
        db.resolve_op(op, "refused")  # resolved once only
    rec = db.record_op("auto", "stop", "a", {}, "refused", reason="already stopped")
    assert [o["id"] for o in db.list_ops()] == [op, rec]
    assert db.get_op(rec)["reason"] == "already stopped"
    with pytest.raises(ValueError):
        db.submit_op("tui", "explode", "a", {})
    # no controller: wait_op times out and hands back the pending op
    late = db.submit_op("ctl", "stop", "a", {})
    t0 = time.monotonic()
    assert db.wait_op(late, timeout=0.2)["status"] == "pending"
    assert time.monotonic() - t0 < 2


def _ctl_child(path, queue):
    store = Store.open(path)
    op_id = store.submit_op("ctl", "stop", "a", {"why": "test"})
    queue.put(op_id)
    queue.put(store.wait_op(op_id, timeout=20))
    store.close()


def test_ops_across_processes(db):
    _add(db, "a", 0)
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_ctl_child, args=(str(db.path), queue))
    child.start()
    try:
        op_id = queue.get(timeout=30)
        deadline = time.monotonic() + 10
        while not db.pending_ops() and time.monotonic() < deadline:
            time.sleep(0.02)
        pending = db.pending_ops()
        assert [(p["id"], p["op"], p["source"], p["args"]) for p in pending] == \
            [(op_id, "stop", "ctl", {"why": "test"})]
        db.resolve_op(op_id, "refused", reason="run a is not running")
        result = queue.get(timeout=30)
        assert result["status"] == "refused" and result["reason"] == "run a is not running"
    finally:
        child.join(timeout=30)
    assert child.exitcode == 0


# ---- concurrency --------------------------------------------------------------------
_READER = """
import sys, time
from rftui.engine.store import Store
s = Store.open(sys.argv[1], readonly=True)
n = 0
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    s.list_runs(); s.all_metrics(); s.last_metrics("a"); n += 1
s.close()
print(n)
"""


def test_concurrent_reader_while_writing(db):
    _add(db, "a", 0)
    reader = subprocess.Popen([sys.executable, "-c", _READER, str(db.path), "1.5"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    errors = []

    def thread_reader():  # a second thread of this process (the TUI) reading meanwhile
        try:
            end = time.monotonic() + 1.0
            while time.monotonic() < end:
                db.list_runs()
                db.metric_series("a", "loss")
        except Exception as e:  # noqa: BLE001 - surfaced by the assert below
            errors.append(e)

    t = threading.Thread(target=thread_reader)
    t.start()
    step, end = 0, time.monotonic() + 1.5
    while time.monotonic() < end:
        step += 1
        db.add_metrics("a", step, {"loss": 1.0 / step, "lr": 0.1})
        db.update_run("a", steps_done=step)
    t.join()
    out, err = reader.communicate(timeout=30)
    assert reader.returncode == 0, err
    assert int(out) > 0 and not errors
    assert db.get_run("a")["steps_done"] == step


def test_two_writers_do_not_lock(tmp_path):
    path = tmp_path / "state.db"
    Store.create(path).close()
    code = ("import sys\nfrom rftui.engine.store import Store\ns = Store.open(sys.argv[1])\n"
            "for i in range(100): s.submit_op('ctl', 'stop', 'a', {'i': i})\ns.close()\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path)], stderr=subprocess.PIPE,
                              text=True) for _ in range(3)]
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    with Store.open(path) as s:
        assert len(s.pending_ops()) == 300


def test_import_does_not_pull_torch():
    code = "import sys, rftui.engine.store; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
