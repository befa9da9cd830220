"""IC ops given odd input (an int run id, edits as a list, a non-bool warm_start) and ops racing a quantum's end:
a clear refusal or the right effect, never a crash of the training loop."""
from __future__ import annotations

import random
from dataclasses import replace

import pytest
from fake_pool import FakePool

from engine_helpers import SAMPLES, fake_experiment, rows
from rftui.api import Experiment
from rftui.config.yaml_config import load_experiment_file
from rftui.engine.controller import Controller
from rftui.engine.setup import create_experiment
from rftui.errors import OpRefused


def fake_pool_controller(tmp_path, max_steps=4, num_chunks=2, workers=1):
    spec = load_experiment_file(SAMPLES / "smoke.yaml")
    runs = tuple(replace(r, training={**r.training, "max_steps": max_steps}) for r in spec.runs)
    spec = replace(spec, name="edge", workdir=str(tmp_path), num_chunks=num_chunks, runs=runs)
    exp, spec, store = create_experiment(spec, rows(16), rows(4))
    return Controller(exp, spec, store, FakePool(workers, random.Random(0)))


def test_an_int_run_id_is_the_run_number_in_the_live_loop(tmp_path):
    ctl = fake_pool_controller(tmp_path)
    ctl.start()
    resolved = ctl.apply_op("stop", 2, {}, "api", [])  # r2 is waiting: it stops at once
    assert (resolved.status, ctl.runs["r2"].status) == ("applied", "stopped")
    missing = ctl.apply_op("stop", None, {}, "api", [])
    assert missing.status == "refused" and missing.reason == "stop needs a run id (runs: r1, r2)"
    assert ctl.apply_op("resume", True, {}, "api", []).status == "refused"


def test_api_ops_take_run_numbers_and_edits_as_a_list(tmp_path):
    fake_experiment(tmp_path).store.close()  # created, never started: ops apply to the stored experiment
    exp = Experiment("exp", workdir=tmp_path)
    exp.stop_run(1)
    assert exp.clone_run(2, ["learning_rate=5e-4"]) == "r3"
    runs = {row["run_id"]: row for row in exp.get_runs_info().to_dict("records")}
    assert runs["r1"]["status"] == "stopped" and runs["r3"]["parent"] == "r2"
    with pytest.raises(OpRefused, match=r"edits must be a dict of knob -> value.*got str 'learning_rate=5e-4'"):
        exp.clone_run("r1", "learning_rate=5e-4")
    with pytest.raises(OpRefused, match="warm_start must be True or False, got 'no'"):
        exp.clone_run("r1", warm_start="no")
    with pytest.raises(OpRefused, match=r"a run is named by its id \('r3'\) or number \(3\), got 1.5"):
        exp.stop_run(1.5)
    assert len(exp.get_runs_info()) == 3  # the refused ones changed nothing


def test_a_dict_edit_keeps_its_string_values_as_they_are(tmp_path):
    ctl = fake_pool_controller(tmp_path)
    resolved = ctl.apply_op("clone", "r1", {"edits": {"run_name": "a: b", "hub_model_id": "yes"}}, "api", [])
    assert resolved.status == "applied", resolved.reason
    training = ctl.runs[resolved.new_run_id].spec.training
    assert (training["run_name"], training["hub_model_id"]) == ("a: b", "yes")  # not {'a': 'b'}, not True
    text = ctl.apply_op("clone", "r1", {"edits": ["hub_model_id=yes"]}, "ctl", [])
    assert text.status == "refused" and "hub_model_id" in text.reason  # --set text is YAML: yes is true


def test_a_delete_that_reaches_the_worker_after_the_runs_last_step_still_deletes_it(tmp_path):
    ctl = fake_pool_controller(tmp_path, max_steps=2, num_chunks=1, workers=2)
    ctl.start()
    ctl.step(0)  # the workers report ready
    ctl.step(0)  # both runs dispatched, each for its one and only quantum
    assert (ctl.runs["r1"].status, ctl.runs["r2"].status) == ("running", "running")
    assert ctl.apply_op("delete", "r1", {}, "ctl", []).reason == "deleted at its next optimizer step"
    stop_after_delete = ctl.apply_op("stop", "r1", {}, "ctl", [])
    assert stop_after_delete.status == "refused" and "being deleted" in stop_after_delete.reason
    ctl.pool.preempt.clear()  # the preempt arrived after the last step: the quantum ends as if none was sent
    while ctl.pool.in_flight:
        ctl.pool.finish_one()
    ctl.step(0)
    assert (ctl.runs["r1"].status, ctl.runs["r2"].status) == ("deleted", "completed")
    assert ctl.store.get_run("r1")["status"] == "deleted" and ctl.finished


