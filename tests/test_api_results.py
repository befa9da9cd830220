"""Experiment names across several `run_fit` calls, and failure reasons wherever runs are reported:
`rftui show --json`, `Experiment.get_runs_info()` and the MLflow run."""
from __future__ import annotations

import json
from dataclasses import replace

from mlflow import MlflowClient

from engine_helpers import SAMPLES, fake_experiment, trained_experiment

from rftui import Experiment, RFGridSearch, RFLoraConfig, RFModelConfig, RFSFTConfig
from rftui.cli import main as cli_main
from rftui.config.yaml_config import load_experiment_file
from rftui.engine.run_mirror import FAILURE_TAG

ROWS = [{"instruction": f"q{i}", "response": f"a{i}"} for i in range(8)]


def refuse_rows(row):
    raise ValueError("this formatter takes no rows")


def test_each_run_fit_takes_the_next_free_name_from_the_base_name(tmp_path):
    group = RFGridSearch(configs=RFModelConfig(
        model_name="rftui/tiny-llama", peft_config=RFLoraConfig(r=4, lora_alpha=8, target_modules=["q_proj"]),
        training_args=RFSFTConfig(learning_rate=1e-3, per_device_train_batch_size=4, max_steps=1)), trainer_type="SFT")
    experiment = Experiment("again", workdir=tmp_path)
    names = []
    for _ in range(3):
        experiment.run_fit(group, None, ROWS, num_chunks=1, quiet=True, device="cpu",
                           tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
        names.append(experiment.name)
    assert names == ["again", "again-2", "again-3"]  # not again-2-2
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == names


def test_failure_reasons_reach_show_json_get_runs_info_and_mlflow(tmp_path, capsys):
    smoke = load_experiment_file(SAMPLES / "smoke.yaml").runs
    runs = (smoke[0], replace(smoke[1], formatting_func=refuse_rows))
    ctl = trained_experiment(tmp_path, "fails", num_chunks=1, max_steps=4, runs=runs, tracking=True,
                             crash_at=[("r1", 3, "raise")])
    trained = "RuntimeError: fake failure in run r1 at step 3"  # in the worker, mid-training
    formatted = "ValueError: this formatter takes no rows"  # when the experiment was created
    assert cli_main(["show", "fails", "--workdir", str(tmp_path), "--json"]) == 0
    shown = {run["id"]: run for run in json.loads(capsys.readouterr().out)["runs"]}
    assert shown["r1"]["status"] == "failed" and shown["r1"]["reason"] == trained
    assert shown["r2"]["status"] == "failed" and formatted in shown["r2"]["reason"]

    info = Experiment("fails", workdir=tmp_path).get_runs_info().set_index("run_id")
    assert info.loc["r1", "reason"] == trained and formatted in info.loc["r2", "reason"]

    client = MlflowClient(ctl.store.get_meta("tracking_uri"))
    found = client.search_runs([client.get_experiment_by_name("fails").experiment_id])
    tracked = {run.data.tags["rftui.run_id"]: run for run in found}
    assert {run_id: run.info.status for run_id, run in tracked.items()} == {"r1": "FAILED", "r2": "FAILED"}
    assert tracked["r1"].data.tags[FAILURE_TAG] == trained
    assert tracked["r2"].data.tags[FAILURE_TAG] == shown["r2"]["reason"]


def test_get_runs_info_is_keyed_by_run_id_with_float_metrics_and_each_runs_config(tmp_path):
    trained_experiment(tmp_path, "info", num_chunks=2, max_steps=4)
    experiment = Experiment("info", workdir=tmp_path)
    info = experiment.get_runs_info()
    assert list(info.columns) == ["run_id", "label", "status", "reason", "parent", "warm_start", "steps_done",
                                  "total_steps", "chunks_done", "num_chunks", "loss", "eval_loss", "rougeL",
                                  "bleu", "config"]
    assert list(info["run_id"]) == ["r1", "r2"]  # RapidFire AI's column name, and get_results' key
    joined = experiment.get_results().merge(info[["run_id", "status"]], on="run_id")
    assert set(joined["status"]) == {"completed"} and len(joined) == 8
    # no run logged rougeL: still a float column (NaN), so nsmallest/idxmin work on every metric column
    assert str(info["rougeL"].dtype) == "float64" and info["rougeL"].isna().all()
    assert info.nsmallest(1, "eval_loss")["run_id"].item() == "r2"
    assert [config["learning_rate"] for config in info["config"]] == [1e-3, 3e-4]
    assert info["config"][0]["lora.r"] == 4


def test_an_experiment_not_in_the_workdir_is_named_with_where_it_was_looked_for(tmp_path):
    import pytest

    from rftui.errors import ExperimentError

    fake_experiment(tmp_path, "chatqa-lite").close()
    fake_experiment(tmp_path, "other").close()
    typo = Experiment("chatqa-lte", workdir=tmp_path)
    for call in (typo.get_results, typo.get_runs_info, lambda: typo.stop_run("r1"), typo.resume):
        with pytest.raises(ExperimentError) as caught:
            call()
        assert str(caught.value) == (f"no experiment 'chatqa-lte' in {tmp_path} (did you mean 'chatqa-lite'?); "
                                     "run_fit creates it, or pass workdir= where it was created")
    with pytest.raises(ExperimentError, match=r"no experiment 'zzz' in .* \(it holds chatqa-lite, other\); run_fit"):
        Experiment("zzz", workdir=tmp_path).get_results()
    with pytest.raises(ExperimentError, match=r"no experiment 'zzz' in \S+nowhere; run_fit creates it, or pass workdir="):
        Experiment("zzz", workdir=tmp_path / "nowhere").get_runs_info()


def test_resume_of_a_finished_experiment_says_so_and_starts_nothing(tmp_path, capsys, monkeypatch):
    import rftui.engine.assemble as assemble

    trained_experiment(tmp_path, "done", num_chunks=1, max_steps=2)
    capsys.readouterr()
    monkeypatch.setattr(assemble, "make_controller", lambda *a, **k: (_ for _ in ()).throw(AssertionError("started")))
    experiment = Experiment("done", workdir=tmp_path)
    experiment.resume()
    assert capsys.readouterr().out == ("experiment done already finished; nothing to resume (resume_run a stopped run "
                                       "or clone_run one first)\n")
    experiment.resume(quiet=True)
    assert capsys.readouterr().out == ""
    assert set(experiment.get_runs_info()["status"]) == {"completed"}


def test_run_fit_first_says_which_experiment_it_created_and_where(tmp_path, capsys, monkeypatch):
    import rftui.engine.assemble as assemble
    from engine_helpers import FAKE

    real = assemble.make_controller
    monkeypatch.setattr(assemble, "make_controller", lambda *a, **k: real(
        *a, **{**k, "tracking": False, "backend": FAKE, "preload": ("rftui.engine.fake_backend",)}))
    group = RFGridSearch(configs=RFModelConfig(
        model_name="rftui/tiny-llama", peft_config=RFLoraConfig(r=4, lora_alpha=8, target_modules=["q_proj"]),
        training_args=RFSFTConfig(learning_rate=1e-3, per_device_train_batch_size=4, max_steps=2)), trainer_type="SFT")
    experiment = Experiment("named", workdir=tmp_path)
    for name in ("named", "named-2"):  # the second run_fit takes the next free name: the first line says which
        experiment.run_fit(group, None, ROWS, num_chunks=2)
        first = capsys.readouterr().out.splitlines()[0]
        assert first.split(" ", 1)[1] == f"experiment {name}: 1 run, 2 chunks, directory {tmp_path / name}"


def test_an_experiment_shows_its_name_and_workdir_and_has_rapidfires_experiment_name(tmp_path):
    experiment = Experiment("shown", workdir=tmp_path)
    assert repr(experiment) == f"Experiment('shown', workdir='{tmp_path}')"
    experiment.name = "shown-2"  # what a second run_fit sets
    assert experiment.experiment_name == "shown-2" and repr(experiment).startswith("Experiment('shown-2',")


def test_experiment_path_is_rapidfires_name_for_the_workdir(tmp_path):
    import pytest

    from rftui.config.problems import ConfigError

    fake_experiment(tmp_path, "there").close()
    experiment = Experiment("there", mode="fit", experiment_path=str(tmp_path))
    assert experiment.workdir == tmp_path and list(experiment.get_runs_info()["run_id"]) == ["r1", "r2"]
    with pytest.raises(ConfigError, match="experiment_path: given together with workdir, which names the same "
                                          "directory — pass only one of them"):
        Experiment("there", workdir=tmp_path, experiment_path=tmp_path)
