"""Security: no network listener, nothing unpickled from disk, YAML only through safe_load, experiment directories
private to their owner (the control channel is the store inside), secrets never written anywhere."""
from __future__ import annotations

import ast
import os
import shutil
import sqlite3
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from reliability_helpers import ENV, ROOT, cli, cli_popen, descendants, kill_tree_leftovers, query, write_config

MODEL_TOKEN = "hf_kwargsSecretToken0123456789abcdefXYZ"
ENV_TOKEN = "hf_environmentSecret9876543210zyxwvuTS"


def sockets(pids: list[int]) -> list[tuple[int, object]]:
    found = []
    for pid in pids:
        try:
            found += [(pid, c) for c in psutil.Process(pid).net_connections(kind="inet")]
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return found


def test_a_run_opens_no_network_listener_and_writes_no_secret(tmp_path):
    config = write_config(tmp_path, "secret", max_steps=4, num_chunks=2)
    config.write_text(config.read_text().replace(
        "model: {name: rftui/tiny-llama}", f"model: {{name: rftui/tiny-llama, kwargs: {{token: {MODEL_TOKEN}}}}}"))
    workdir = tmp_path / "runs"
    env = {**ENV, "HF_TOKEN": ENV_TOKEN}
    proc = cli_popen("run", config, "--no-ui", "--workdir", workdir, env=env)
    db = workdir / "secret" / "state.db"
    tree, seen = [], []
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:  # look while every process is up
            time.sleep(0.1)
            try:
                ready = db.exists() and query(db, "select count(*) from quanta")[0][0] >= 1
            except sqlite3.Error:
                continue
            if ready:
                tree = [proc.pid, *descendants(proc.pid)]
                seen = sockets(tree)
                break
        out, err = proc.communicate(timeout=240)
    finally:
        kill_tree_leftovers(tree)
    assert proc.returncode == 0, err
    assert len(tree) >= 3  # controller, forkserver, worker (and the resource tracker)
    assert [(pid, c) for pid, c in seen if c.status == psutil.CONN_LISTEN] == []
    assert [(pid, c) for pid, c in seen if c.type == 2] == []  # SOCK_DGRAM: no UDP socket either
    show = cli("show", "secret", "--workdir", workdir, "--json")
    assert show.returncode == 0
    # Nothing the run wrote or printed holds either secret: MLflow (params, tags, its db), experiment.yaml,
    # state.db, logs, data snapshots, checkpoints, final adapters, the headless output, `rftui show`.
    texts = {"stdout": out, "stderr": err, "show": show.stdout}
    files = [p for p in workdir.rglob("*") if p.is_file()]
    assert workdir / "mlflow.db" in files and workdir / "secret" / "experiment.yaml" in files
    for secret in (MODEL_TOKEN, ENV_TOKEN):
        for name, text in texts.items():
            assert secret not in text, name
        for path in files:
            assert secret.encode() not in path.read_bytes(), path
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{workdir}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("secret").experiment_id])
    assert len(runs) == 2 and all(r.data.params["model_kwargs.token"] == "***" for r in runs)


# ----------------------------------------------------------------------------- static: no unpickling, safe YAML

UNPICKLERS = {("pickle", "load"), ("cloudpickle", "load"), ("dill", "load"), ("dill", "loads"),
              ("joblib", "load"), ("marshal", "load"), ("marshal", "loads"), ("shelve", "open"),
              ("pd", "read_pickle"), ("pandas", "read_pickle"), ("yaml", "unsafe_load"), ("yaml", "full_load"),
              ("yaml", "unsafe_load_all"), ("yaml", "full_load_all")}
PIPE_ONLY = {("pickle", "loads"), ("cloudpickle", "loads")}  # allowed where bytes come from a worker pipe
PIPE_MODULES = {"rftui/engine/worker.py"}


def calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name):
            yield node, (node.func.value.id, node.func.attr)


def keyword(node: ast.Call, name: str):
    for kw in node.keywords:
        if kw.arg == name:
            return ast.unparse(kw.value)
    return None