def warm_ready(tmp_path):
    """A controller whose r1 has finished its first quantum (it has a checkpoint to warm-start from)."""
    ctl = fake_pool_controller(tmp_path, max_steps=4, num_chunks=2)
    ctl.start()
    while ctl.runs["r1"].checkpoint_dir is None:
        ctl.step(0)
        ctl.pool.finish_one()
    ctl.step(0)
    return ctl


@pytest.mark.parametrize("edits,fixed", [
    ({"lora.use_dora": True}, "lora.use_dora"),
    ({"lora.layers_to_transform": [0]}, "lora.layers_to_transform"),
    ({"lora.target_modules": ["q_proj"]}, "lora.target_modules"),
    ({"optim": "adafactor", "learning_rate": 1e-4}, "optim"),
    ({"optim": "rmsprop", "lora.use_dora": True}, "lora.use_dora, optim"),
])
def test_a_warm_start_refuses_edits_that_change_the_adapters_tensors_or_the_optimizer(tmp_path, edits, fixed):
    ctl = warm_ready(tmp_path)
    resolved = ctl.apply_op("clone", "r1", {"warm_start": True, "edits": edits}, "ctl", [])
    assert resolved.status == "refused"
    what = "adapter and optimizer as they are" if "optim" in fixed else "adapter as it is"
    them = "them" if "," in fixed else "it"
    assert resolved.reason == (f"a warm start continues run r1's {what}; {fixed} cannot change (only lora.lora_alpha, "
                               "lora.lora_dropout, lora.use_rslora, lora.alpha_pattern and training hyperparameters "
                               f"can; a clone from scratch can change {them})")  # no front end's flag: all show it
    assert list(ctl.runs) == ["r1", "r2"] and not (ctl.exp.checkpoints / "r3").exists()  # nothing half-made
    cold = ctl.apply_op("clone", "r1", {"edits": edits}, "ctl", [])  # from scratch, any adapter is fine
    assert cold.status == "applied" and cold.new_run_id == "r3"


def test_a_warm_start_takes_edits_that_keep_the_adapter_or_write_out_its_defaults(tmp_path):
    ctl = warm_ready(tmp_path)
    edits = {"lora.lora_alpha": 32, "lora.lora_dropout": 0.2, "lora.use_rslora": True, "lora.r": 4,
             "lora.target_modules": ["v_proj", "q_proj"], "lora.bias": "none", "lora.use_dora": False,
             "optim": "adamw_torch", "learning_rate": 5e-4}
    resolved = ctl.apply_op("clone", "r1", {"warm_start": True, "edits": edits}, "ctl", [])
    assert resolved.status == "applied", resolved.reason
    assert ctl.runs["r3"].spec.lora["lora_alpha"] == 32 and ctl.runs["r3"].warm_start


def test_clone_refusals_say_what_to_do(tmp_path):
    ctl = warm_ready(tmp_path)  # r1 has done its first chunk: 2 of 4 steps
    few = ctl.apply_op("clone", "r1", {"edits": {"max_steps": 1}}, "ctl", [])
    assert few.reason == "the clone would have 1 optimizer step, fewer than num_chunks=2: give it at least 2 " \
                         "(e.g. max_steps=2)"
    done = ctl.apply_op("clone", "r1", {"warm_start": True, "edits": {"max_steps": 2}}, "ctl", [])
    assert done.reason == "the clone would have 2 optimizer steps, and run r1's state it starts from has done 2: " \
                          "raise max_steps (e.g. max_steps=4) or num_train_epochs"
    assert ctl.apply_op("clone", "r1", {}, "ctl", []).new_run_id == "r3"  # r3 has r1's label
    assert ctl.apply_op("delete", "r3", {}, "ctl", []).status == "applied"  # pending: it never trained
    never = ctl.apply_op("clone", "r3", {"warm_start": True}, "ctl", [])
    assert never.reason == "run r3 is deleted and has no checkpoint to warm-start from; clone it from scratch instead"
    twice = ctl.apply_op("stop", "lr=1e-3", {}, "ctl", [])
    assert twice.reason == "label 'lr=1e-3' names 2 runs (r1, r3); give the run id"
    assert [r for r in ctl.runs] == ["r1", "r2", "r3"]


