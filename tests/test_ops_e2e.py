"""IC ops on the tiny model: stop+resume is bitwise invisible; warm clones continue, cold clones restart."""
from __future__ import annotations

import os
from dataclasses import replace

from safetensors.torch import load_file

from engine_helpers import SAMPLES, drive
from rftui.config.yaml_config import load_experiment_file
from rftui.data.sources import load_rows
from rftui.engine.assemble import make_controller
from rftui.engine.messages import QuantumDone, StepLogged
from rftui.engine.setup import create_experiment


def constant_answer_rows(n):
    """Rows whose answer is always the same: fine-tuning learns it in a few steps (a clear loss drop)."""
    return [{"instruction": f"Where is my order number {1000 + i}?",
             "response": "Thank you for reaching out. A specialist will email you within one business day."}
            for i in range(n)]


def tiny_experiment(tmp_path, name, *, max_steps=8, num_chunks=2, lr=1e-3, dropout=0.1, runs=1, rows=None):
    spec = load_experiment_file(SAMPLES / "smoke.yaml")
    base = spec.runs[0]
    chosen = tuple(replace(base, run_id=f"r{i + 1}", training={**base.training, "max_steps": max_steps,
                                                              "learning_rate": lr, "eval_strategy": "no"},
                           lora={**base.lora, "lora_dropout": dropout}, generation={"max_new_tokens": 2})
                   for i in range(runs))
    spec = replace(spec, name=name, workdir=str(tmp_path), num_chunks=num_chunks, runs=chosen, eval_num_samples=0)
    base_dir = SAMPLES
    train = rows or load_rows({"path": "data/support.jsonl", "select": [0, 32]}, base_dir)
    evals = load_rows({"path": "data/support.jsonl", "select": [300, 304]}, base_dir)
    exp, spec, store = create_experiment(spec, train, evals)
    return make_controller(exp, spec, store, workers=1, device="cpu", tracking=False,
                           backend_options={"num_threads": 1})


def losses(ctl, run_id):
    return [v for _, v in ctl.store.metric_series(run_id, "loss")]


def adapter(ctl, run_id):
    return load_file(str(ctl.exp.adapters / run_id / "adapter_model.safetensors"))


def test_stop_then_resume_is_bitwise_equal_to_never_stopping(tmp_path):
    plain = tiny_experiment(tmp_path, "plain")
    try:
        drive(plain, limit=300)
    finally:
        plain.close()
    stopped = tiny_experiment(tmp_path, "stopped")
    state = {"stop_sent": False, "resumed": False}

    def on_events(ctl, events):
        for event in events:
            if isinstance(event, StepLogged) and event.step == 2 and not state["stop_sent"]:
                state["stop_sent"] = True
                ctl.apply_op("stop", "r1", {}, "api", [])
            if isinstance(event, QuantumDone) and event.preempted == "stop":
                assert event.steps_done < 4  # within one optimizer step, not at the chunk's end
                ctl.apply_op("resume", "r1", {}, "api", [])
                state["resumed"] = True

    try:
        drive(stopped, limit=300, on_events=on_events)
    finally:
        stopped.close()
    assert state == {"stop_sent": True, "resumed": True}
    assert losses(stopped, "r1") == losses(plain, "r1")
    a, b = adapter(stopped, "r1"), adapter(plain, "r1")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


def test_warm_clone_continues_from_its_parent_and_cold_clone_restarts(tmp_path):
    ctl = tiny_experiment(tmp_path, "clones", max_steps=24, num_chunks=2, lr=5e-3, dropout=0.0,
                          rows=constant_answer_rows(32))
    state = {}

    def on_events(ctl, events):
        for event in events:
            if isinstance(event, QuantumDone) and event.run_id == "r1" and event.chunk == 0 and not state:
                state["warm"] = ctl.apply_op("clone", "r1", {"warm_start": True, "edits": {"learning_rate": 1e-3}},
                                             "api", []).new_run_id
                state["cold"] = ctl.apply_op("clone", "r1", {"edits": {"learning_rate": 1e-3}}, "api", []).new_run_id
                state["warm_source"] = ctl.runs[state["warm"]].warm_from
                assert os.path.isdir(state["warm_source"])  # the source's state, copied for the clone

    try:
        drive(ctl, limit=600, on_events=on_events)
    finally:
        ctl.close()
    parent = losses(ctl, "r1")
    warm, cold = losses(ctl, state["warm"]), losses(ctl, state["cold"])
    assert len(warm) == 12 and len(cold) == 24
    parent_last = sum(parent[9:12]) / 3  # around step 12, where the warm clone starts
    untrained = parent[0]
    print(f"untrained {untrained:.4f} parent@12 {parent_last:.4f} warm first {warm[0]:.4f} cold first {cold[0]:.4f}")
    assert abs(warm[0] - parent_last) < abs(untrained - parent_last) / 2
    assert abs(cold[0] - untrained) < 1e-6  # same data, same seed, untrained adapter: the same first loss
    runs = {r["run_id"]: r for r in ctl.store.list_runs()}
    assert runs[state["warm"]]["parent"] == "r1" and runs[state["warm"]]["warm_start"] is True
    assert runs[state["cold"]]["warm_start"] is False and runs[state["cold"]]["status"] == "completed"
    # once the clone has its own checkpoint, the copy of its source's state is gone
    assert not os.path.exists(state["warm_source"]) and os.path.isdir(runs[state["warm"]]["checkpoint_dir"])


def test_a_warm_clone_continues_exactly_like_its_source_and_keeps_its_data_position(tmp_path):
    """Nothing edited: the clone's losses are the source's next losses, bit for bit, dropout included (it
    continues the source's RNG). A new batch size: the clone goes on from the same rows of the epoch."""
    ctl = tiny_experiment(tmp_path, "exact", max_steps=8, num_chunks=2, lr=5e-3, dropout=0.1)
    state = {}

    def on_events(ctl, events):
        for event in events:
            if isinstance(event, QuantumDone) and event.run_id == "r1" and event.chunk == 0 and not state:
                state["same"] = ctl.apply_op("clone", "r1", {"warm_start": True}, "api", []).new_run_id
                state["bs8"] = ctl.apply_op("clone", "r1", {"warm_start": True, "edits": {
                    "per_device_train_batch_size": 8}}, "api", []).new_run_id

    try:
        drive(ctl, limit=600, on_events=on_events)
    finally:
        ctl.close()
    source = ctl.store.metric_series("r1", "loss")
    assert [s for s, _ in source] == list(range(1, 9))
    assert ctl.store.metric_series(state["same"], "loss") == source[4:]  # steps 5..8, the same values
    # r1 stopped after 4 steps of 4 rows: 16 of the 32 rows. In batches of 8 that is 2 of 4; step 5 ends at 3/4.
    epochs = [e for _, e in ctl.store.metric_series(state["bs8"], "epoch")]
    assert epochs == [0.75, 1.0, 1.25, 1.5]


def test_a_warm_clones_position_is_counted_in_rows():
    from rftui.training.warm_start import position_in_epoch

    state = {"batch_in_epoch": 4, "steps_in_epoch": 8, "train_batch_size": 4}  # 16 of 32 rows
    assert [position_in_epoch(state, steps, size) for steps, size in ((8, 4), (4, 8), (16, 2))] == [4, 2, 8]
    assert position_in_epoch({**state, "batch_in_epoch": 8}, 3, 12) == 3  # the epoch was used up
    assert position_in_epoch({"batch_in_epoch": 4, "steps_in_epoch": 8}, 4, 8) == 2  # a checkpoint from before
