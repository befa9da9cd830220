"""Entry points the CLI calls: run the terminal UI over a hosted controller, or over a watched store."""
from __future__ import annotations

import sys
from typing import Any

from rftui.ui.app import EXIT_INTERRUPTED, build_app
from rftui.ui.pacing import budget_from_env
from rftui.ui.sources import HostedSource


def run_hosted(controller: Any, first_events: list[Any] | None = None, theme: str | None = None) -> int:
    """Train with the UI on screen. Quitting checkpoints; the exit code is 0 when every run ended
    and 130 when the experiment was stopped early (resume it later)."""
    from rftui.report import failure_reasons, leaderboard_text, show_data

    source = HostedSource(controller, first_events)
    app = build_app(source, theme=theme, cpu_budget=budget_from_env())
    try:
        code = app.run()
    finally:
        # The bridge thread owns the controller until it has closed it; after a crash or an
        # abrupt exit it is still checkpointing here, so wait for it (never step from two threads).
        if source.opened and not source.closed_event.is_set():
            print("rftui: checkpointing running quanta before exiting...", file=sys.stderr)
            source.request_stop()
            source.closed_event.wait()
    finished = controller.store.get_meta("status") == "finished"
    data = show_data(controller.exp, controller.store, include_deleted=False)
    # its warnings too: the event log is gone with the screen, and those given while closing never reached it
    print(leaderboard_text(data, failure_reasons(controller.store)))
    if not finished:
        print(f"rftui: stopped and checkpointed; continue with `{controller.exp.resume_command}`", file=sys.stderr)
        return EXIT_INTERRUPTED if code in (None, 0, EXIT_INTERRUPTED) else code
    return 0 if code in (None, 0, EXIT_INTERRUPTED) else code


def run_watch(exp: Any, spec: Any, store: Any, theme: str | None = None) -> int:
    """Watch an experiment that another process trains; quitting leaves it running. When nothing trains it
    any more (its owner died or stopped it), quitting prints the leaderboard and how to continue, as the
    hosted UI's exit does; a live experiment's watcher exits quietly."""
    from rftui.control import controller_alive
    from rftui.report import failure_reasons, leaderboard_text, resume_hint, show_data
    from rftui.ui.watch import WatchSource

    source = WatchSource(exp, spec, store)
    app = build_app(source, theme=theme, cpu_budget=budget_from_env())
    data = reasons = None
    try:
        app.run()
        # As state.db says at exit, not as the screen last showed it: the owner may have died since.
        shown = show_data(exp, store, include_deleted=False)
        # `interrupted` beside a live owner: a clone reopened its finished experiment, which trains it now
        if shown["status"] == "interrupted" and not controller_alive(store):
            data, reasons = shown, failure_reasons(store)
    finally:
        source.close()
        store.close()
    if data is not None:
        print(leaderboard_text(data, reasons))
        print(f"rftui: experiment {spec.name} is interrupted; {resume_hint(spec.name, exp.workdir)}",
              file=sys.stderr)
    return 0
