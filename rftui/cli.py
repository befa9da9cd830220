"""The `rftui` command line: parse arguments, dispatch, turn user errors into exit code 2."""
from __future__ import annotations

import argparse
import json
import stat
import sys
from pathlib import Path

from rftui.cli_args import experiment_name, parse, tracking_uri, workdir, workers
from rftui.errors import ExperimentError, RftuiError

EXIT_USER_ERROR = 2
EXIT_RUNS_FAILED = 1
EXIT_BROKEN_PIPE = 141  # what a shell reports for a command killed by SIGPIPE


def _config_path(text: str) -> Path:
    """A config path; a bare bundled sample name (`chatqa_lite`) also works from anywhere."""
    path = Path(text)
    if path.exists():
        _check_config_file(path)
        return path
    from rftui.resources import bundled_dir

    for candidate in (bundled_dir("sample_configs") / text, bundled_dir("sample_configs") / f"{text}.yaml",
                      bundled_dir("sample_configs") / path.name):
        if candidate.is_file():
            return candidate
    return path


def _check_config_file(path: Path) -> None:
    """Say what is wrong with a path that exists but is no config file (the loader would say "does not exist")."""
    from rftui.config.problems import ConfigError, Problem

    try:
        info = path.stat()
    except OSError:
        return  # the loader reports it
    hint = "give the experiment's YAML file, e.g. sample_configs/chatqa_lite.yaml"
    if stat.S_ISDIR(info.st_mode):
        message = f"config file {path} is a directory"
    elif not stat.S_ISREG(info.st_mode):
        message = f"config file {path} is empty or not a regular file"
    elif info.st_size == 0:
        message = f"config file {path} is empty"
    else:
        return
    raise ConfigError([Problem("", message, hint, str(path))])


def _check_device(args: argparse.Namespace) -> None:
    """`--device cuda` without a GPU is refused before anything is created."""
    from rftui.engine.options import device_problem

    problem = device_problem(args.device, cli=True)
    if problem is not None:
        raise RftuiError(str(problem))


def _checked_rows(spec) -> tuple[list[dict], list[dict] | None]:
    """What `rftui plan` and `rftui run` both check before anything is created: the models and tokenizers are
    found, the data loads, the LoRA settings fit the models. Returns the train and eval rows."""
    from rftui.engine.setup import load_data
    from rftui.training.lora_check import check_lora

    if spec.create_model is None:
        from rftui.training.model_loading import check_models_available

        check_models_available(spec.runs)
    train, evals = load_data(spec)
    check_lora(spec)  # a grid checked before costs nothing; a new one, torch's imports and a meta-device model
    return train, evals


def cmd_plan(args: argparse.Namespace) -> int:
    from rftui.config.plan import plan_rows, plan_table
    from rftui.config.yaml_config import load_experiment_file
    from rftui.engine.setup import format_splits, plan_steps

    spec = load_experiment_file(_config_path(args.config))
    train, evals = _checked_rows(spec)
    num_rows = len(train)
    plan_steps(spec, num_rows)  # then what create_experiment refuses: too few steps, rows no formatter takes
    _, failed = format_splits(spec, train, evals)
    if failed:  # a config file's runs share one formatter: `rftui run` refuses them all with this error
        raise next(iter(failed.values()))
    rows = plan_rows(spec, num_rows)
    if args.json:
        print(json.dumps({"experiment": spec.name, "num_chunks": spec.num_chunks, "train_rows": num_rows,
                          "runs": rows}, indent=2, default=str))
    else:
        print(plan_table(spec, rows, num_rows))
    return 0


