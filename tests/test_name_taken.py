"""`rftui run` under a name that is taken says whether `resume` would train this config at all; a config file given
where an experiment's name belongs, and a workdir that is a file, are said as such; hints carry --workdir."""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from reliability_helpers import ENV, cli, smoke_text, tree_digest

from rftui.config.yaml_config import load_experiment_file
from rftui.data.sources import load_rows
from rftui.engine.config_diff import config_changes
from rftui.engine.liveness import start_time
from rftui.engine.setup import create_experiment, open_experiment
from rftui.engine.store import Store


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def created(config: Path, workdir: Path, status: str | None = None) -> Path:
    """The experiment `rftui run config --workdir workdir` makes, created without training."""
    spec = replace(load_experiment_file(config), workdir=str(workdir))
    base = Path(spec.data.base_dir)
    exp, _, store = create_experiment(spec, load_rows(spec.data.train, base), load_rows(spec.data.eval, base))
    if status:
        store.set_meta("status", status)
    store.close()
    return exp.root


def refused(tmp: Path, *argv) -> str:
    """The one stderr line(s) of a CLI call that must exit 2 and change no file under tmp."""
    before = tree_digest(tmp)
    result = cli(*argv, timeout=120, env=ENV, cwd=tmp)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and tree_digest(tmp) == before
    return result.stderr.strip()


def test_a_changed_config_says_what_changed_and_that_resume_keeps_the_stored_one(tmp_path):
    workdir = tmp_path / "runs"
    created(write(tmp_path / "a.yaml", smoke_text(max_steps=4, num_chunks=2)), workdir)
    changed = write(tmp_path / "b.yaml", smoke_text(max_steps=8, num_chunks=2))
    message = refused(tmp_path, "run", changed, "--workdir", workdir, "--no-ui", "--no-tracking")
    assert message == (
        f"rftui: experiment 'smoke' already exists in {workdir} with a different config:\n"
        "  training.max_steps 4 → 8 (all 2 runs)\n"
        f"`rftui resume smoke --workdir {workdir}` would continue it with its stored config, not this file's. "
        "To train this config, start a fresh experiment with --new (it creates 'smoke-2' and leaves 'smoke' as it "
        "is) or give this one another `name:`")


def test_added_runs_are_counted_and_a_finished_experiment_is_not_offered_resume(tmp_path):
    workdir = tmp_path / "runs"
    created(write(tmp_path / "a.yaml", smoke_text(max_steps=4, num_chunks=2)), workdir, status="finished")
    three = smoke_text(max_steps=4, num_chunks=2).replace("[1.0e-3, 3.0e-4]", "[1.0e-3, 3.0e-4, 1.0e-4]")
    message = refused(tmp_path, "run", write(tmp_path / "b.yaml", three), "--workdir", workdir, "--no-ui")
    assert message.splitlines()[1:3] == ["  runs 2 → 3 (added r3)",
                                         "it finished with its stored config. To train this config, start a fresh "
                                         "experiment with --new (it creates 'smoke-2' and leaves 'smoke' as it is) or "
                                         "give this one another `name:`"]
    assert "resume" not in message


def test_the_same_config_reformatted_is_the_same_resume_when_unfinished_show_when_finished(tmp_path):
    workdir = tmp_path / "runs"
    created(write(tmp_path / "a.yaml", smoke_text(max_steps=4, num_chunks=2)), workdir)
    # another file, block style instead of flow style, a comment, the grid's learning rates spelled otherwise
    same = (smoke_text(max_steps=4, num_chunks=2)
            .replace("lora: {r: 4, lora_alpha: 8, lora_dropout: 0.0, target_modules: [q_proj, v_proj]}",
                     "lora:\n  r: 4   # small\n  lora_alpha: 8\n  lora_dropout: 0\n  target_modules:\n"
                     "    - q_proj\n    - v_proj")
            .replace("[1.0e-3, 3.0e-4]", "[0.001, 0.0003]"))
    assert "lora:\n  r: 4" in same and "0.0003" in same
    same_file = write(tmp_path / "copy.yaml", same)
    message = refused(tmp_path, "run", same_file, "--workdir", workdir, "--no-ui")
    assert message == (f"rftui: experiment 'smoke' already exists in {workdir}; continue it with "
                       f"`rftui resume smoke --workdir {workdir}`, or start a fresh experiment with --new (it creates "
                       "'smoke-2' and leaves 'smoke' as it is) or give this one another `name:`")
    store = Store.open(workdir / "smoke" / "state.db")
    store.set_meta("status", "finished")
    store.close()
    message = refused(tmp_path, "run", same_file, "--workdir", workdir, "--no-ui")
    assert message == (f"rftui: experiment 'smoke' already exists in {workdir} and already finished with this config; "
                       f"see its results with `rftui show smoke --workdir {workdir}`, or to train it again, start a "
                       "fresh experiment with --new (it creates 'smoke-2' and leaves 'smoke' as it is) or give this "
                       "one another `name:`")


def test_a_running_experiment_is_pointed_at_watch_with_its_workdir(tmp_path):
    workdir = tmp_path / "runs"
    config = write(tmp_path / "a.yaml", smoke_text(max_steps=4, num_chunks=2))
    root = created(config, workdir)
    store = Store.open(root / "state.db")  # this test process stands in for the live owner
    store.set_meta("controller_pid", os.getpid())
    store.set_meta("controller_started", start_time(os.getpid()))
    store.close()
    message = refused(tmp_path, "run", config, "--workdir", workdir, "--no-ui")
    assert message.startswith(f"rftui: experiment 'smoke' already exists in {workdir} and is running this config "
                              f"(process {os.getpid()}); watch it with `rftui watch smoke --workdir {workdir}`, or")
    result = cli("resume", "smoke", "--workdir", workdir, "--no-ui", timeout=120, env=ENV, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"rftui: experiment smoke is running (process {os.getpid()}); watch it with "
        f"`rftui watch smoke --workdir {workdir}` or steer it with "
        f"`rftui ctl smoke stop|resume|delete|clone RUN --workdir {workdir}`")


