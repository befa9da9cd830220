"""The Python API RapidFire users already write: Experiment(...).run_fit(...), get_results(), end()."""
from __future__ import annotations

import sys
from concurrent.futures import TimeoutError as FutureTimeout  # not the builtin TimeoutError before Python 3.11
from pathlib import Path
from typing import Any, Callable

from rftui.config.expand import expand
from rftui.config.experiment import DEFAULT_WORKDIR, ExperimentSpec
from rftui.config.knobs import RFGridSearch, RFRandomSearch
from rftui.config.problems import ConfigError, Problem
from rftui.config.rules import coerce
from rftui.config.validate import coerced_search, validate_search
from rftui.engine.layout import ExperimentDir
from rftui.errors import ExperimentError

OP_ANSWER_SECONDS = 30.0  # how long an op waits for run_fit's training loop to read it


class Experiment:
    """A named experiment in `workdir` (default ./rftui-runs)."""

    def __init__(self, experiment_name: str, mode: str = "fit", workdir: str | Path | None = None, *,
                 experiment_path: str | Path | None = None):
        from rftui.config.yaml_config import name_problem  # the config's `name:` rule

        if experiment_path is not None:  # RapidFire AI's name for the directory experiments live in
            if workdir is not None:
                raise ConfigError([Problem("experiment_path", "given together with workdir, which names the same "
                                           "directory", "pass only one of them")])
            workdir = experiment_path
        if mode != "fit":
            raise ExperimentError(f"mode {mode!r} is not supported; use mode='fit'")
        problem = name_problem(experiment_name, "experiment_name", example='Experiment(experiment_name="chatqa-lite")')
        if problem is not None:  # the name is a directory name: checked before it becomes a path
            raise ConfigError([problem])
        self.name = experiment_name
        self._base_name = experiment_name  # each run_fit takes base, base-2, base-3, ...: suffixes never stack
        self.workdir = Path(workdir or DEFAULT_WORKDIR).expanduser().resolve()
        self.exp: ExperimentDir | None = None
        self.controller = None
        existing = ExperimentDir.of(self.workdir, experiment_name)
        if existing.exists():
            self.exp = existing

    @property
    def experiment_name(self) -> str:
        """RapidFire AI's name for `name`: the experiment's actual name (base, base-2, ...)."""
        return self.name

    def __repr__(self) -> str:
        return f"Experiment({self.name!r}, workdir={str(self.workdir)!r})"

    # ------------------------------------------------------------------ training

    def run_fit(self, config_group: Any, create_model_fn: Callable[[dict], tuple] | None, train_dataset: Any,
                eval_dataset: Any = None, num_chunks: int = 4, seed: int = 42, *, workers: int = 1,
                device: str = "auto", tracking_uri: str | None = None, quiet: bool = False) -> None:
        """Train every config of the group concurrently in `num_chunks` chunks (blocks until done)."""
        from rftui.data.in_memory import rows_from_dataset
        from rftui.engine.setup import create_experiment
        from rftui.training.lora_check import check_lora

        num_chunks, seed, workers = coerce("int", num_chunks), coerce("int", seed), coerce("int", workers)
        problems = [*_integer_problems(num_chunks=(num_chunks, 1, 4), seed=(seed, 0, 42)),
                    *_engine_problems(workers, device, tracking_uri)]
        config_group = coerced_search(config_group)  # max_steps="4" is 4, as in a config file
        problems += validate_search(config_group)
        if problems:
            raise ConfigError(problems)
        runs = expand(config_group, space_checked=True)  # validate_search counted a random search's space
        if create_model_fn is None:  # every run would fail in its worker: refuse before creating anything
            from rftui.training.model_loading import check_models_available

            check_models_available(runs)
        trainer = config_group.trainer_type if isinstance(config_group, (RFGridSearch, RFRandomSearch)) else "SFT"
        spec = ExperimentSpec(name=self._base_name, runs=tuple(runs), num_chunks=num_chunks, seed=seed,
                              trainer_type=trainer, workdir=str(self.workdir), tracking_uri=tracking_uri,
                              create_model=create_model_fn)
        train_rows = rows_from_dataset(train_dataset, "train_dataset")
        eval_rows = rows_from_dataset(eval_dataset, "eval_dataset") if eval_dataset is not None else None
        check_lora(spec)  # as `rftui run`: LoRA settings the model cannot take are refused before anything exists
        self.exp, spec, store = create_experiment(spec, train_rows, eval_rows, new=True)
        self.name = self.exp.name
        self._drive(spec, store, {r.run_id: r for r in spec.runs}, create_model_fn, workers, device,
                    tracking_uri, quiet)

    def _drive(self, spec, store, live_specs, create_model_fn, workers, device, tracking_uri, quiet) -> None:
        from rftui.engine.assemble import make_controller
        from rftui.headless import HeadlessView

        controller = make_controller(self.exp, spec, store, workers=workers, device=device,
                                     tracking_uri=tracking_uri, create_model=create_model_fn,
                                     live_specs=live_specs)
        self.controller = controller
        view = None if quiet else HeadlessView(controller, sys.stdout, json_lines=False, tty=False)
        interrupted = None
        try:
            events = controller.start()
            if view is not None:  # `rftui run --no-ui`'s first line: the name run_fit took, and where it lives
                view.start_line()
                view.render(events)  # a resumed experiment's earlier warnings among them
                events = []
            while not controller.finished:
                events += controller.step(0.25)
                if view is not None:
                    view.render(events)
                events = []
        except KeyboardInterrupt as exc:  # Ctrl-C: every run checkpoints at its next optimizer step
            interrupted = exc
            controller.begin_shutdown()
            while not controller.finished:
                events = controller.step(0.25)
                if view is not None:
                    view.render(events)
        finally:
            late = controller.close()
            self.controller = None
        if view is not None:
            view.render(late)
            view.resume_with = _resume_call(create_model_fn)  # the leaderboard's title says it if interrupted
            view.finish()
            if interrupted is not None:  # what was kept and how to go on, before the KeyboardInterrupt's traceback
                view.line(f"interrupted: checkpointed; continue with {view.resume_with}")
        if interrupted is not None:
            raise interrupted

    # ------------------------------------------------------------------ results

    def _missing(self) -> ExperimentError:
        """No experiment by this name in this workdir: a new name before run_fit, a typo, or another workdir
        (the default ./rftui-runs is relative to the current directory)."""
        from rftui.engine.setup import no_experiment_error

        return no_experiment_error(self.name, self.workdir, "run_fit creates it, or pass workdir= where it was "
                                   "created", list_names=True)

    def _store(self):
        from rftui.engine.store import Store

        if self.exp is None or not self.exp.exists():
            raise self._missing()
        return Store.open(self.exp.state_db, readonly=True)

    def get_results(self):
        """Per-step metrics as a pandas DataFrame: run_id, label, step, then one column per metric."""
        import pandas as pd

        store = self._store()
        labels = {row["run_id"]: row["label"] for row in store.list_runs()}
        points = store.all_metrics()
        store.close()
        if not points:
            return pd.DataFrame(columns=["run_id", "label", "step"])
        frame = pd.DataFrame(points)
        table = frame.pivot_table(index=["run_id", "step"], columns="name", values="value", aggfunc="last")
        table = table.reset_index()
        table.insert(1, "label", table["run_id"].map(labels))
        table.columns.name = None
        return table.sort_values(["run_id", "step"], key=lambda c: c.map(_run_order) if c.name == "run_id" else c,
                                 ignore_index=True)

    def get_runs_info(self):
        """One row per run: run_id (RapidFire AI's name, and get_results' key), label, status, reason, progress,
        parent, warm start, the last loss / eval_loss / rougeL / bleu (floats, NaN when not logged) and config,
        the run's knobs by the names of `rftui plan --json` and clone edits."""
        import pandas as pd

        from rftui.report import SHOWN_METRICS, show_data

        store = self._store()
        try:
            data = show_data(self.exp, store)
            knobs = {row["run_id"]: dict((row.get("spec") or {}).get("knobs") or {}) for row in store.list_runs()}
        finally:
            store.close()
        rows = []
        for run in data["runs"]:
            row = {"run_id": run["id"], **{k: v for k, v in run.items() if k not in ("id", "metrics")}}
            # float columns even when no run logged a metric: an all-None column is object dtype, which
            # nsmallest/idxmin refuse
            row.update({name: _float(run["metrics"].get(name)) for name in SHOWN_METRICS})
            row["config"] = knobs.get(run["id"], {})
            rows.append(row)
        columns = ["run_id", "label", "status", "reason", "parent", "warm_start", "steps_done", "total_steps",
                   "chunks_done", "num_chunks", *SHOWN_METRICS, "config"]
        return pd.DataFrame(rows, columns=columns)

    # ------------------------------------------------------------------ interactive control

    def _op(self, op: str, run: str | int, args: dict | None = None) -> str | None:
        from rftui.control import submit
        from rftui.engine.controller import ControllerClosed
        from rftui.engine.setup import open_experiment
        from rftui.errors import OpRefused

        if isinstance(run, bool) or not isinstance(run, (str, int)):
            raise OpRefused(f"{op}: a run is named by its id ('r3') or number (3), got {run!r}")
        run = str(run)  # state.db and the op log hold run ids as text
        controller = self.controller
        if controller is not None:  # run_fit is training in another thread
            try:
                resolved = controller.request(op, run, args, source="api").result(timeout=OP_ANSWER_SECONDS)
            except ControllerClosed:  # run_fit ended just now: the op goes to the stored experiment below
                resolved = None
            except FutureTimeout:
                raise ExperimentError(f"experiment {self.name!r} did not answer {op} {run} within "
                                      f"{OP_ANSWER_SECONDS:.0f} s; it is applied when its training loop reads it"
                                      ) from None
            if resolved is not None:
                if resolved.status != "applied":
                    raise OpRefused(f"{op} {run}: refused: {resolved.reason}", reason=resolved.reason)
                return resolved.new_run_id
        if self.exp is None:
            raise self._missing()
        exp, spec, store = open_experiment(str(self.exp.root))
        try:
            return submit(exp, spec, store, op, run, args or {}, source="api").get("new_run_id")
        finally:
            store.close()

    def stop_run(self, run: str | int) -> None:
        """Stop a run at its next optimizer step (checkpointed, resumable)."""
        self._op("stop", run)

    def resume_run(self, run: str | int) -> None:
        self._op("resume", run)

    def delete_run(self, run: str | int) -> None:
        self._op("delete", run)

    def clone_run(self, run: str | int, edits: dict | list | None = None, warm_start: bool = False) -> str:
        """A new run from `run`'s config plus `edits` ({"learning_rate": 5e-4, "lora.r": 16}, or
        ["learning_rate=5e-4"] as on the command line); returns its id."""
        from rftui.errors import OpRefused

        if isinstance(edits, (list, tuple)) and all(isinstance(item, str) for item in edits):
            edits = list(edits)
        elif edits is None or isinstance(edits, dict):
            edits = dict(edits or {})
        else:
            raise OpRefused(f"clone {run}: edits must be a dict of knob -> value, e.g. {{'learning_rate': 5e-4}}, "
                            f"got {type(edits).__name__} {edits!r}")
        if not isinstance(warm_start, bool):  # "no" would be true
            raise OpRefused(f"clone {run}: warm_start must be True or False, got {warm_start!r}")
        return self._op("clone", run, {"edits": edits, "warm_start": warm_start})

    def resume(self, create_model_fn: Callable[[dict], tuple] | None = None, *, workers: int = 1,
               device: str = "auto", tracking_uri: str | None = None, quiet: bool = False) -> None:
        """Continue this experiment: unfinished runs, resumed runs and new clones train to the end."""
        from rftui.control import nothing_to_resume
        from rftui.engine.setup import forget_cut_work, open_experiment

        if self.exp is None:
            raise self._missing()
        workers = coerce("int", workers)
        problems = _engine_problems(workers, device, tracking_uri)
        if problems:
            raise ConfigError(problems)
        exp, spec, store = open_experiment(str(self.exp.root))
        try:
            if nothing_to_resume(exp, spec, store):  # as `rftui resume` says it; no workers are started
                store.close()
                if not quiet:
                    print(f"experiment {exp.name} already finished; nothing to resume (resume_run a stopped run "
                          "or clone_run one first)")
                return
            create_model_fn, live_specs = _hooks_from_main(exp, spec, store, create_model_fn)
        except ExperimentError:
            store.close()
            raise
        forget_cut_work(store)
        self._drive(spec, store, live_specs, create_model_fn, workers, device, tracking_uri, quiet)

    def end(self) -> None:
        """Finish the experiment: stop anything still running (checkpointed) and release resources."""
        if self.controller is not None:
            self.controller.begin_shutdown()