def _drive(exp, spec, store, args, first_events=(), live_specs=None) -> int:
    from rftui.engine.assemble import make_controller

    args.experiment_dir = exp  # from here on, Ctrl-C leaves a resumable experiment
    controller = make_controller(exp, spec, store, workers=args.workers, device=args.device,
                                 tracking_uri=args.tracking_uri, tracking=not args.no_tracking,
                                 live_specs=live_specs)
    use_ui = not args.no_ui and not args.json
    if use_ui and not (sys.stdout.isatty() and sys.stdin.isatty()):
        print("rftui: not a terminal; running headless (pass --no-ui to say so)", file=sys.stderr)
        use_ui = False
    if use_ui:
        from rftui.ui.run import run_hosted

        code = run_hosted(controller, list(first_events), theme=args.theme)
    else:
        from rftui.headless import run_headless

        try:
            events = list(first_events) + controller.start()
        except BaseException:  # Ctrl-C while the workers start: record the experiment as interrupted
            controller.close()
            raise
        code = run_headless(controller, json_lines=args.json, first_events=events)
    return _failed_runs_code(controller, code)


def _failed_runs_code(controller, code: int) -> int:
    """A run that ended `failed` makes an otherwise clean exit 1, after one line that names the runs."""
    if code != 0:
        return code
    failed = [row["run_id"] for row in controller.store.list_runs() if row["status"] == "failed"]
    if not failed:
        return code
    total = len(controller.store.list_runs(include_deleted=False))
    exp = controller.exp
    print(f"rftui: {len(failed)} of {total} run{'s' if total != 1 else ''} failed ({', '.join(failed)}); "
          f"see why with `{exp.command('show')}`", file=sys.stderr)
    return EXIT_RUNS_FAILED


def cmd_run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from rftui.config.yaml_config import load_experiment_file
    from rftui.engine.setup import create_experiment

    _check_device(args)
    spec = load_experiment_file(_config_path(args.config))
    overrides = {k: v for k, v in (("workdir", args.workdir), ("name", args.name),
                                   ("tracking_uri", args.tracking_uri)) if v is not None}
    spec = replace(spec, **overrides)
    if spec.tracking_uri is not None and not args.no_tracking and args.tracking_uri is None:
        from rftui.config.problems import ConfigError
        from rftui.engine.options import tracking_uri_problem

        problem = tracking_uri_problem(spec.tracking_uri, file=spec.source_file)
        if problem is not None:  # the config's tracking_uri (--tracking-uri was checked when parsed)
            raise ConfigError([problem])  # ConfigError adds the key's line in the file
    train, evals = _checked_rows(spec)
    exp, spec, store = create_experiment(spec, train, evals, new=args.new)
    args.experiment_dir = exp  # from here on, Ctrl-C leaves a resumable experiment
    return _drive(exp, spec, store, args, live_specs={run.run_id: run for run in spec.runs})


def cmd_resume(args: argparse.Namespace) -> int:
    from rftui.control import nothing_to_resume
    from rftui.engine.setup import forget_cut_work, open_experiment, script_hooks, script_hooks_error, unfound_hooks

    _check_device(args)
    exp, spec, store = open_experiment(args.experiment, args.workdir)
    if nothing_to_resume(exp, spec, store):
        note = f"experiment {exp.name} already finished; nothing to resume (see `{exp.command('show')}`)"
        if args.json:  # the JSON-lines stream a script reads says so too
            from rftui.engine.events import ExperimentFinished
            from rftui.headless import event_json

            counts: dict[str, int] = {}
            for row in store.list_runs():
                counts[row["status"]] = counts.get(row["status"], 0) + 1
            print(event_json(ExperimentFinished(exp.name, counts)))
            print(f"rftui: {note}", file=sys.stderr)
        else:
            print(note)
        return 0
    hooks = script_hooks(spec, store)
    if hooks:  # refused before anything changes: those runs could only fail
        raise script_hooks_error(exp, hooks, from_python=False)
    unfound = unfound_hooks(spec, store)
    if unfound:
        raise ExperimentError(
            f"experiment {exp.name} needs hooks that cannot be found from here: {'; '.join(unfound)}. Run "
            "`rftui resume` in the environment it was created in (the same virtualenv, and PYTHONPATH if the "
            "module was found through it); nothing was changed")
    lost = forget_cut_work(store)
    if lost:
        print(f"rftui: {lost} quantum(s) were cut short; they restart from their last checkpoint", file=sys.stderr)
    return _drive(exp, spec, store, args)