def test_a_warm_start_from_a_run_without_a_checkpoint_says_what_would_give_it_one(tmp_path):
    """A stopped run was told to clone from scratch; resuming it gives it a checkpoint (the TUI said so)."""
    ctl = fake_pool_controller(tmp_path)
    ctl.start()  # r2 has not begun its first chunk
    assert ctl.runs["r2"].status == "pending" and ctl.runs["r2"].checkpoint_dir is None
    waiting = ctl.apply_op("clone", "r2", {"warm_start": True}, "ctl", [])
    assert (waiting.status, waiting.reason) == ("refused", "run r2 has no checkpoint yet to warm-start from: wait "
                                                "for its first chunk, or clone it from scratch instead")
    assert ctl.apply_op("stop", "r2", {}, "ctl", []).status == "applied"  # pending: it stops at once
    assert ctl.runs["r2"].status == "stopped"
    stopped = ctl.apply_op("clone", "r2", {"warm_start": True}, "ctl", [])
    assert stopped.reason == ("run r2 was stopped before its first checkpoint: resume it and wait for its first "
                              "chunk, or clone it from scratch instead")


def test_a_run_is_found_by_its_label_only_when_no_other_run_has_it(tmp_path):
    ctl = fake_pool_controller(tmp_path)
    label = ctl.runs["r2"].spec.label
    assert ctl.apply_op("stop", label, {}, "ctl", []).status == "applied" and ctl.runs["r2"].status == "stopped"
    assert ctl.apply_op("clone", label, {}, "ctl", []).new_run_id == "r3"  # r3 has r2's label
    assert ctl.apply_op("resume", label, {}, "ctl", []).reason == (
        f"label {label!r} names 2 runs (r2, r3); give the run id")
    assert ctl.apply_op("stop", "lr=9", {}, "ctl", []).reason == "no run 'lr=9' in experiment edge (runs: r1, r2, r3)"


def test_an_api_op_racing_the_end_of_run_fit_is_applied_not_left_waiting(tmp_path):
    from rftui.engine.controller import ControllerClosed

    ctl = fake_pool_controller(tmp_path)
    ctl.start()
    queued = ctl.request("stop", "r1", {}, "api")  # asked while the loop ran its last step
    ctl.close()
    assert queued.result(timeout=0).status == "applied" and ctl.store.get_run("r1")["status"] == "stopped"
    late = ctl.request("stop", "r2", {}, "api")  # asked after the loop ended
    with pytest.raises(ControllerClosed):
        late.result(timeout=0)
    exp = Experiment("edge", workdir=tmp_path)
    exp.controller = ctl  # run_fit's finally has not cleared it yet
    assert exp.clone_run("r2", {"learning_rate": 5e-4}) == "r3"  # applied to the stored experiment
    exp.stop_run("r2")
    assert {r["run_id"]: r["status"] for r in exp.get_runs_info().to_dict("records")} == {
        "r1": "stopped", "r2": "stopped", "r3": "pending"}


def test_an_op_on_an_experiment_whose_process_was_killed_mid_quantum_drops_the_cut_work(tmp_path):
    from rftui.control import submit
    from rftui.report import show_data

    store = fake_experiment(tmp_path).store
    exp = Experiment("exp", workdir=tmp_path).exp
    store.update_run("r1", status="running", steps_done=2, chunks_done=1)  # checkpointed at step 2, then cut
    store.start_quantum("r1", 1, 0, 2, 4)
    store.add_metrics_batch([("r1", step, "loss", 1.0 / step, "train", 0.0) for step in (1, 2, 3)])
    store.set_meta("status", "running")
    store.set_meta("controller_pid", 2 ** 22 + 12345)  # no such process: the owner was killed
    assert show_data(exp, store)["runs"][0]["status"] == "interrupted"
    spec = replace(load_experiment_file(SAMPLES / "smoke.yaml"), name="exp")
    assert submit(exp, spec, store, "stop", "r1", {})["status"] == "applied"
    run = show_data(exp, store)["runs"][0]
    assert (run["status"], run["steps_done"], run["metrics"]["loss"]) == ("stopped", 2, 0.5)  # not step 3's
    assert store.metric_series("r1", "loss") == [(1, 1.0), (2, 0.5)]
    assert [q["status"] for q in store.list_quanta("r1")] == ["lost"]


def test_resume_refusals_say_what_to_do_instead(tmp_path):
    ctl = fake_pool_controller(tmp_path, workers=2)
    ctl.start()
    ctl.step(0)
    ctl.step(0)  # r1 and r2 running
    assert ctl.apply_op("stop", "r1", {}, "ctl", []).status == "applied"
    assert ctl.apply_op("resume", "r1", {}, "ctl", []).reason == (
        "run r1 is running; only stopped runs can be resumed; it stops at its next optimizer step: resume it after that")
    assert ctl.apply_op("delete", "r2", {}, "ctl", []).status == "applied"
    while ctl.pool.in_flight:
        ctl.pool.finish_one()
    ctl.step(0)
    assert ctl.apply_op("resume", "r1", {}, "ctl", []).status == "applied"  # stopped now
    assert ctl.apply_op("resume", "r2", {}, "ctl", []).reason == (
        "run r2 is deleted; only stopped runs can be resumed; clone it to train its config again")


