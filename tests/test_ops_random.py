"""1,000 random ops, legal and illegal, interleaved with quantum completions, on a fake pool."""
from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import replace

from fake_pool import FakePool

from rftui.config.yaml_config import load_experiment_file
from rftui.engine.controller import Controller
from rftui.engine.runs import STATUSES
from rftui.engine.setup import create_experiment

from engine_helpers import SAMPLES, rows

EDITS = [
    {}, {"learning_rate": 5e-4}, {"lora.r": 8}, {"learning_rate": -1}, {"lora.lora_alph": 3},
    {"max_steps": 24}, {"generation.top_p": 0.5}, {"model_kwargs.token": "x"},
]


def make_controller(tmp_path, rng, workers=2):
    spec = load_experiment_file(SAMPLES / "smoke.yaml")
    runs = tuple(replace(r, training={**r.training, "max_steps": 12}) for r in spec.runs)
    spec = replace(spec, name="rand", workdir=str(tmp_path), num_chunks=3, runs=runs)
    exp, spec, store = create_experiment(spec, rows(16), rows(4))
    return Controller(exp, spec, store, FakePool(workers, rng))


def check_invariants(ctl: Controller) -> None:
    busy_runs = list(ctl.busy.values())
    assert len(busy_runs) == len(set(busy_runs)), "a run is on two workers"
    for run_id, rec in ctl.runs.items():
        assert rec.status in STATUSES
        assert (rec.status == "running") == (run_id in busy_runs), (run_id, rec.status, ctl.busy)
        row = ctl.store.get_run(run_id)
        assert (row["status"], row["steps_done"], row["chunks_done"]) == (rec.status, rec.steps_done, rec.chunks_done)
        assert 0 <= rec.steps_done <= rec.total_steps
        assert rec.chunks_done == sum(1 for _, end in rec.bounds if end <= rec.steps_done)
        if rec.status == "completed":
            assert rec.steps_done == rec.total_steps
    # no quantum lost or run twice: each run's quanta cover contiguous, non-overlapping step ranges
    spans = defaultdict(list)
    for q in ctl.store.list_quanta():
        if q["status"] in ("done", "preempted"):
            spans[q["run_id"]].append((q["start_step"], q["end_step"]))
    for run_id, ranges in spans.items():
        rec = ctl.runs[run_id]
        for (start, end), (next_start, _) in zip(ranges, ranges[1:]):
            assert end == next_start, f"{run_id}: quanta {ranges} leave a gap or overlap"
        assert ranges[-1][1] == rec.steps_done


def test_thousand_random_ops_keep_every_invariant(tmp_path):
    rng = random.Random(1234)
    ctl = make_controller(tmp_path, rng)
    ctl.start()
    outcomes = defaultdict(int)
    bogus = [0]
    while sum(outcomes.values()) < 1000:
        if rng.random() < 0.5:
            ctl.pool.finish_one()
            ctl.step(0)
        else:
            op = rng.choice(["stop", "resume", "delete", "clone", "clone", "bogus"])
            run_ids = list(ctl.runs) + ["r99", None]
            run_id = rng.choice(run_ids)
            args = {"edits": dict(rng.choice(EDITS)), "warm_start": rng.random() < 0.5} if op == "clone" else {}
            if len(ctl.runs) > 40 and op == "clone":
                op = "stop"
            resolved = ctl.apply_op(op, run_id, args, rng.choice(["tui", "ctl", "api"]), [])
            outcomes[resolved.status] += 1
            bogus[0] += op == "bogus"  # not an op: refused but not recorded
            ctl.step(0)
        check_invariants(ctl)
    assert outcomes["applied"] > 50 and outcomes["refused"] > 300
    ops = ctl.store.list_ops()
    assert len(ops) == sum(outcomes.values()) - bogus[0]
    assert all(o["status"] in ("applied", "refused") for o in ops)
    assert all(o["reason"] for o in ops if o["status"] == "refused")
    # let everything still alive finish
    for rec in ctl.runs.values():
        if rec.status == "stopped":
            ctl.apply_op("resume", rec.run_id, {}, "api", [])
    for _ in range(2000):
        if ctl.finished:
            break
        ctl.pool.finish_one()
        ctl.step(0)
        check_invariants(ctl)
    assert ctl.finished
    assert {r.status for r in ctl.runs.values()} <= {"completed", "deleted", "failed"}


def test_refused_edit_changes_nothing(tmp_path):
    rng = random.Random(0)
    ctl = make_controller(tmp_path, rng)
    ctl.start()
    before = (ctl.store.list_runs(), sorted(p.name for p in ctl.exp.checkpoints.iterdir()))
    resolved = ctl.apply_op("clone", "r1", {"edits": {"learning_rate": 0, "lora.r": 0}}, "ctl", [])
    assert resolved.status == "refused"
    assert "learning_rate" in resolved.reason and "lora.r" in resolved.reason
    assert (ctl.store.list_runs(), sorted(p.name for p in ctl.exp.checkpoints.iterdir())) == before
    assert list(ctl.runs) == ["r1", "r2"]


def test_warm_start_needs_state_and_the_same_lora_shape(tmp_path):
    rng = random.Random(0)
    ctl = make_controller(tmp_path, rng, workers=1)
    ctl.start()
    early = ctl.apply_op("clone", "r1", {"warm_start": True}, "api", [])
    assert early.status == "refused" and "has no checkpoint yet to warm-start from: wait for its first chunk" in early.reason
    while ctl.runs["r1"].checkpoint_dir is None:
        ctl.step(0)
        ctl.pool.finish_one()
    ctl.step(0)
    reshaped = ctl.apply_op("clone", "r1", {"warm_start": True, "edits": {"lora.r": 16}}, "api", [])
    assert reshaped.status == "refused" and "lora.r" in reshaped.reason
    warm = ctl.apply_op("clone", "r1", {"warm_start": True, "edits": {"learning_rate": 5e-4}}, "api", [])
    assert warm.status == "applied" and warm.new_run_id == "r3"
    clone = ctl.runs["r3"]
    assert clone.parent == "r1" and clone.warm_start and clone.steps_done == ctl.runs["r1"].steps_done
    assert clone.spec.training["learning_rate"] == 5e-4 and clone.spec.label == "lr=5e-4"
    row = ctl.store.get_run("r3")
    assert row["parent"] == "r1" and row["warm_start"] is True