def cmd_show(args: argparse.Namespace) -> int:
    from rftui.engine.setup import open_experiment
    from rftui.report import failure_reasons, leaderboard_text, show_data, show_json

    exp, _, store = open_experiment(args.experiment, args.workdir, readonly=True)
    data = show_data(exp, store)
    print(show_json(data) if args.json else leaderboard_text(data, failure_reasons(store)))
    return 0


def cmd_ctl(args: argparse.Namespace) -> int:
    from rftui.control import submit
    from rftui.engine.setup import open_experiment
    from rftui.errors import OpRefused
    from rftui.report import failure_reasons, leaderboard_text, show_data, show_json

    if args.action == "ls" and (args.run or args.set or args.warm):
        extra = " ".join([*([args.run] if args.run else []), *(["--set"] if args.set else []),
                          *(["--warm"] if args.warm else [])])
        raise RftuiError(f"`rftui ctl {args.experiment} ls` takes no run id or options (got {extra}); it lists "
                         f"every run: drop {extra}, or act on a run with `rftui ctl {args.experiment} "
                         "stop|resume|delete|clone RUN`")
    if args.action == "ls":  # the same as `rftui show`
        exp, _, store = open_experiment(args.experiment, args.workdir, readonly=True)
        data = show_data(exp, store)
        print(show_json(data) if args.json else leaderboard_text(data, failure_reasons(store)))
        return 0
    exp, spec, store = open_experiment(args.experiment, args.workdir)
    if not args.run:
        raise RftuiError(f"`rftui ctl {args.experiment} {args.action}` needs a run id (see `{exp.command('ctl', 'ls')}`)")
    op_args: dict = {}
    if args.action == "clone":
        op_args = {"edits": args.set or [], "warm_start": args.warm}
    elif args.set or args.warm:
        raise RftuiError("--set and --warm only apply to clone")
    try:
        row = submit(exp, spec, store, args.action, args.run, op_args)
    except OpRefused as exc:
        if args.json:  # a script reads the refusal as it reads a result; a person still gets stderr and exit 2
            print(json.dumps({"op": args.action, "run": args.run, "run_id": exc.run_id, "status": "refused",
                              "reason": exc.reason, "new_run_id": None}))
        raise
    if args.json:
        print(json.dumps({"op": args.action, "run": args.run, "run_id": row.get("resolved_run_id"),
                          "status": row["status"], "reason": row.get("reason"), "new_run_id": row.get("new_run_id")}))
        return 0
    new = f" -> new run {row['new_run_id']}" if row.get("new_run_id") else ""
    note = f" ({row['reason']})" if row.get("reason") else ""
    print(f"{args.action} {row.get('run_id') or args.run}: applied{note}{new}")  # the run it resolved to
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    from rftui.engine.setup import open_experiment

    exp, spec, store = open_experiment(args.experiment, args.workdir)  # a missing or damaged one is said first
    if not (sys.stdout.isatty() and sys.stdin.isatty()):
        store.close()
        raise RftuiError(f"`rftui watch` needs a terminal (stdin and stdout are not both one); without one, "
                         f"use `{exp.command('show')}` for the leaderboard or `{exp.command('ctl', 'ls')}`")
    from rftui.ui.run import run_watch

    return run_watch(exp, spec, store, theme=args.theme)


