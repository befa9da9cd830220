"""`rftui ctl` from a shell on an experiment no process is training: ls and op results as text and as JSON."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from engine_helpers import fake_experiment


def rftui(*args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "rftui", *args], capture_output=True, text=True, timeout=120, env=env)


def test_ctl_json_lists_runs_like_show_and_prints_each_ops_result(tmp_path):
    fake_experiment(tmp_path).store.close()
    where = ("--workdir", str(tmp_path))
    listed = rftui("ctl", "exp", "ls", "--json", *where)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == json.loads(rftui("show", "exp", "--json", *where).stdout)
    assert [run["id"] for run in json.loads(listed.stdout)["runs"]] == ["r1", "r2"]
    stopped = rftui("ctl", "exp", "stop", "r1", "--json", *where)
    assert json.loads(stopped.stdout) == {"op": "stop", "run": "r1", "run_id": "r1", "status": "applied",
                                          "reason": None, "new_run_id": None}
    cloned = rftui("ctl", "exp", "clone", "2", "--set", "learning_rate=5e-4", "--json", *where)
    # "run" as typed, "run_id" the run it resolved to (a script had to guess from a number or a label)
    assert {k: json.loads(cloned.stdout)[k] for k in ("run", "run_id", "new_run_id")} == {
        "run": "2", "run_id": "r2", "new_run_id": "r3"}
    refused = rftui("ctl", "exp", "resume", "r2", "--json", *where)
    reason = ("run r2 is pending; only stopped runs can be resumed; it trains when the experiment does: "
              f"`rftui resume exp --workdir {tmp_path}`")
    assert refused.returncode == 2  # a refusal is an error, and a script reads it as it reads a result
    assert json.loads(refused.stdout) == {"op": "resume", "run": "r2", "run_id": "r2", "status": "refused",
                                          "reason": reason, "new_run_id": None}
    unknown = json.loads(rftui("ctl", "exp", "stop", "7", "--json", *where).stdout)
    assert (unknown["run"], unknown["run_id"], unknown["status"]) == ("7", None, "refused")  # it resolved to no run
    assert refused.stderr == f"rftui: resume r2: refused: {reason}\n"
    runs = {run["id"]: run["status"] for run in json.loads(rftui("ctl", "exp", "ls", "--json", *where).stdout)["runs"]}
    assert runs == {"r1": "stopped", "r2": "pending", "r3": "pending"}


def test_a_refusal_carries_its_reason_apart_from_the_message(tmp_path):
    from rftui.control import submit
    from rftui.errors import OpRefused

    ctl = fake_experiment(tmp_path)
    with pytest.raises(OpRefused) as caught:
        submit(ctl.exp, ctl.spec, ctl.store, "delete", "r9", {})
    ctl.store.close()
    assert caught.value.reason == "no run 'r9' in experiment exp (runs: r1, r2)"
    assert str(caught.value) == f"delete r9: refused: {caught.value.reason}"
