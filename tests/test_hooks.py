"""A hook named as module:function or file.py:function that cannot be loaded: the message and hint fit the cause
(no such module or file, a module that raises on import, no such function)."""
from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import pytest

from engine_helpers import SAMPLES

from rftui.config.hooks import HookError, resolve_hook
from rftui.config.problems import ConfigError
from rftui.config.yaml_config import load_experiment_file
from rftui.engine.setup import format_splits


def write(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_text(text)
    return path


def refusal(ref, base) -> HookError:
    with pytest.raises(HookError) as info:
        resolve_hook(ref, base)
    return info.value


def test_a_missing_file_or_module_says_where_it_was_looked_for(tmp_path):
    err = refusal("hooks/fmt.py:fmt", tmp_path)
    assert err.message == (f"hook `hooks/fmt.py:fmt`: file {tmp_path.resolve()}/hooks/fmt.py does not exist "
                           f"(relative to {tmp_path.resolve()})")
    assert err.hint == ("name an existing Python file, as path/to/file.py:function, or an importable module, as "
                        "module:function")
    err = refusal("no_such_hooks_module:fmt", tmp_path)
    assert err.message == ("hook `no_such_hooks_module:fmt`: module `no_such_hooks_module` cannot be found: it is not "
                           f"installed in this Python environment and there is no {tmp_path.resolve()}/"
                           "no_such_hooks_module.py")
    assert err.hint.startswith("install the module or put its folder on PYTHONPATH")


def test_a_module_that_raises_on_import_is_named_with_the_exception_and_its_line(tmp_path):
    write(tmp_path, "broken.py", "import json\n\n\ndef helper():\n    return {}['key']\n\n\nhelper()\n")
    err = refusal("broken.py:fmt", tmp_path)
    assert err.message == (f"hook `broken.py:fmt`: importing broken.py raised KeyError: 'key' "
                           f"({tmp_path.resolve()}/broken.py, line 5)")
    assert err.hint == "fix the module so that it imports; the function cannot be loaded until it does"
    assert isinstance(err.__cause__, KeyError)  # the traceback stays reachable for a log


def test_a_package_whose_init_raises_is_named_at_that_line(tmp_path, monkeypatch):
    (tmp_path / "rftui_test_pkg").mkdir()
    write(tmp_path / "rftui_test_pkg", "__init__.py", "X = 1\nraise RuntimeError('not configured')\n")
    write(tmp_path / "rftui_test_pkg", "fmt.py", "def fmt(row):\n    return row\n")
    monkeypatch.setattr(sys, "path", list(sys.path))  # resolve_hook puts the base folder on sys.path
    err = refusal("rftui_test_pkg.fmt:fmt", tmp_path)
    assert err.message == ("hook `rftui_test_pkg.fmt:fmt`: importing rftui_test_pkg.fmt raised RuntimeError: not "
                           f"configured ({tmp_path.resolve()}/rftui_test_pkg/__init__.py, line 2)")


def test_a_missing_function_lists_the_functions_the_module_defines(tmp_path):
    write(tmp_path, "fmt.py", "import json\nfrom os.path import join\n\nLIMIT = 3\n\n\ndef chat(row):\n    return row\n\n\n"
                              "def plain(row):\n    return row\n\n\ndef _private(row):\n    return row\n")
    err = refusal("fmt.py:chta", tmp_path)
    assert err.message == "hook `fmt.py:chta`: `chta` is not a function in fmt.py"
    assert err.hint == ("name a function that the module defines, as module:function or file.py:function; it "
                        "defines `chat`, `plain`")
    assert str(err) == f"{err.message} — {err.hint}"
    assert refusal("fmt.py:LIMIT", tmp_path).message == "hook `fmt.py:LIMIT`: `LIMIT` is not a function in fmt.py"


def test_run_fit_names_its_formatting_func_argument_with_the_hint_of_the_cause(tmp_path, monkeypatch):
    """As run_fit builds it: no config file, no data section; hooks resolve from the current folder."""
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "fmt.py", "raise ImportError('needs a GPU build')\n")
    spec = load_experiment_file(SAMPLES / "smoke.yaml")
    rows = [{"instruction": "q", "response": "a"}] * 4
    for ref, message, hint in [
        ("fmt.py:fmt", f"importing fmt.py raised ImportError: needs a GPU build ({tmp_path.resolve()}/fmt.py, line 1)",
         "fix the module so that it imports"),
        ("nowhere.py:fmt", f"file {tmp_path.resolve()}/nowhere.py does not exist", "name an existing Python file"),
    ]:
        python_spec = replace(spec, source_file=None, data=None,
                              runs=tuple(replace(r, formatting_func=ref) for r in spec.runs))
        with pytest.raises(ConfigError) as info:
            format_splits(python_spec, rows, None)
        problem, = info.value.problems
        assert problem.path == "formatting_func" and problem.file is None
        assert message in problem.message and problem.hint.startswith(hint)


def test_a_formatting_function_from_a_file_is_named_in_row_errors_as_written(tmp_path, monkeypatch):
    """Not by the internal module name its file was loaded under (rftui_hooks_fmt:chat)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "hooks").mkdir()
    write(tmp_path, "hooks/fmt.py", "def chat(row):\n    if row['instruction'] == 'q2':\n"
                                    "        raise ValueError('no reply')\n    return {'text': row['instruction']}\n\n\n"
                                    "def plain(row):\n    return [row]\n")
    spec = load_experiment_file(SAMPLES / "smoke.yaml")
    rows = [{"instruction": "q1"}, {"instruction": "q2"}]
    failures = {}
    for ref in ("hooks/fmt.py:chat", "hooks/fmt.py:plain"):
        python_spec = replace(spec, source_file=None, data=None,
                              runs=tuple(replace(r, formatting_func=ref) for r in spec.runs))
        formatted, failed = format_splits(python_spec, rows, None)
        assert formatted == {}
        failures.update(failed)
    assert str(failures["hooks/fmt.py:chat"]) == ("train_dataset row 1: formatting function hooks/fmt.py:chat raised "
                                                  "ValueError: no reply. Row: {'instruction': 'q2'}")
    assert str(failures["hooks/fmt.py:plain"]).startswith(
        "train_dataset row 0: formatting function hooks/fmt.py:plain returned a list, not a dict; expected ")


@pytest.mark.parametrize("ref, hint", [
    ("hooks/nowhere.py:fmt", "name an existing Python file, as path/to/file.py:function, or an importable module, "
                             "as module:function"),
    ("no_such_module_xyz:fmt", "install the module or put its folder on PYTHONPATH, or name its file instead, as "
                               "path/to/file.py:function"),
    ("fmt_without_colon", "name a function as module:function or file.py:function"),
])
def test_a_config_files_unfound_hook_gets_the_hint_for_its_cause(tmp_path, ref, hint):
    text = (SAMPLES / "smoke.yaml").read_text().replace("data/support.jsonl", str(SAMPLES / "data/support.jsonl"))
    config = write(tmp_path, "exp.yaml", text.replace("data:\n", f"data:\n  formatting: {ref}\n", 1))
    with pytest.raises(ConfigError) as info:
        load_experiment_file(config)
    problem, = info.value.problems
    assert problem.path == "data.formatting" and problem.hint == hint