def test_resuming_a_completed_run_points_to_a_warm_start_clone_in_no_front_ends_words(tmp_path):
    ctl = fake_pool_controller(tmp_path, max_steps=2, num_chunks=1)
    ctl.start()
    while ctl.runs["r1"].status != "completed":
        ctl.step(0)
        ctl.pool.finish_one()
    assert ctl.apply_op("resume", "r1", {}, "ctl", []).reason == (
        "run r1 is completed; only stopped runs can be resumed; to train it further, make a warm-start clone of it "
        "with a larger max_steps")


def test_clone_edits_named_twice_or_by_a_labels_short_name_are_refused_with_the_fix(tmp_path):
    ctl = fake_pool_controller(tmp_path)
    twice = ctl.apply_op("clone", "r1", {"edits": ["learning_rate=5e-4", "training.learning_rate=1e-4"]}, "ctl", [])
    assert twice.reason == ("bad edit: learning_rate is given twice (--set learning_rate=5e-4, "
                            "--set training.learning_rate=1e-4); keep one")
    short = ctl.apply_op("clone", "r1", {"edits": ["lr=5e-4", "warmup=0.1"]}, "ctl", [])
    assert short.reason == ("bad edit: lr: `lr` is a label's short name; write learning_rate (e.g. learning_rate=5e-4);"
                            " warmup: `warmup` is a label's short name; write warmup_steps (e.g. warmup_steps=0.1)")
    assert list(ctl.runs) == ["r1", "r2"]
    # the knob it names is one the validator takes (warmup_ratio is gone in transformers 5)
    assert ctl.apply_op("clone", "r1", {"edits": ["warmup_steps=0.1"]}, "ctl", []).status == "applied"


def test_an_owner_killed_but_not_yet_reaped_is_dead(tmp_path):
    import subprocess
    import sys
    import time

    from rftui.engine.liveness import is_alive, start_time

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    started = start_time(child.pid)
    assert is_alive(child.pid, started)
    child.kill()
    time.sleep(0.3)  # a zombie until waited for: `rftui ctl` queued its op for it and waited 10 s
    try:
        assert not is_alive(child.pid, started)
    finally:
        child.wait()


def test_an_api_op_the_training_loop_does_not_read_in_time_is_an_experiment_error(tmp_path, monkeypatch):
    from concurrent.futures import Future

    import rftui.api as api
    from rftui.errors import ExperimentError

    class Busy:  # a training loop stuck in a long step: the op's future never resolves
        def request(self, *args, **kwargs):
            return Future()

    monkeypatch.setattr(api, "OP_ANSWER_SECONDS", 0.05)
    exp = Experiment("stuck", workdir=tmp_path)
    exp.controller = Busy()
    with pytest.raises(ExperimentError, match=r"experiment 'stuck' did not answer stop r1 within 0 s; it is applied "
                                              "when its training loop reads it"):
        exp.stop_run("r1")


def test_resuming_a_failed_run_gives_its_reason_so_every_front_end_can_show_it(tmp_path):
    ctl = fake_pool_controller(tmp_path)
    ctl.start()
    ctl._set_status(ctl.runs["r1"], "failed", [], reason="CUDA out of memory")
    ctl._set_status(ctl.runs["r2"], "failed", [], reason="x" * 300)
    assert ctl.apply_op("resume", "r1", {}, "ctl", []).reason == (
        "run r1 is failed; only stopped runs can be resumed; clone it to try again (it failed: CUDA out of memory)")
    long = ctl.apply_op("resume", "r2", {}, "ctl", []).reason
    assert long.endswith(f"(it failed: {'x' * 159}…)")


def test_a_clone_edit_turning_on_fp16_for_a_float16_full_fine_tuning_run_is_refused(tmp_path):
    ctl = fake_pool_controller(tmp_path)
    rec = ctl.runs["r1"]
    rec.spec = replace(rec.spec, lora=None, model_kwargs={"torch_dtype": "float16"})
    result = ctl.apply_op("clone", "r1", {"edits": {"fp16": True}}, "ctl", [])
    assert result.status == "refused"
    assert result.reason.startswith("bad edit: fp16 cannot train a model loaded in float16 with full fine-tuning")
    assert result.reason.endswith("; leave fp16 off or use bf16 where the GPU supports it")
    assert "r3" not in ctl.runs
    assert ctl.apply_op("clone", "r1", {"edits": {"bf16": True}}, "ctl", []).status == "applied"
