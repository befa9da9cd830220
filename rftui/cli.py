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
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except RftuiError as exc:
        print(f"rftui: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", EXIT_USER_ERROR)
    except KeyboardInterrupt:
        print("rftui: interrupted", file=sys.stderr)
        return 130