def test_nothing_is_ever_unpickled_from_disk_and_yaml_is_parsed_safely():
    problems, pipe_loads = [], []
    for path in sorted((ROOT / "rftui").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        tree = ast.parse(path.read_text(), filename=rel)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module in ("pickle", "cloudpickle", "dill", "yaml", "torch"):
                bad = {a.name for a in node.names} & {"load", "loads", "unsafe_load", "full_load", "Loader",
                                                      "UnsafeLoader", "FullLoader"}
                if bad:
                    problems.append(f"{rel}:{node.lineno}: from {node.module} import {sorted(bad)}")
        for node, (module, attr) in calls(tree):
            where = f"{rel}:{node.lineno}: {ast.unparse(node)[:90]}"
            if (module, attr) in UNPICKLERS:
                problems.append(where)
            elif (module, attr) in PIPE_ONLY:
                (pipe_loads if rel in PIPE_MODULES else problems).append(where)
            elif (module, attr) == ("torch", "load") and keyword(node, "weights_only") != "True":
                problems.append(where + " (torch.load needs weights_only=True)")
            elif module in ("np", "numpy") and attr == "load" and keyword(node, "allow_pickle") not in (None, "False"):
                problems.append(where)
            elif (module, attr) in (("yaml", "load"), ("yaml", "load_all")) and keyword(node, "Loader") not in (
                    "yaml.SafeLoader", "yaml.CSafeLoader", "SafeLoader", "CSafeLoader"):
                problems.append(where + " (use yaml.safe_load)")
    assert problems == []
    assert pipe_loads  # the scan does see the worker's pipe reads, so it would see others


# ----------------------------------------------------------------------------- the control channel


def make_experiment(workdir: Path):
    from dataclasses import replace

    from rftui.config.yaml_config import load_experiment_file
    from rftui.data.sources import load_rows
    from rftui.engine.setup import create_experiment
    from engine_helpers import SAMPLES

    spec = replace(load_experiment_file(SAMPLES / "smoke.yaml"), workdir=str(workdir))
    base = Path(spec.data.base_dir)
    exp, _, store = create_experiment(spec, load_rows(spec.data.train, base), load_rows(spec.data.eval, base))
    store.close()
    return exp


def test_experiment_directory_and_its_store_belong_to_the_owner_only(tmp_path):
    exp = make_experiment(tmp_path / "runs")
    info = exp.root.stat()
    assert stat.S_IMODE(info.st_mode) == 0o700 and info.st_uid == os.getuid()
    assert stat.S_IMODE(exp.state_db.stat().st_mode) & 0o022 == 0  # nobody else may write the op queue


SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin:/bin")


def _system_python_has_yaml() -> bool:
    if not SYSTEM_PYTHON:
        return False
    return subprocess.run([SYSTEM_PYTHON, "-c", "import yaml"], capture_output=True).returncode == 0


@pytest.mark.skipif(os.geteuid() != 0 or not _system_python_has_yaml(),
                    reason="needs root (to act as another user) and a system python3 with PyYAML")
def test_another_user_cannot_submit_ops_and_gets_a_clear_message():
    """As `nobody`: ctl/show/resume on someone else's experiment are refused with exit 2, not a traceback.
    (The venv's interpreter lives under /root, so the unprivileged side runs the system python3: these commands
    need only the standard library and PyYAML.)"""
    workdir = Path(tempfile.mkdtemp(prefix="rftui-owner-", dir="/tmp"))
    try:
        workdir.chmod(0o755)  # others may look into the workdir, not into the experiment
        exp = make_experiment(workdir)

        def as_nobody():
            os.setgid(65534)
            os.setuid(65534)

        ops_before = query(exp.state_db, "select count(*) from ops")[0][0]
        for argv in (["ctl", "smoke", "stop", "r1"], ["show", "smoke"], ["resume", "smoke", "--no-ui"]):
            result = subprocess.run([SYSTEM_PYTHON, "-m", "rftui", *argv, "--workdir", str(workdir)],
                                    capture_output=True, text=True, preexec_fn=as_nobody, cwd="/tmp", timeout=60,
                                    env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": "/tmp"})
            assert result.returncode == 2, result.stderr
            assert "Traceback" not in result.stderr
            assert "is not accessible to you" in result.stderr and "belongs to the user who created it" in result.stderr
        assert query(exp.state_db, "select count(*) from ops")[0][0] == ops_before
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def test_a_resumed_run_takes_its_redacted_secret_from_the_environment_not_the_mask():
    """state.db holds "***" where the token was; a resumed run must not pass "***" to from_pretrained (it would
    override HF_TOKEN and fail on the hub), so the masked entry is dropped."""
    from rftui.engine.runs import RunRecord

    spec = {"run_id": "r1", "label": "r1", "model_name": "org/gated", "training": {}, "lora": None,
            "model_kwargs": {"token": "***", "torch_dtype": "float32"}}
    rec = RunRecord.from_store({"spec": spec, "ord": 0, "status": "waiting", "total_steps": 4, "num_chunks": 2,
                                "steps_done": 2, "chunks_done": 1})
    assert dict(rec.spec.model_kwargs) == {"torch_dtype": "float32"}
    from rftui.config.runspec import RunSpec  # the spec read from experiment.yaml drops it the same way

    both = {**spec, "tokenizer_kwargs": {"token": "***", "use_fast": True}}
    read = RunSpec.from_dict(both)
    assert (dict(read.model_kwargs), dict(read.tokenizer_kwargs)) == ({"torch_dtype": "float32"}, {"use_fast": True})
