"""`rftui watch` on a chunk lost with its process (kill -9, then `rftui resume` marks it lost): the line
says where the run restarts (the chunk's start, its checkpoint), not the step the chunk was heading for."""
from __future__ import annotations

import sqlite3

from engine_helpers import trained_experiment

from rftui.engine import events as ev
from rftui.engine.fake_backend import fake_loss
from rftui.engine.setup import open_experiment
from rftui.ui.model import describe
from rftui.ui.watch import WatchSource


def test_a_lost_chunk_restarts_from_its_checkpoint(tmp_path):
    controller = trained_experiment(tmp_path, "cut", num_chunks=2, max_steps=4)
    cut = controller.store
    try:
        with sqlite3.connect(cut.path) as db:  # r1's chunk 2 (steps 2..4) died with its process
            db.execute("DELETE FROM quanta WHERE run_id = 'r1' AND chunk = 1")
        cut.delete_metrics_after("r1", 2)
        cut.update_run("r1", status="waiting", steps_done=2, chunks_done=1, worker_id=None)
        cut.start_quantum("r1", 1, 0, 2, 4)
        assert cut.mark_running_quanta_lost() == 1  # what resume does first
        exp, spec, store = open_experiment(str(controller.exp.root))
        source = WatchSource(exp, spec, store, interval=0.05)
        try:
            reports = {(e.run_id, e.chunk): e for e in source.open().events if isinstance(e, ev.QuantumReport)}
        finally:
            source.close()
            store.close()
    finally:
        cut.close()
    lost = reports[("r1", 1)]
    assert (lost.preempted, lost.steps_done, lost.total_steps) == ("lost", 2, 4)
    assert lost.metrics["loss"] == fake_loss("r1", 2)  # the state it restarts from
    line = describe(lost, {})
    assert line.level == "warning"
    assert line.text.startswith("r1 chunk 2/2 lost (its worker or process died mid-chunk): restarts from its "
                                f"checkpoint at step 2/4, loss {fake_loss('r1', 2):.3f}, eval loss ")
    done = reports[("r2", 1)]  # a finished chunk still reports its end
    assert (done.preempted, done.steps_done) == (None, 4)
    first = describe(ev.QuantumReport("r1", 0, 0, 2, 0, 4, 0.0, 0.0, 0.0, 0.0, "lost", {}), {})
    assert first.text == "r1 chunk 1/2 lost (its worker or process died mid-chunk): restarts from step 0/4"
