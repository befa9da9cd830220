"""An experiment created from a Python script whose hooks live in that script (`__main__:fn`): `rftui resume`
refuses before changing anything; `Experiment.resume` from the script again takes them from its __main__."""
from __future__ import annotations

import sys
from dataclasses import replace

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from engine_helpers import SAMPLES, rows
from reliability_helpers import cli, dump, query

from rftui.config.yaml_config import load_experiment_file
from rftui.engine.setup import create_experiment, script_hooks
from rftui.errors import ExperimentError

CREATE = "__main__:rftui_test_create_model"
METRICS = "__main__:rftui_test_metrics"


def create_model(model_config):
    model = AutoModelForCausalLM.from_pretrained(model_config["model_name"])
    return model, AutoTokenizer.from_pretrained(model_config["model_name"])


def metrics(eval_preds):
    predictions, _ = eval_preds
    return {"pred_count": float(len(predictions))}


def script_experiment(tmp_path, name, formatting_only=False):
    """As `run_fit` records hooks defined in a script: one run of the smoke config, never started."""
    spec = load_experiment_file(SAMPLES / "smoke.yaml")
    run = replace(spec.runs[0], training={**spec.runs[0].training, "max_steps": 2, "eval_steps": 2},
                  compute_metrics=None if formatting_only else METRICS, formatting_func="__main__:fmt")
    spec = replace(spec, name=name, workdir=str(tmp_path), num_chunks=1, runs=(run,),
                   create_model=None if formatting_only else CREATE)
    # a formatting hook runs at creation only; give the rows already formatted so that none is needed here
    formatted = [{"prompt": [{"role": "user", "content": r["instruction"]}],
                  "completion": [{"role": "assistant", "content": r["response"]}]} for r in rows(16)]
    exp, spec, store = create_experiment(replace(spec, runs=(replace(run, formatting_func=None),)), formatted,
                                         formatted[:4])
    store.update_run("r1", spec={**store.get_run("r1")["spec"], "formatting_func": "__main__:fmt"})
    return exp, spec, store


def test_script_hooks_names_the_hooks_that_training_would_call(tmp_path):
    exp, spec, store = script_experiment(tmp_path, "needs")
    assert script_hooks(spec, store) == {CREATE: ["create_model"], METRICS: ["compute_metrics of r1"]}
    store.update_run("r1", status="failed", reason="x")  # nothing left to train: nothing needed
    assert script_hooks(spec, store) == {}
    _, spec, store = script_experiment(tmp_path, "fmt-only", formatting_only=True)
    assert script_hooks(spec, store) == {}  # the data was formatted when the experiment was created


def test_rftui_resume_refuses_script_hooks_and_changes_nothing(tmp_path):
    exp, _, store = script_experiment(tmp_path, "fromscript")
    store.start_quantum("r1", 0, 0, 0, 2)  # as if killed mid-quantum: resume would otherwise mark it lost
    store.close()
    before = dump(exp.state_db)
    result = cli("resume", "fromscript", "--workdir", tmp_path, "--no-ui", "--no-tracking", "--device", "cpu")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"`{CREATE}` (create_model); `{METRICS}` (compute_metrics of r1)" in result.stderr
    assert "`rftui resume` cannot load them" in result.stderr
    assert f'Experiment("fromscript", workdir="{tmp_path}").resume(create_model_fn=...)' in result.stderr
    assert dump(exp.state_db) == before


def test_api_resume_takes_script_hooks_from_main_or_refuses(tmp_path, monkeypatch):
    from rftui.api import Experiment

    exp, _, store = script_experiment(tmp_path, "again")
    store.close()
    before = dump(exp.state_db)
    with pytest.raises(ExperimentError, match=r"this program's __main__ does not define them: "
                                              rf"`{CREATE}` \(create_model\); `{METRICS}`"):
        Experiment("again", workdir=tmp_path).resume(device="cpu", quiet=True)
    assert dump(exp.state_db) == before

    main = sys.modules["__main__"]
    monkeypatch.setattr(main, "rftui_test_metrics", metrics, raising=False)
    with pytest.raises(ExperimentError, match=rf"`{CREATE}` \(create_model\)\. Call"):  # compute_metrics found
        Experiment("again", workdir=tmp_path).resume(device="cpu", quiet=True)
    assert dump(exp.state_db) == before

    monkeypatch.setattr(main, "rftui_test_create_model", create_model, raising=False)
    Experiment("again", workdir=tmp_path).resume(device="cpu", quiet=True,
                                                 tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    assert query(exp.state_db, "select status, reason from runs") == [("completed", None)]
    assert query(exp.state_db, "select value from metrics where name='pred_count'") == [(4.0,)]  # its 4 eval rows


@pytest.mark.parametrize("name, config_edit", [
    # created where `my_hooks` was importable (another directory, PYTHONPATH, a virtualenv); resumed without it
    ("elsewhere", {}),
    # run_fit records no data section: the hooks are looked up from here, not from a config file's folder
    ("fromapi", {"data": None}),
])
def test_rftui_resume_refuses_hooks_whose_module_cannot_be_found_from_here(tmp_path, name, config_edit):
    exp, _, store = script_experiment(tmp_path, name, formatting_only=True)
    store.set_meta("config", {**store.get_meta("config"), **config_edit, "create_model": "my_hooks_not_here:create"})
    store.close()
    before = dump(exp.state_db)
    result = cli("resume", name, "--workdir", tmp_path, "--no-ui", "--no-tracking", "--device", "cpu")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert ("needs hooks that cannot be found from here: `my_hooks_not_here:create` (create_model): module "
            "`my_hooks_not_here` cannot be found") in result.stderr
    assert "nothing was changed" in result.stderr
    assert dump(exp.state_db) == before
