"""The `rftui` command line: parse arguments, dispatch, turn user errors into exit code 2."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rftui.errors import RftuiError

EXIT_USER_ERROR = 2


def _config_path(text: str) -> Path:
    """A config path; a bare bundled sample name (`chatqa_lite`) also works from anywhere."""
    path = Path(text)
    if path.exists():
        return path
    from rftui.resources import bundled_dir

    for candidate in (bundled_dir("sample_configs") / text, bundled_dir("sample_configs") / f"{text}.yaml",
                      bundled_dir("sample_configs") / path.name):
        if candidate.is_file():
            return candidate
    return path


def cmd_plan(args: argparse.Namespace) -> int:
    from rftui.config.plan import check_chunks, plan_rows, plan_table
    from rftui.config.yaml_config import load_experiment_file
    from rftui.data.sources import count_rows

    spec = load_experiment_file(_config_path(args.config))
    num_rows = count_rows(spec.data.train, Path(spec.data.base_dir)) if spec.data else None
    rows = plan_rows(spec, num_rows)
    check_chunks(spec, rows)
    if args.json:
        print(json.dumps({"experiment": spec.name, "num_chunks": spec.num_chunks, "train_rows": num_rows,
                          "runs": rows}, indent=2, default=str))
    else:
        print(plan_table(spec, rows, num_rows))
    return 0


def _load_rows(spec):
    from rftui.data.sources import load_rows

    base = Path(spec.data.base_dir)
    train = load_rows(spec.data.train, base)
    evals = load_rows(spec.data.eval, base) if spec.data.eval else None
    return train, evals


def _drive(exp, spec, store, args, first_events=(), live_specs=None) -> int:
    from rftui.engine.assemble import make_controller

    controller = make_controller(exp, spec, store, workers=args.workers, device=args.device,
                                 tracking_uri=args.tracking_uri, tracking=not args.no_tracking,
                                 live_specs=live_specs)
    use_ui = not args.no_ui and not args.json
    if use_ui and not (sys.stdout.isatty() and sys.stdin.isatty()):
        print("rftui: not a terminal; running headless (pass --no-ui to say so)", file=sys.stderr)
        use_ui = False
    if use_ui:
        from rftui.ui.run import run_hosted

        return run_hosted(controller, list(first_events), theme=args.theme)
    from rftui.headless import run_headless

    events = list(first_events) + controller.start()
    return run_headless(controller, json_lines=args.json, first_events=events)


def cmd_run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from rftui.config.yaml_config import load_experiment_file
    from rftui.engine.setup import create_experiment

    spec = load_experiment_file(_config_path(args.config))
    overrides = {k: v for k, v in (("workdir", args.workdir), ("name", args.name),
                                   ("tracking_uri", args.tracking_uri)) if v}
    spec = replace(spec, **overrides)
    if spec.create_model is None:
        from rftui.training.model_loading import check_model_available

        for model_name in dict.fromkeys(run.model_name for run in spec.runs):
            check_model_available(model_name)
    train, evals = _load_rows(spec)
    exp, spec, store = create_experiment(spec, train, evals, new=args.new)
    return _drive(exp, spec, store, args, live_specs={run.run_id: run for run in spec.runs})


def cmd_resume(args: argparse.Namespace) -> int:
    from rftui.engine.setup import open_experiment

    from rftui.control import ensure_not_running

    exp, spec, store = open_experiment(args.experiment, args.workdir)
    ensure_not_running(exp, store)
    if store.get_meta("status") == "finished":
        print(f"experiment {exp.name} already finished; nothing to resume (see `rftui show {exp.name}`)")
        return 0
    lost = store.mark_running_quanta_lost()
    for row in store.list_runs():
        store.delete_metrics_after(row["run_id"], row.get("steps_done") or 0)
    if lost:
        print(f"rftui: {lost} quantum(s) were cut short; they restart from their last checkpoint", file=sys.stderr)
    return _drive(exp, spec, store, args)


def cmd_show(args: argparse.Namespace) -> int:
    from rftui.engine.setup import open_experiment
    from rftui.report import failure_reasons, leaderboard_text, show_data

    exp, _, store = open_experiment(args.experiment, args.workdir, readonly=True)
    data = show_data(exp, store)
    print(json.dumps(data, indent=2) if args.json else leaderboard_text(data, failure_reasons(store)))
    return 0


def cmd_ctl(args: argparse.Namespace) -> int:
    from rftui.control import submit
    from rftui.engine.setup import open_experiment
    from rftui.report import failure_reasons, leaderboard_text, show_data

    exp, spec, store = open_experiment(args.experiment, args.workdir)
    if args.action == "ls":
        print(leaderboard_text(show_data(exp, store), failure_reasons(store)))
        return 0
    if not args.run:
        raise RftuiError(f"`rftui ctl {args.experiment} {args.action}` needs a run id (see `rftui ctl {args.experiment} ls`)")
    op_args: dict = {}
    if args.action == "clone":
        op_args = {"edits": args.set or [], "warm_start": args.warm}
    elif args.set or args.warm:
        raise RftuiError("--set and --warm only apply to clone")
    row = submit(exp, spec, store, args.action, args.run, op_args)
    new = f" -> new run {row['new_run_id']}" if row.get("new_run_id") else ""
    note = f" ({row['reason']})" if row.get("reason") else ""
    print(f"{args.action} {args.run}: applied{note}{new}")
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    from rftui.engine.setup import open_experiment
    from rftui.ui.run import run_watch

    exp, spec, store = open_experiment(args.experiment, args.workdir)
    return run_watch(exp, spec, store, theme=args.theme)


def _engine_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-ui", action="store_true", help="plain progress output instead of the terminal UI")
    parser.add_argument("--theme", metavar="NAME", help="UI theme: rftui-dark (default), rftui-light, "
                        "another file in themes/, a Textual theme name, or a path to a theme file")
    parser.add_argument("--json", action="store_true", help="print JSON-lines events (implies --no-ui)")
    parser.add_argument("--workers", type=int, default=1, metavar="N",
                        help="CPU worker processes (default 1; on CUDA: one per GPU)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="where to train")
    parser.add_argument("--workdir", help="directory holding experiments (default ./rftui-runs)")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default sqlite:///<workdir>/mlflow.db)")
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
    plan.set_defaults(func=cmd_plan)

    run = sub.add_parser("run", help="create an experiment from a config and train it")
    run.add_argument("config", help="experiment YAML file (or a bundled sample name)")
    run.add_argument("--name", help="experiment name (default: the config's name)")
    run.add_argument("--new", action="store_true", help="if the name is taken, create name-2, name-3, ...")
    _engine_options(run)
    run.set_defaults(func=cmd_run)

    resume = sub.add_parser("resume", help="continue an interrupted experiment from its checkpoints")
    resume.add_argument("experiment", help="experiment name (or its directory)")
    _engine_options(resume)
    resume.set_defaults(func=cmd_resume)

    show = sub.add_parser("show", help="print an experiment's leaderboard")
    show.add_argument("experiment", help="experiment name (or its directory)")
    show.add_argument("--workdir", help="directory holding experiments (default ./rftui-runs)")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(func=cmd_show)

    ctl = sub.add_parser("ctl", help="stop, resume, delete or clone a run of an experiment (from any shell)")
    ctl.add_argument("experiment", help="experiment name (or its directory)")
    ctl.add_argument("action", choices=("stop", "resume", "delete", "clone", "ls"))
    ctl.add_argument("run", nargs="?", help="run id (r3), number (3) or label")
    ctl.add_argument("--set", action="append", metavar="KNOB=VALUE",
                     help="clone edit, repeatable: learning_rate=5e-4, lora.r=16, generation.top_p=0.9")
    ctl.add_argument("--warm", action="store_true", help="clone with warm start from the run's latest state")
    ctl.add_argument("--workdir", help="directory holding experiments (default ./rftui-runs)")
    ctl.set_defaults(func=cmd_ctl)

    watch = sub.add_parser("watch", help="the terminal UI for an experiment another process is training "
                                         "(quitting leaves it running)")
    watch.add_argument("experiment", help="experiment name (or its directory)")
    watch.add_argument("--workdir", help="directory holding experiments (default ./rftui-runs)")
    watch.add_argument("--theme", metavar="NAME", help="UI theme (see `rftui run --help`)")
    watch.set_defaults(func=cmd_watch)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "workers", 1) < 1:
        parser.error("--workers must be at least 1")
    try:
        if args.func in (cmd_run, cmd_resume, cmd_watch) and not (getattr(args, "no_ui", False)
                                                                  or getattr(args, "json", False)):
            from rftui.ui.pacing import budget_from_env

            budget_from_env()  # a bad RFTUI_UI_CPU_BUDGET fails here, before anything is created
        return args.func(args)
    except RftuiError as exc:
        print(f"rftui: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", EXIT_USER_ERROR)
    except KeyboardInterrupt:
        print("rftui: interrupted", file=sys.stderr)
        return 130