def _hooks_from_main(exp, spec, store, create_model_fn):
    """Hooks recorded as `__main__:fn` were functions of the script that created the experiment; no worker can
    import them by name. The script run again defines them, so they are taken from this program's __main__.
    Returns the create_model hook to use and the run specs that get their compute_metrics back."""
    from dataclasses import replace

    from rftui.engine.runs import TERMINAL, RunRecord
    from rftui.engine.setup import script_hooks, script_hooks_error

    hooks = script_hooks(spec, store)
    if not hooks:
        return create_model_fn, None
    main, found = sys.modules.get("__main__"), {}
    for ref in hooks:
        module, qualname = ref.split(":", 1)
        func = main if module == "__main__" and "<" not in qualname else None
        for part in qualname.split("."):
            func = getattr(func, part, None)
        if callable(func):
            found[ref] = func
    if create_model_fn is None:
        create_model_fn = found.get(spec.create_model)
    missing = {}
    for ref, uses in hooks.items():
        left = [use for use in uses if not (use == "create_model" and create_model_fn is not None)]
        if left and ref not in found:
            missing[ref] = left
    if missing:
        raise script_hooks_error(exp, missing, from_python=True)
    live_specs = {}
    for row in store.list_runs():
        ref = (row.get("spec") or {}).get("compute_metrics")
        if row["status"] not in TERMINAL and ref in found:
            live_specs[row["run_id"]] = replace(RunRecord.from_store(row).spec, compute_metrics=found[ref])
    return create_model_fn, live_specs or None


def _integer_problems(**values: tuple[Any, int, int]) -> list[Problem]:
    """The config file's rule for whole-number settings (num_chunks, seed): an integer ≥ its lower bound."""
    problems = []
    for name, (value, low, example) in values.items():
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(Problem(name, f"expected an integer, got {value!r}", f"e.g. {name}={example}"))
        elif value < low:
            problems.append(Problem(name, f"must be ≥ {low}, got {value}", f"use {name} ≥ {low}"))
    return problems


def _engine_problems(workers: Any, device: Any, tracking_uri: Any) -> list[Problem]:
    from rftui.engine.options import engine_option_problems

    return engine_option_problems(workers=workers, device=device, tracking_uri=tracking_uri)


def _resume_call(create_model_fn: Any) -> str:
    name = getattr(create_model_fn, "__name__", None)
    return f"experiment.resume({name if name and name.isidentifier() else 'create_model_fn'})" \
        if create_model_fn is not None else "experiment.resume()"


def _float(value: Any) -> float:
    return float("nan") if value is None else float(value)


def _run_order(run_id: str) -> int:
    digits = run_id.lstrip("r")
    return int(digits) if digits.isdigit() else sys.maxsize
