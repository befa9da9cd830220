"""Arguments of the `rftui` command line: value types that refuse a bad value (exit 2 with the command's usage),
and arguments a command does not take refused with that command's usage rather than the top-level one."""
from __future__ import annotations

import argparse
import difflib


def workers(text: str) -> int:
    from rftui.engine.options import workers_problem

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r} — e.g. --workers 2") from None
    problem = workers_problem(value, cli=True)
    if problem is not None:
        raise argparse.ArgumentTypeError(f"{problem.message} — {problem.hint}")
    return value


def experiment_name(text: str) -> str:
    from rftui.config.yaml_config import name_problem  # the config's `name:` rule

    problem = name_problem(text, "--name", example="--name chatqa-lite")
    if problem is not None:
        raise argparse.ArgumentTypeError(f"{problem.message} — {problem.hint}")
    return text


def workdir(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("the experiments directory is empty — give a directory, e.g. --workdir "
                                         "rftui-runs, or leave --workdir out for ./rftui-runs")
    return text


def tracking_uri(text: str) -> str:
    from rftui.engine.options import tracking_uri_problem

    problem = tracking_uri_problem(text, cli=True)
    if problem is not None:
        raise argparse.ArgumentTypeError(f"{problem.message} — {problem.hint}")
    return text


def parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """parse_args, but arguments a command does not take are refused with that command's usage (argparse
    gives the top-level `usage: rftui [-h] COMMAND ...`), naming a close option when there is one."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        command = getattr(args, "parser", parser)
        message = f"unrecognized arguments: {' '.join(extra)}"
        flag = next((item.split("=", 1)[0] for item in extra if item.startswith("--")), None)
        options = [o[2:] for action in command._actions for o in action.option_strings if o.startswith("--")]
        close = difflib.get_close_matches(flag[2:], options, n=1, cutoff=0.75) if flag else []
        commands = commands_of(parser)
        if flag and flag[2:] in commands:  # `rftui run X --resume`
            words = [a.dest.upper() for a in commands[flag[2:]]._actions if not a.option_strings]
            message += f" (`{flag[2:]}` is a command of its own: rftui {' '.join([flag[2:], *words])})"
        elif close:
            message += f" (did you mean --{close[0]}?)"
        command.error(message)
    return args


def commands_of(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return {name: command for action in parser._actions if isinstance(action, argparse._SubParsersAction)
            for name, command in action.choices.items()}