def _engine_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-ui", action="store_true", help="plain progress output instead of the terminal UI")
    parser.add_argument("--theme", metavar="NAME", help="UI theme: rftui-dark (default), rftui-light, "
                        "another file in themes/, a Textual theme name, or a path to a theme file")
    parser.add_argument("--json", action="store_true", help="print JSON-lines events (implies --no-ui)")
    parser.add_argument("--workers", type=workers, default=1, metavar="N",
                        help="CPU worker processes (default 1; on CUDA: one per GPU)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="where to train")
    parser.add_argument("--workdir", type=workdir, help="directory holding experiments (default ./rftui-runs)")
    parser.add_argument("--tracking-uri", type=tracking_uri,
                        help="MLflow tracking URI (default sqlite:///<workdir>/mlflow.db)")
    parser.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rftui",
        description="Fine-tune many LLM configurations concurrently, from the terminal.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    plan = sub.add_parser("plan", help="expand and validate an experiment config; print its runs")
    plan.add_argument("config", help="experiment YAML file (or a bundled sample name)")
    plan.add_argument("--json", action="store_true", help="print JSON instead of a table")
    plan.set_defaults(func=cmd_plan, parser=plan)

    run = sub.add_parser("run", help="create an experiment from a config and train it")
    run.add_argument("config", help="experiment YAML file (or a bundled sample name)")
    run.add_argument("--name", type=experiment_name, help="experiment name (default: the config's name)")
    run.add_argument("--new", action="store_true", help="if the name is taken, create name-2, name-3, ...")
    _engine_options(run)
    run.set_defaults(func=cmd_run, parser=run)

    resume = sub.add_parser("resume", help="continue an interrupted experiment from its checkpoints")
    resume.add_argument("experiment", help="experiment name (or its directory)")
    _engine_options(resume)
    resume.set_defaults(func=cmd_resume, parser=resume)

    show = sub.add_parser("show", help="print an experiment's leaderboard")
    show.add_argument("experiment", help="experiment name (or its directory)")
    show.add_argument("--workdir", type=workdir, help="directory holding experiments (default ./rftui-runs)")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(func=cmd_show, parser=show)

    ctl = sub.add_parser("ctl", help="stop, resume, delete or clone a run of an experiment (from any shell)")
    ctl.add_argument("experiment", help="experiment name (or its directory)")
    ctl.add_argument("action", choices=("stop", "resume", "delete", "clone", "ls"))
    ctl.add_argument("run", nargs="?", help="run id (r3), number (3) or label")
    ctl.add_argument("--set", action="append", metavar="KNOB=VALUE",
                     help="clone edit, repeatable: learning_rate=5e-4, lora.r=16, generation.top_p=0.9")
    ctl.add_argument("--warm", action="store_true", help="clone with warm start from the run's latest state")
    ctl.add_argument("--json", action="store_true", help="print JSON: ls as `rftui show --json`, an op's result "
                     "as {op, run, run_id, status, reason, new_run_id}")
    ctl.add_argument("--workdir", type=workdir, help="directory holding experiments (default ./rftui-runs)")
    ctl.set_defaults(func=cmd_ctl, parser=ctl)

    watch = sub.add_parser("watch", help="the terminal UI for an experiment another process is training "
                                         "(quitting leaves it running)")
    watch.add_argument("experiment", help="experiment name (or its directory)")
    watch.add_argument("--workdir", type=workdir, help="directory holding experiments (default ./rftui-runs)")
    watch.add_argument("--theme", metavar="NAME", help="UI theme (see `rftui run --help`)")
    watch.set_defaults(func=cmd_watch, parser=watch)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parse(parser, argv)
    if getattr(args, "no_tracking", False) and args.tracking_uri is not None:
        args.parser.error("--no-tracking and --tracking-uri contradict each other; choose one")
    try:
        if args.func in (cmd_run, cmd_resume, cmd_watch) and not (getattr(args, "no_ui", False)
                                                                  or getattr(args, "json", False)):
            from rftui.ui.pacing import budget_from_env

            budget_from_env()  # a bad RFTUI_UI_CPU_BUDGET fails here, before anything is created
        code = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the try, not in the interpreter's last flush
        return code
    except RftuiError as exc:
        print(f"rftui: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", EXIT_USER_ERROR)
    except KeyboardInterrupt:
        exp = getattr(args, "experiment_dir", None)
        if exp is not None and exp.exists():
            print(f"rftui: interrupted; continue with `{exp.resume_command}`",
                  file=sys.stderr)
        else:
            print("rftui: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `rftui show ... | head`: the reader has what it wanted
        from rftui.headless import point_at_devnull

        point_at_devnull(sys.stdout)
        return EXIT_BROKEN_PIPE
