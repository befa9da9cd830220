"""Create or reopen an experiment directory: data snapshots, resolved config, state.db rows."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

import yaml

from rftui.config.experiment import DEFAULT_WORKDIR, ExperimentSpec, total_steps
from rftui.config.hooks import HookError, check_hook_ref, resolve_hook
from rftui.config.problems import ConfigError, Problem
from rftui.config.runspec import hook_name
from rftui.engine.layout import ExperimentDir, closest_experiment, experiment_names
from rftui.engine.runs import TERMINAL
from rftui.engine.store import Store
from rftui.errors import ExperimentError, RftuiError
from rftui.tracking.redact import redact


def file_in_the_way(workdir: Path) -> Path | None:
    """`workdir` itself or the folder above it that exists as something other than a directory (a file)."""
    for path in (workdir, *workdir.parents):
        if path.exists() or path.is_symlink():
            return None if path.is_dir() else path
    return None


def not_a_directory_error(workdir: Path, blocker: Path) -> ExperimentError:
    inside = "" if blocker == workdir else f"{workdir} is inside {blocker}, and "
    return ExperimentError(f"workdir {inside}{blocker} is a file, not a directory; give --workdir (or the config's "
                           f"`workdir:`) a directory, or a path that does not exist yet (rftui creates it)")


def check_workdir(workdir: Path) -> None:
    blocker = file_in_the_way(workdir)
    if blocker is not None:
        raise not_a_directory_error(workdir, blocker)
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=workdir, prefix=".rftui-probe-", delete=True)
        probe.close()
    except OSError as exc:
        raise ExperimentError(f"workdir {workdir} is not writable ({exc.strerror or exc}); "
                              "choose another with --workdir") from None


def free_name(workdir: Path, name: str) -> str:
    """`name`, or `name-2`, `name-3`, ... when it is taken (for --new)."""
    candidate, n = name, 1
    while (workdir / candidate).exists():
        n += 1
        candidate = f"{name}-{n}"
    return candidate


def _split_problem(spec: ExperimentSpec, split: str, exc: Exception) -> Exception:
    """A `select:` that does not fit its data, as a problem at its key in the config file (line and all)."""
    from rftui.data.sources import SelectError

    if not isinstance(exc, SelectError) or spec.source_file is None:
        return exc
    return ConfigError([Problem(f"data.{split}.select", exc.message, exc.hint, spec.source_file)])


def _per_split(spec: ExperimentSpec, read: Callable[[Any, Path], Any]) -> dict[str, Any]:
    """`read(source, base_dir)` for the train and eval sources of a config file's `data:` section (None for a
    split without one); a `select:` that does not fit is a problem at its key."""
    base = Path(spec.data.base_dir)
    out: dict[str, Any] = {}
    for split in ("train", "eval"):
        source = getattr(spec.data, split)
        try:
            out[split] = read(source, base) if source is not None else None
        except RftuiError as exc:
            raise _split_problem(spec, split, exc) from None
    return out


def load_data(spec: ExperimentSpec) -> tuple[list[dict], list[dict] | None]:
    """The train and eval rows of a config file's `data:` section."""
    from rftui.data.sources import load_rows

    rows = _per_split(spec, load_rows)
    return rows["train"], rows["eval"]


def default_formatter(spec: ExperimentSpec) -> Callable[[dict], Any]:
    from rftui.data.formatting import make_chat_formatter

    data = spec.data
    if data is None:
        return make_chat_formatter()
    return make_chat_formatter(data.system_prompt, data.prompt_field, data.completion_field)