def test_a_folder_of_that_name_that_is_no_experiment(tmp_path):
    workdir = tmp_path / "runs"
    (workdir / "smoke").mkdir(parents=True)
    config = write(tmp_path / "a.yaml", smoke_text(max_steps=4, num_chunks=2))
    message = refused(tmp_path, "run", config, "--workdir", workdir, "--no-ui")
    assert message == (f"rftui: {workdir / 'smoke'} already exists and is not an experiment rftui can read (it has "
                       "no state.db); start a fresh experiment with --new (it creates 'smoke-2' and leaves 'smoke' as "
                       "it is) or give this one another `name:`")


def test_config_changes_groups_runs_and_stops_at_the_limit():
    run = {"run_id": "r1", "label": "lr=1", "knobs": {"training.learning_rate": 1},
           "training": {"max_steps": 4, "learning_rate": 1}, "lora": {"r": 4}}
    old = {"name": "x", "workdir": "/a", "source_file": "/a.yaml", "num_chunks": 2, "ui": {},
           "data": {"train": {"path": "/d.jsonl"}, "base_dir": "/a"},
           "runs": [run, {**run, "run_id": "r2"}, {**run, "run_id": "r3"}]}
    assert config_changes(old, {**old, "name": "y", "workdir": "/b", "source_file": "/b.yaml",
                                "data": {"train": {"path": "/d.jsonl"}, "base_dir": "/b"}}) == []
    new = {**old, "num_chunks": 4, "ui": {"theme": "rftui-light"},
           "runs": [{**run, "training": {"max_steps": 8, "learning_rate": 1}},
                    {**run, "run_id": "r2", "lora": None}, {**run, "run_id": "r4"}]}
    assert config_changes(old, new, limit=10) == [
        "num_chunks 2 → 4", "ui.theme (not set) → rftui-light", "training.max_steps 4 → 8 (r1)",
        'lora {"r": 4} → null (r2)',
        "runs 3 → 3 (added r4; removed r3)"]
    assert config_changes(old, new, limit=3) == ["num_chunks 2 → 4", "ui.theme (not set) → rftui-light",
                                                 "... 3 more differences"]


def test_a_config_file_given_to_resume_names_its_experiment(tmp_path):
    config = write(tmp_path / "b.yaml", smoke_text(max_steps=8, num_chunks=2))
    message = refused(tmp_path, "resume", "b.yaml", "--no-ui")
    head = "rftui: b.yaml is a file, not an experiment: this command takes an experiment's name (or its directory)"
    assert message == (f"{head}; it is the config of experiment 'smoke', which does not exist in "
                       f"{tmp_path / 'rftui-runs'} yet: `rftui run b.yaml` creates it")
    workdir = tmp_path / "runs"
    created(config, workdir)
    message = refused(tmp_path, "show", "b.yaml", "--workdir", workdir)
    assert message == f"{head}; it is the config of experiment 'smoke': give `smoke --workdir {workdir}` instead"
    (tmp_path / "notes.txt").write_text("not a config\n")
    assert refused(tmp_path, "resume", "notes.txt", "--no-ui") == (
        "rftui: notes.txt is a file, not an experiment: this command takes an experiment's name (or its directory); "
        "`rftui run notes.txt` is what takes a config file")


def test_a_workdir_that_is_a_file_is_said_to_be_one(tmp_path):
    afile = write(tmp_path / "afile", "")
    config = write(tmp_path / "a.yaml", smoke_text(max_steps=4, num_chunks=2))
    assert refused(tmp_path, "run", config, "--workdir", afile, "--no-ui") == (
        f"rftui: workdir {afile} is a file, not a directory; give --workdir (or the config's `workdir:`) a "
        "directory, or a path that does not exist yet (rftui creates it)")
    assert refused(tmp_path, "run", config, "--workdir", afile / "sub", "--no-ui") == (
        f"rftui: workdir {afile / 'sub'} is inside {afile}, and {afile} is a file, not a directory; give --workdir "
        "(or the config's `workdir:`) a directory, or a path that does not exist yet (rftui creates it)")
    assert refused(tmp_path, "show", "smoke", "--workdir", afile) == (
        f"rftui: no experiment 'smoke': the workdir {afile} is a file, not a directory; pass --workdir the "
        "directory the experiment was created in")


def test_a_stopped_watcher_points_at_ctl_with_the_workdir(tmp_path):
    from rftui.ui.watch import WatchSource

    workdir = tmp_path / "runs"
    root = created(write(tmp_path / "a.yaml", smoke_text(max_steps=4, num_chunks=2)), workdir)
    exp, spec, store = open_experiment(str(root))
    source = WatchSource(exp, spec, store, interval=0.05)
    try:
        source.request_stop()
        stop = source.ops("stop", "r2").result(timeout=5)
        clone = source.ops("clone", "r1", {"edits": ["lora.r=8"]}).result(timeout=5)
    finally:
        source.close()
        store.close()
    assert stop.reason == (f"this watcher has stopped following smoke; use `rftui ctl smoke stop r2 --workdir "
                           f"{workdir}` or `rftui resume smoke --workdir {workdir}` continues")
    assert f"`rftui ctl smoke clone r1 --set KNOB=VALUE --workdir {workdir}`" in clone.reason
