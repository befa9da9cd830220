"""How ops are logged and answered: the run an op resolved to (with its label when the user named it by
number or label), the command that trains what an op on a stored experiment left to train, and the note
on a clone edit of a sampling key that greedy generation ignores."""
from __future__ import annotations

from engine_helpers import fake_experiment

from rftui.cli import main as cli_main
from rftui.config.generation import greedy_note, ignored_sampling_keys
from rftui.engine import events as ev
from rftui.ui.model import op_line


def ctl(tmp_path, capsys, *args) -> tuple[int, str, str]:
    code = cli_main(["ctl", "exp", *args, "--workdir", str(tmp_path)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_ctl_on_a_stored_experiment_names_the_resolved_run_and_what_trains_it(tmp_path, capsys):
    fake_experiment(tmp_path).store.close()  # no process owns it: ops are applied to state.db
    later = f"no process is training experiment exp; `rftui resume exp --workdir {tmp_path}` trains it"
    assert ctl(tmp_path, capsys, "stop", "2") == (0, "stop r2 (lr=3e-4): applied\n", "")
    assert ctl(tmp_path, capsys, "resume", "lr=3e-4") == (0, f"resume r2 (lr=3e-4): applied ({later})\n", "")
    assert ctl(tmp_path, capsys, "stop", "r1") == (0, "stop r1: applied\n", "")  # named by id: no label, no hint
    assert ctl(tmp_path, capsys, "clone", "r1") == (0, f"clone r1: applied ({later}) -> new run r3\n", "")
    code, _, err = ctl(tmp_path, capsys, "delete", "lr=1e-3")  # r1 and its clone r3 share the label
    assert code == 2 and "label 'lr=1e-3' names 2 runs (r1, r3)" in err
    from rftui.engine.setup import open_experiment

    _, _, store = open_experiment("exp", str(tmp_path))
    try:  # the ops table keeps the run each op resolved to; a refused one keeps what was typed
        assert [(o["op"], o["run_id"], o["status"]) for o in store.list_ops()] == [
            ("stop", "r2 (lr=3e-4)", "applied"), ("resume", "r2 (lr=3e-4)", "applied"), ("stop", "r1", "applied"),
            ("clone", "r1", "applied"), ("delete", "lr=1e-3", "refused")]
    finally:
        store.close()


def test_ctl_json_gives_the_id_a_label_resolved_to_beside_the_run_as_typed(tmp_path, capsys):
    import json

    fake_experiment(tmp_path).store.close()
    code, out, _ = ctl(tmp_path, capsys, "stop", "lr=3e-4", "--json")
    assert code == 0 and json.loads(out) == {"op": "stop", "run": "lr=3e-4", "run_id": "r2", "status": "applied",
                                             "reason": None, "new_run_id": None}
    ctl(tmp_path, capsys, "clone", "r1")  # r1 and r3 share a label now: it names no single run
    code, out, _ = ctl(tmp_path, capsys, "delete", "lr=1e-3", "--json")
    assert code == 2 and (json.loads(out)["run"], json.loads(out)["run_id"]) == ("lr=1e-3", None)


def test_target_id_reads_back_what_op_target_wrote():
    from rftui.engine.ops import target_id

    labels = {"r1": "lr=1e-3", "r2": "lr=3e-4", "r3": ""}
    assert [target_id(s, labels) for s in ("r2 (lr=3e-4)", "r1", "r3", None, "r9", "lr=3e-4", "r2 (lr=1e-3)")] == [
        "r2", "r1", "r3", None, None, None, None]


def test_an_op_a_live_owner_serves_is_logged_with_the_run_it_resolved_to(tmp_path):
    controller = fake_experiment(tmp_path)  # a controller with a pool trains what an op leaves: no hint
    try:
        op_id = controller.store.submit_op("ctl", "stop", "2", {})
        served = controller._serve_store_ops()
        resolved = [e for e in served if isinstance(e, ev.OpResolved)]
        assert resolved == [ev.OpResolved(op_id, "ctl", "stop", "r2 (lr=3e-4)", "applied", None, None)]
        assert op_line(resolved[0]).text == "stop r2 (lr=3e-4) (from ctl): applied"
        assert controller.store.get_op(op_id)["run_id"] == "r2 (lr=3e-4)"  # what a watcher shows
    finally:
        controller.close()


def test_a_clone_edit_of_a_sampling_key_says_it_changes_nothing_without_do_sample(tmp_path, capsys):
    fake_experiment(tmp_path).store.close()
    later = f"no process is training experiment exp; `rftui resume exp --workdir {tmp_path}` trains it"
    code, out, _ = ctl(tmp_path, capsys, "clone", "r1", "--set", "generation.temperature=0.5",
                       "--set", "generation.top_p=1.0")  # top_p 1.0 is no filter at all: nothing to say
    note = ("generation.temperature has no effect: evaluation generates greedily (deterministic ROUGE-L/BLEU) "
            "unless generation.do_sample is true; set do_sample: true to sample, or do_sample: false to keep "
            "greedy decoding without this message")
    assert (code, out) == (0, f"clone r1: applied ({note}; {later}) -> new run r3\n")
    code, out, _ = ctl(tmp_path, capsys, "clone", "r1", "--set", "generation.temperature=0.5",
                       "--set", "generation.do_sample=true")
    assert (code, out) == (0, f"clone r1: applied ({later}) -> new run r4\n")


def test_which_sampling_keys_greedy_generation_ignores():
    assert ignored_sampling_keys({"max_new_tokens": 8, "temperature": 0.8, "top_p": 0.9, "top_k": 30,
                                  "repetition_penalty": 1.05}) == ["temperature", "top_p", "top_k"]
    assert ignored_sampling_keys({"temperature": 1.0, "top_k": 50, "typical_p": 1.0}) == []  # no-op values
    assert ignored_sampling_keys({"temperature": 0.8, "do_sample": True}) == []
    assert ignored_sampling_keys({"temperature": 0.8, "do_sample": False}) == []  # greedy chosen knowingly
    assert ignored_sampling_keys({"top_k": 4, "penalty_alpha": 0.6}) == []  # contrastive search reads top_k
    assert ignored_sampling_keys({"temperature": 0.8, "top_p": 0.9}, ["top_p"]) == ["top_p"]
    assert greedy_note(["top_p", "top_k"]).startswith("generation.top_p, generation.top_k have no effect")


def test_a_run_whose_sampling_keys_do_nothing_warns_once_at_its_first_generation(tmp_path):
    from rftui.config.runspec import RunSpec
    from rftui.engine.messages import EvalDone, TrainQuantum, WorkerWarning
    from rftui.training.host import TrainingHost
    from rftui.training.toy import toy_loader, write_toy_split

    train = write_toy_split(tmp_path / "train.jsonl", 8, seed=1)
    evals = write_toy_split(tmp_path / "eval.jsonl", 2, seed=2)
    run = RunSpec(run_id="g", label="g", model_name="toy",
                  training=dict(per_device_train_batch_size=4, max_length=48, gradient_checkpointing=False),
                  lora=dict(r=2, target_modules=["q_proj"]),
                  generation={"num_samples": 2, "max_new_tokens": 2, "temperature": 0.8, "top_p": 1.0})
    host = TrainingHost(0, model_loader=toy_loader)
    events: list = []
    try:
        for chunk in (0, 1):  # two chunk ends, two generations
            host.train_quantum(TrainQuantum(run=run, chunk=chunk, num_chunks=2, start_step=chunk, end_step=chunk + 1,
                                            total_steps=2, train_path=train, eval_path=evals,
                                            checkpoint_root=str(tmp_path / "ck"), adapters_root=str(tmp_path / "ad")),
                               events.append, lambda: None)
    finally:
        host.close()
    assert len([e for e in events if isinstance(e, EvalDone) and "rougeL" in e.metrics]) == 2
    warned = [e.message for e in events if isinstance(e, WorkerWarning)]
    assert warned == [f"run g: {greedy_note(['temperature'])}"]