def format_splits(spec: ExperimentSpec, train_rows: Sequence[dict], eval_rows: Sequence[dict] | None
                  ) -> tuple[dict[str, tuple[list[dict], list[dict] | None]], dict[str, RftuiError]]:
    """Formatted (prompt/completion) rows per distinct formatting hook of the runs, and the hooks that failed."""
    from rftui.data.formatting import format_rows

    base_dir = Path(spec.data.base_dir) if spec.data else Path(".")
    out: dict[str, tuple[list[dict], list[dict] | None]] = {}
    failed: dict[str, RftuiError] = {}
    for run in spec.runs:
        key = hook_name(run.formatting_func) or "default"
        if key in out or key in failed:
            continue
        try:
            func = resolve_hook(run.formatting_func, base_dir) or default_formatter(spec)
        except HookError as exc:  # named where it was written (the config file's line, or run_fit's argument),
            # with the hint for its cause: no such module, a module that raises on import, no such function
            where = "data.formatting" if spec.source_file else "formatting_func"
            raise ConfigError([Problem(where, exc.message, exc.hint, spec.source_file)]) from None
        written = run.formatting_func if isinstance(run.formatting_func, str) else None  # row errors name it so
        try:
            train = format_rows(train_rows, _formatter(spec, run, func, train_rows), *_origin(spec, "train", train_rows),
                                name=written)
            evals = format_rows(eval_rows, _formatter(spec, run, func, eval_rows),
                                *_origin(spec, "eval", eval_rows), name=written) if eval_rows else None
        except RftuiError as exc:  # only the runs using this formatter fail
            failed[key] = exc
            continue
        out[key] = (train, evals)
    return out, failed


def _formatter(spec: ExperimentSpec, run: Any, func: Callable, rows: Sequence[dict]) -> Callable:
    """`func`, or, without a formatting function, TrlColumns for rows already in a shape TRL trains on (each split
    on its own: eval rows may come as instruction/response while the training rows are prompt/completion)."""
    from rftui.data.formatting import TrlColumns

    shape = _trl_shape(spec, rows[0]) if run.formatting_func is None and rows else None
    return TrlColumns(shape) if shape is not None else func


def _origin(spec: ExperimentSpec, split: str, rows: Sequence[dict]) -> tuple[str, list[int] | None, Any]:
    """How messages name the split's rows: by their row (and line) in the config's data source, before shuffling."""
    from rftui.data.sources import row_locator, source_label, source_positions

    source = getattr(spec.data, split, None) if spec.data else None
    if source is None:  # rows given from Python: named as run_fit's arguments are
        return f"{split}_dataset", None, None
    base = Path(spec.data.base_dir)
    return (f"{split} data ({source_label(source, base)})", source_positions(source, len(rows)),
            row_locator(source, base))


def _trl_shape(spec: ExperimentSpec, row: dict) -> frozenset[str] | None:
    """The TRL columns (prompt/completion, messages, text) of rows that need no formatting; None for rows that
    have the default formatter's prompt field (instruction/response rows and the like)."""
    from rftui.data.formatting import trl_shape

    prompt_field = spec.data.prompt_field if spec.data else "instruction"
    return None if prompt_field in row else trl_shape(row)


def _write_jsonl(path: Path, rows: Sequence[dict]) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def with_seeds(spec: ExperimentSpec) -> ExperimentSpec:
    """Runs without their own training seed take the experiment's (as run_fit(seed=...) does)."""
    runs = [r if "seed" in r.training else replace(r, training={**r.training, "seed": spec.seed}) for r in spec.runs]
    return spec.with_runs(runs)


def plan_steps(spec: ExperimentSpec, num_rows: int) -> dict[str, int]:
    steps, problems = {}, []
    for run in spec.runs:
        total = total_steps(run.training, num_rows)
        if total < spec.num_chunks:
            problems.append(Problem("num_chunks", f"run {run.run_id} has only {total} optimizer step{'s' * (total != 1)} "
                                    f"({num_rows} training row{'s' * (num_rows != 1)}) but num_chunks={spec.num_chunks}",
                                    "lower num_chunks, add data, or raise max_steps", spec.source_file))
        steps[run.run_id] = total
    if problems:
        raise ConfigError(problems)
    return steps


def create_experiment(spec: ExperimentSpec, train_rows: Sequence[dict], eval_rows: Sequence[dict] | None,
                      new: bool = False) -> tuple[ExperimentDir, ExperimentSpec, Store]:
    """Write a new experiment directory; nothing is left behind if any step fails."""
    from rftui.config.yaml_config import name_problem

    problem = name_problem(spec.name)
    if problem is not None:  # front ends check first; this keeps a bad name from ever becoming a path
        raise ConfigError([problem])
    workdir = Path(spec.workdir).expanduser().resolve()
    name = spec.name
    if (workdir / name).exists():
        if not new:
            raise taken_name_error(ExperimentDir.of(workdir, name), with_seeds(replace(spec, workdir=str(workdir))))
        name = free_name(workdir, name)
    spec = with_seeds(replace(spec, name=name, workdir=str(workdir)))
    steps = plan_steps(spec, len(train_rows))
    formatted, format_failures = format_splits(spec, train_rows, eval_rows)
    if not formatted:  # every run's formatter failed: nothing to train
        raise next(iter(format_failures.values()))
    check_workdir(workdir)  # only now, so a bad config or data leaves not even an empty workdir behind
    exp = ExperimentDir(workdir / name)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=workdir))
    try:
        staged = ExperimentDir(staging)
        for folder in (staged.data, staged.logs, staged.checkpoints, staged.adapters):
            folder.mkdir(parents=True)
        data_files = {}
        for i, (key, (train, evals)) in enumerate(formatted.items()):
            suffix = "" if i == 0 else str(i)
            _write_jsonl(staged.data_file("train", suffix), train)
            if evals:
                _write_jsonl(staged.data_file("eval", suffix), evals)
            data_files[key] = (str(exp.data_file("train", suffix)), str(exp.data_file("eval", suffix)) if evals else None)
        # Secrets (tokens in model_kwargs, ...) are never written: pass them through the environment
        # (HF_TOKEN) so that a resumed experiment still has them.
        stored_config = redact(spec.to_dict())
        staged.config_file.write_text(yaml.safe_dump(stored_config, sort_keys=False, allow_unicode=True))
        store = Store.create(staged.state_db)
        for meta_key, value in (("name", name), ("config", stored_config), ("num_chunks", spec.num_chunks),
                                ("seed", spec.seed), ("data_files", data_files), ("status", "created"),
                                ("train_rows", len(train_rows))):
            store.set_meta(meta_key, value)
        for i, run in enumerate(spec.runs):
            store.add_run(run.run_id, ord=i, label=run.label, spec=redact(run.to_dict()), total_steps=steps[run.run_id],
                          num_chunks=spec.num_chunks)
            failure = format_failures.get(hook_name(run.formatting_func) or "default")
            if failure is not None:
                store.update_run(run.run_id, status="failed", reason=str(failure))
        store.close()
        _log_format_failures(staged.logs / "controller.log", format_failures)
        os.rename(staging, exp.root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return exp, spec, Store.open(exp.state_db)


def taken_name_error(exp: ExperimentDir, spec: ExperimentSpec) -> ExperimentError:
    """Why `rftui run` will not reuse an existing experiment's name, and what to do: resume it only when this is
    its config and it has work left (resume always trains the stored config, never the file's)."""
    from rftui.engine.config_diff import config_changes

    fresh = (f"start a fresh experiment with --new (it creates {free_name(exp.workdir, exp.name)!r} and leaves "
             f"{exp.name!r} as it is) or give this one another `name:`")
    where = f"experiment {exp.name!r} already exists in {exp.workdir}"
    try:  # not readonly: SQLite's read-only connection to a WAL database leaves -wal and -shm files behind
        store = Store.open(exp.state_db)
    except (ExperimentError, OSError) as exc:  # a folder of that name that is no (readable) experiment
        why = "it has no state.db" if not exp.state_db.exists() else str(exc)
        return ExperimentError(f"{exp.root} already exists and is not an experiment rftui can read ({why}); "
                               f"{fresh}")
    try:
        stored, status = store.get_meta("config") or {}, store.get_meta("status")
        pid = store.get_meta("controller_pid") if _owned(store) else None
    finally:
        store.close()
    changes = config_changes(stored, redact(spec.to_dict()))
    if changes:
        listed = "".join(f"\n  {line}" for line in changes)
        keeps = "it finished with its stored config" if status == "finished" else (
            f"`{exp.resume_command}` would continue it with its stored config, not this file's")
        return ExperimentError(f"{where} with a different config:{listed}\n{keeps}. To train this config, {fresh}")
    if status == "finished":
        return ExperimentError(f"{where} and already finished with this config; see its results with "
                               f"`{exp.command('show')}`, or to train it again, {fresh}")
    if pid:
        return ExperimentError(f"{where} and is running this config (process {pid}); watch it with "
                               f"`{exp.command('watch')}`, or {fresh}")
    return ExperimentError(f"{where}; continue it with `{exp.resume_command}`, or {fresh}")


def _owned(store: Store) -> bool:
    from rftui.control import controller_alive  # the one liveness rule (pid and start time)

    return controller_alive(store)


def _log_format_failures(path: Path, failures: dict[str, RftuiError]) -> None:
    """The runs show a one-line reason; the log keeps each failing formatter's traceback."""
    if not failures:
        return
    with open(path, "a", encoding="utf-8") as handle:
        for key, exc in failures.items():
            handle.write(f"formatting function {key} failed; the runs using it are marked failed:\n")
            handle.write("".join(traceback.format_exception(exc)) + "\n")


def forget_cut_work(store: Store) -> int:
    """Before a new controller takes over a stopped or crashed experiment: quanta still `running` were cut
    short (marked lost; returns how many), and the points a continued run logged past its checkpoint are
    dropped, since it redoes those steps. Completed, failed and deleted runs keep their whole history:
    nothing redoes it, and MLflow holds the same points."""
    lost = store.mark_running_quanta_lost()
    for row in store.list_runs():
        if row["status"] not in TERMINAL:
            store.delete_metrics_after(row["run_id"], row.get("steps_done") or 0)
    return lost


def unloadable_hook(ref: Any) -> bool:
    """A hook recorded by a name no other process can import: a function of the script that created the
    experiment from Python (`__main__:fn`), a lambda or a function defined inside another function."""
    if not isinstance(ref, str) or ":" not in ref:
        return False
    module, qualname = ref.split(":", 1)
    return module in ("__main__", "?") or "<" in qualname


def _needed_hooks(spec: ExperimentSpec, store: Store) -> dict[str, list[str]]:
    """The hook references that the runs still to train would call, each with what uses it (`create_model`,
    `compute_metrics of r1, r2`). Formatting functions are not among them: data is formatted at creation."""
    unfinished = [row for row in store.list_runs() if row["status"] not in TERMINAL]
    uses: dict[str, list[str]] = {}
    if unfinished and isinstance(spec.create_model, str):
        uses.setdefault(spec.create_model, []).append("create_model")
    metric_runs: dict[str, list[str]] = {}
    for row in unfinished:
        ref = (row.get("spec") or {}).get("compute_metrics")
        if isinstance(ref, str):
            metric_runs.setdefault(ref, []).append(row["run_id"])
    for ref, run_ids in metric_runs.items():
        uses.setdefault(ref, []).append(f"compute_metrics of {', '.join(run_ids)}")
    return uses


def script_hooks(spec: ExperimentSpec, store: Store) -> dict[str, list[str]]:
    """The needed hooks that no other process can import (functions of the creating script)."""
    return {ref: uses for ref, uses in _needed_hooks(spec, store).items() if unloadable_hook(ref)}


def unfound_hooks(spec: ExperimentSpec, store: Store) -> list[str]:
    """Needed hooks named as module:function whose module or file cannot be found from here (checked
    without importing): resuming from another directory or environment would fail every run at start.
    Relative to the config file's folder; an experiment created from Python (no data section) resolves its
    hooks from the current directory, as its workers do."""
    base = Path(spec.data.base_dir) if spec.data is not None else Path(".")
    found = []
    for ref, uses in _needed_hooks(spec, store).items():
        problem = None if unloadable_hook(ref) else check_hook_ref(ref, base)
        if problem:
            found.append(f"`{ref}` ({' and '.join(uses)}): {problem}")
    return found


def script_hooks_error(exp: ExperimentDir, hooks: dict[str, list[str]], from_python: bool) -> ExperimentError:
    listed = "; ".join(f"`{ref}` ({' and '.join(uses)})" for ref, uses in hooks.items())
    call = f'Experiment("{exp.name}", workdir="{exp.workdir}").resume(create_model_fn=...)'
    if from_python:
        return ExperimentError(
            f"experiment {exp.name} needs functions of the script that created it, and this program's __main__ "
            f"does not define them: {listed}. Call {call} from that script, after its definitions (or pass "
            "create_model_fn=); nothing was changed")
    return ExperimentError(
        f"experiment {exp.name} was created from Python with functions defined in its script: {listed}; "
        f"`rftui resume` cannot load them, so every run would fail at start. Continue it from Python instead: "
        f"in that script, after its definitions, call {call}; or move the functions into a module and name "
        "them as module:function. Nothing was changed")


def open_experiment(name_or_path: str, workdir: str | Path | None = None, readonly: bool = False
                    ) -> tuple[ExperimentDir, ExperimentSpec, Store]:
    """An existing experiment by name (in workdir) or by its directory path."""
    candidates = [Path(name_or_path)]
    if workdir is not None or not Path(name_or_path).is_dir():  # a file of that name (a config) hides nothing
        candidates.insert(0, Path(workdir or DEFAULT_WORKDIR) / name_or_path)
    for path in candidates:
        exp = ExperimentDir(path.expanduser().resolve())
        try:
            if exp.exists():
                store = Store.open(exp.state_db, readonly=readonly)
                spec = ExperimentSpec.from_dict(store.get_meta("config"))
                return exp, spec, store
        except PermissionError as exc:  # experiment directories are private to their owner (mode 0700)
            raise ExperimentError(f"experiment {exp.root} is not accessible to you ({exc.strerror}); it belongs "
                                  "to the user who created it: run rftui as that user") from None
    where = Path(workdir or DEFAULT_WORKDIR).expanduser().resolve()
    blocker = file_in_the_way(where)
    if blocker is not None:
        raise ExperimentError(f"no experiment {name_or_path!r}: the workdir {where} is "
                              f"{'a file' if blocker == where else f'inside {blocker}, a file'}, not a directory; "
                              "pass --workdir the directory the experiment was created in")
    if Path(name_or_path).is_file():
        raise config_given_error(name_or_path, workdir)
    raise no_experiment_error(name_or_path, where, f"list them with `ls {where}`, or pass --workdir where it was "
                              "created")


def no_experiment_error(name: str, workdir: Path, what_to_do: str, list_names: bool = False) -> ExperimentError:
    """No experiment `name` in `workdir` (the CLI's and the API's words): a mistyped name gets the closest one
    there; otherwise, with `list_names`, the names it holds. `what_to_do` ends the message."""
    close = closest_experiment(workdir, name)
    names = experiment_names(workdir) if list_names and close is None else []
    if close is not None:
        there = f" (did you mean {close!r}?)"
    elif names:
        there = f" (it holds {', '.join(names[:8])}{', ...' if len(names) > 8 else ''})"
    else:
        there = ""
    return ExperimentError(f"no experiment {name!r} in {workdir}{there}; {what_to_do}")


def config_given_error(path: str, workdir: str | Path | None) -> ExperimentError:
    """A config file given where an experiment's name belongs (`rftui resume exp.yaml`): name its experiment."""
    head = f"{path} is a file, not an experiment: this command takes an experiment's name (or its directory)"
    try:
        top = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        top = None
    name = top.get("name") if isinstance(top, dict) else None
    if not isinstance(name, str) or not name:
        return ExperimentError(f"{head}; `rftui run {path}` is what takes a config file")
    # where `rftui run` would put it: --workdir first, then the file's `workdir:`
    there = workdir or (top.get("workdir") if isinstance(top.get("workdir"), str) else None) or DEFAULT_WORKDIR
    exp = ExperimentDir.of(there, name)
    if exp.exists():
        return ExperimentError(f"{head}; it is the config of experiment {name!r}: give "
                               f"`{name} --workdir {exp.workdir}` instead")
    run = f"rftui run {path}" + (f" --workdir {exp.workdir}" if workdir else "")
    return ExperimentError(f"{head}; it is the config of experiment {name!r}, which does not exist in "
                           f"{exp.workdir} yet: `{run}` creates it")
