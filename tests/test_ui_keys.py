"""Pilot tests: each key sends the right op to the source; refusals show their reason; quitting."""
from __future__ import annotations

import pytest

from ui_helpers import FixedClock, charts_drawn, record, screen_text, settle

from rftui.engine import events as ev
from rftui.ui.app import build_app
from rftui.ui.clone_dialog import CloneDialog, check_edits, editable_knobs
from rftui.ui.confirm import ConfirmDialog
from rftui.ui.details import DetailsScreen
from rftui.ui.help import HelpScreen
from rftui.ui.model import Batch
from rftui.ui.quit_dialog import QuitDialog
from rftui.ui.runs_table import RunsTable
from rftui.ui.status_bar import StatusBar

SIZE = (120, 36)
pytestmark = pytest.mark.anyio


def recorded_app(tmp_path, respond=None, keymap=None, quanta=3):
    source = record(tmp_path, quanta=quanta)
    if respond is not None:
        source.respond = respond
    return build_app(source, theme="rftui-dark", clock=FixedClock(), keymap=keymap), source


def applied(op, run_id, args):
    return ev.OpResolved(None, "tui", op, run_id, "applied")


async def test_stop_and_resume_keys_send_ops_for_the_selected_run(tmp_path):
    app, source = recorded_app(tmp_path, respond=applied)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        assert app.main.selected == "r1"
        await pilot.press("down")
        assert app.main.selected == "r2"
        await pilot.press("s")
        await pilot.press("r")
        await pilot.pause()
    assert source.ops_sent == [("stop", "r2", {}), ("resume", "r2", {})]


async def test_clone_key_sends_only_the_changed_knobs(tmp_path):
    app, source = recorded_app(tmp_path, respond=applied)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await pilot.press("c")
        dialog = app.screen
        assert isinstance(dialog, CloneDialog) and not dialog.warm
        editor = dialog.query_one("TextArea")
        assert "learning_rate: 0.001" in editor.text and "model_name" not in editor.text
        editor.text = editor.text.replace("learning_rate: 0.001", "learning_rate: 5.0e-4").replace("lora.r: 8", "lora.r: 16")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert not isinstance(app.screen, CloneDialog)
    assert source.ops_sent == [("clone", "r1", {"edits": {"learning_rate": 5e-4, "lora.r": 16}, "warm_start": False})]


async def test_warm_clone_key_sets_warm_start(tmp_path):
    app, source = recorded_app(tmp_path, respond=applied)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await pilot.press("w")
        assert isinstance(app.screen, CloneDialog) and app.screen.warm
        editor = app.screen.query_one("TextArea")
        editor.text = editor.text.replace("learning_rate: 0.001", "learning_rate: 0.002")
        await pilot.click("#submit")
        await pilot.pause()
    assert source.ops_sent == [("clone", "r1", {"edits": {"learning_rate": 0.002}, "warm_start": True})]


async def test_warm_clone_of_a_run_without_a_checkpoint_is_refused_before_the_dialog(tmp_path):
    app, source = recorded_app(tmp_path, respond=applied)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        assert app.model.runs["r2"].status == "running" and not app.model.runs["r2"].checkpointed
        await pilot.press("down")  # r2: its first quantum has not finished
        await pilot.press("w")
        await pilot.pause()
        assert not isinstance(app.screen, CloneDialog)
        assert [n.message for n in app._notifications] == [
            "r2 has no checkpoint yet to warm-start from: wait for its first chunk, or clone without warm start (c)"]
        await pilot.press("c")  # a cold clone needs no checkpoint
        assert isinstance(app.screen, CloneDialog) and not app.screen.warm
    assert source.ops_sent == []


async def test_the_no_checkpoint_refusal_names_the_clone_key_as_remapped(tmp_path):
    app, source = recorded_app(tmp_path, respond=applied, keymap={"clone": "k"})
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await pilot.press("down", "w")
        await pilot.pause()
        assert [n.message for n in app._notifications] == [
            "r2 has no checkpoint yet to warm-start from: wait for its first chunk, or clone without warm start (k)"]


@pytest.mark.parametrize("status, expected", [
    ("failed", "r2 failed before its first checkpoint: there is nothing to warm-start from; "
               "clone without warm start (c)"),
    ("stopped", "r2 was stopped before its first checkpoint: resume it (r) and wait for its first chunk, "
                "or clone without warm start (c)"),
])
async def test_the_no_checkpoint_refusal_of_a_run_that_no_longer_trains_does_not_say_wait(tmp_path, status, expected):
    """A failed or stopped run gets no first chunk by waiting: the refusal says what would give it one."""

    app, source = recorded_app(tmp_path, respond=applied)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        source.push(Batch(events=[ev.RunStatusChanged("r2", status, None)]))
        await settle(pilot, app, until=lambda: app.model.runs["r2"].status == status)
        await pilot.press("down", "w")
        await pilot.pause()
        assert not isinstance(app.screen, CloneDialog)
        assert [n.message for n in app._notifications] == [expected]


async def submit_clone_edit(pilot, app, old: str, new: str) -> None:
    """Open the clone dialog on the selected run, replace `old` with `new` in its YAML and submit."""
    await pilot.press("c")
    editor = app.screen.query_one("TextArea")
    assert old in editor.text.splitlines()
    editor.text = editor.text.replace(old, new)
    await pilot.press("ctrl+s")
    await pilot.pause()


async def test_clone_dialog_shows_validation_errors_and_stays_open(tmp_path):
    app, source = recorded_app(tmp_path, respond=applied)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await submit_clone_edit(pilot, app, "lora.r: 8", "lora.r: eight")
        assert isinstance(app.screen, CloneDialog)
        assert any("lora.r" in p and "integer" in p for p in app.screen.problems)
        problems = str(app.screen.query_one("#problems").render())
        assert "lora.r" in problems
        await pilot.press("escape")
        assert not isinstance(app.screen, CloneDialog)
    assert source.ops_sent == []


async def test_clone_dialog_refuses_a_knob_given_twice(tmp_path):
    app, source = recorded_app(tmp_path, respond=applied)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await submit_clone_edit(pilot, app, "lora.r: 8", "lora.r: 8\nlora.r: 16")  # YAML alone would take 16
        assert isinstance(app.screen, CloneDialog)
        assert app.screen.problems == ["line 16: `lora.r` is given twice (also on line 15) — keep one of them"]
        assert "line 16: `lora.r` is given twice" in str(app.screen.query_one("#problems").render())
    assert source.ops_sent == []


async def test_clone_dialog_names_the_knob_behind_a_labels_short_name_as_the_cli_does(tmp_path):
    app, source = recorded_app(tmp_path, respond=applied)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await submit_clone_edit(pilot, app, "learning_rate: 0.001", "learning_rate: 0.001\nlr: 5e-4\nr: 16")
        assert isinstance(app.screen, CloneDialog)
        # the CLI's words (ops.short_name_problems), with the example written as this dialog's YAML
        assert app.screen.problems == [
            "lr: `lr` is a label's short name; write learning_rate (e.g. learning_rate: 5e-4)",
            "r: `r` is a label's short name; write lora.r (e.g. lora.r: 16)"]
        assert "write learning_rate (e.g. learning_rate: 5e-4)" in str(app.screen.query_one("#problems").render())
    assert source.ops_sent == []


LORA_RUN = {"lora": {"r": 8, "lora_alpha": 16}, "training": {"learning_rate": 1e-3}}


def test_check_edits_rules():
    knobs = {"model_name": "m", "learning_rate": 1e-3, "lora.r": 8, "generation.top_p": 0.9, "formatting_func": "x:y"}
    original = editable_knobs(knobs)
    assert set(original) == {"learning_rate", "lora.r", "generation.top_p"}
    edits, problems = check_edits("learning_rate: 1e-4\nlora.r: 8\ngeneration.top_p: 0.9\n", original, False, LORA_RUN)
    assert edits == {"learning_rate": 1e-4} and problems == []
    _, problems = check_edits("learning_rate: [\n", original, False, LORA_RUN)
    assert problems and "YAML" in problems[0]
    _, problems = check_edits("learning_rate: 1e-4\nlora.r: 16\ngeneration.top_p: 0.9\n", original, True, LORA_RUN)
    assert any("warm start" in p for p in problems)
    _, problems = check_edits("lora.r: 8\ngeneration.top_p: 0.9\n", original, False, LORA_RUN)
    assert any("learning_rate" in p and "removed" in p for p in problems)
    _, problems = check_edits("learning_rate: 1e-3\nlora.r: 8\ngeneration.top_p: 0.9\nmodel_name: other\n",
                              original, False, LORA_RUN)
    assert any("model_name" in p for p in problems)


def test_warm_clone_dialog_refuses_what_the_controller_would():
    # the controller's rule (engine/ops.py): only alpha/dropout/rslora/alpha_pattern and training knobs change
    original = {"learning_rate": 1e-3, "lora.r": 8, "lora.lora_alpha": 16}
    edits, problems = check_edits("learning_rate: 1e-3\nlora.r: 8\nlora.lora_alpha: 16\nlora.use_dora: true\n"
                                  "optim: adafactor\n", original, True, LORA_RUN)
    assert edits == {"lora.use_dora": True, "optim": "adafactor"}
    # the controller's words too (warm_fixed_reason), for the run the dialog edits
    assert problems == ["a warm start continues the run's adapter and optimizer as they are; lora.use_dora, optim "
                        "cannot change (only lora.lora_alpha, lora.lora_dropout, lora.use_rslora, lora.alpha_pattern "
                        "and training hyperparameters can; a clone from scratch can change them)"]
    # scaling the adapter is allowed, and writing out a default is no change
    edits, problems = check_edits("learning_rate: 1e-3\nlora.r: 8\nlora.lora_alpha: 32\nlora.bias: none\n",
                                  original, True, LORA_RUN)
    assert edits == {"lora.lora_alpha": 32, "lora.bias": "none"} and problems == []
    # the same edits from scratch are fine
    assert check_edits("learning_rate: 1e-3\nlora.r: 8\nlora.lora_alpha: 16\nlora.use_dora: true\n",
                       original, False, LORA_RUN)[1] == []


def test_clone_edit_messages_about_null_and_removal_agree_with_the_validator():
    original = {"fp16": True, "generation.top_p": 0.9, "learning_rate": 1e-3}
    # generation.top_p takes null (the library's default): removing it points there, and null is accepted
    _, problems = check_edits("fp16: true\nlearning_rate: 1e-3\n", original, False, LORA_RUN)
    assert problems == ["generation.top_p: cannot be removed; a clone keeps every knob — change its value, "
                        "or write null for the library's default"]
    assert check_edits("fp16: true\ngeneration.top_p: null\nlearning_rate: 1e-3\n", original, False, LORA_RUN) == \
        ({"generation.top_p": None}, [])
    # fp16 takes no null: neither message offers null or leaving it out
    _, problems = check_edits("generation.top_p: 0.9\nlearning_rate: 1e-3\n", original, False, LORA_RUN)
    assert problems == ["fp16: cannot be removed; a clone keeps every knob — change its value"]
    _, problems = check_edits("fp16: null\ngeneration.top_p: 0.9\nlearning_rate: 1e-3\n", original, False, LORA_RUN)
    assert problems == ["fp16: expected true or false, got null — `fp16` takes no null; write a value "
                        "(a clone keeps every knob, so it cannot be left out either)"]


async def test_a_long_bad_value_is_cut_so_the_hint_stays_in_view(tmp_path):
    app, source = recorded_app(tmp_path, respond=applied)
    async with app.run_test(size=(100, 32)) as pilot:
        await settle(pilot, app)
        await submit_clone_edit(pilot, app, "learning_rate: 0.001", "learning_rate: " + "x" * 900)
        assert app.screen.problems == [f"learning_rate: expected a number, got str '{'x' * 38}… — "
                                       "write `learning_rate` as a number"]
        hint = f"'{'x' * 38}… — write `learning_rate` as a number"
        assert any(hint in line for line in screen_text(app).splitlines())
    assert source.ops_sent == []


async def test_delete_asks_first(tmp_path):
    app, source = recorded_app(tmp_path, respond=applied)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await pilot.press("d")
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("enter")  # the focused button is Cancel
        assert not isinstance(app.screen, ConfirmDialog)
        assert source.ops_sent == []
        await pilot.press("d", "y")
        await pilot.pause()
    assert source.ops_sent == [("delete", "r1", {})]


async def test_the_delete_question_speaks_of_stopping_only_for_a_running_run(tmp_path):
    app, source = recorded_app(tmp_path, respond=applied)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        bodies = {}
        for run_id in ("r1", "r2"):
            app.main.query_one(RunsTable).select_run(run_id)
            await pilot.pause()
            await pilot.press("d")
            bodies[app.model.runs[run_id].status] = str(app.screen.query_one("#body").render())
            await pilot.press("escape")
        assert bodies == {
            "waiting": "r1 (r=8 lr=1e-3) is waiting. The run is hidden from the table; its data stays in the "
                       "experiment's store.",
            "running": "r2 (r=32 lr=1e-3) is running. It stops at its next optimizer step. The run is hidden "
                       "from the table; its data stays in the experiment's store.",
        }
    assert source.ops_sent == []


async def test_after_a_delete_the_selection_moves_to_the_neighbour(tmp_path):
    app, source = recorded_app(tmp_path)  # ops go to the recording's controller
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        table = app.main.query_one(RunsTable)
        await pilot.press("down", "down")
        assert app.main.selected == "r3"
        await pilot.press("d", "y")
        await settle(pilot, app, until=lambda: app.model.runs["r3"].status == "deleted")
        assert [row.key.value for row in table.ordered_rows] == ["r1", "r2", "r4"]
        assert app.main.selected == table.selected_run == "r4"  # the next row, not r1
        await pilot.press("d", "y")  # r4 was the last row: the previous one is selected
        await settle(pilot, app, until=lambda: app.model.runs["r4"].status == "deleted")
        assert app.main.selected == table.selected_run == "r2"


async def test_the_status_bar_says_running_while_a_clone_of_a_finished_experiment_trains(tmp_path):
    source = record(tmp_path, quanta=40, runs=2, max_steps=8)  # both runs complete: the experiment finishes
    app = build_app(source, theme="rftui-dark", clock=FixedClock())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        bar = app.main.query_one(StatusBar)
        assert bar._shown.plain.startswith("chatqa-lite finished │")
        app.main.query_one(RunsTable).select_run("r1")
        await pilot.press("c", "ctrl+s")  # an unchanged clone of r1
        await settle(pilot, app, until=lambda: app.model.runs.get("r3") is not None
                     and app.model.runs["r3"].status == "running")
        assert bar._shown.plain.startswith("chatqa-lite running │ w0 r3 0/8 │")


async def test_the_elapsed_time_stops_when_the_experiment_finishes_and_restarts_with_a_clone(tmp_path):
    """A finished experiment's elapsed time is how long it trained, not how long the screen stayed open."""
    source = record(tmp_path, quanta=40, runs=2, max_steps=8)  # both runs complete: the experiment finishes
    clock = FixedClock()
    app = build_app(source, theme="rftui-dark", clock=clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        bar = app.main.query_one(StatusBar)
        clock.now += 600  # the screen stays open over lunch
        await settle(pilot, app)
        assert bar._shown.plain.startswith("chatqa-lite finished │")
        assert "elapsed 00:00" in bar._shown.plain, bar._shown.plain
        source.push(Batch(events=[ev.RunAdded("r3", "lr=1e-3", "r1", False)]))  # a clone: training again
        await settle(pilot, app, until=lambda: not app.model.finished)
        clock.now += 5  # the clone trains for 5 s: the lunch break is not training time
        await settle(pilot, app, until=lambda: "elapsed 00:05" in bar._shown.plain)
        assert "elapsed 00:05" in bar._shown.plain, bar._shown.plain


async def test_the_status_bar_shows_no_eta_while_the_experiment_stops(tmp_path):
    """Stopping, no run will reach its end: an ETA counting down to it misled (`stopping ... │ ETA 00:06`)."""
    app, source = recorded_app(tmp_path, respond=applied)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        bar = app.main.query_one(StatusBar)
        assert "ETA 01:01" in bar._shown.plain
        bar.show(app.model, 5.0, hosted=True, stopping=True)  # q in this app
        assert bar._shown.plain == ("chatqa-lite stopping: checkpointing at the next optimizer step │ w0 idle │ "
                                    "w1 r2 0/128 │ elapsed 00:05")
        app.model.status = "stopping"  # Ctrl-C or `rftui ctl` in the process a watcher follows
        bar.show(app.model, 5.0, hosted=False, stopping=False)
        assert "stopping" in bar._shown.plain and "ETA" not in bar._shown.plain, bar._shown.plain


async def test_a_refused_op_shows_its_reason(tmp_path):
    def refuse(op, run_id, args):
        return ev.OpResolved(7, "tui", op, run_id, "refused", f"run {run_id} is completed; nothing to stop")

    app, source = recorded_app(tmp_path, respond=refuse)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await pilot.press("s")
        await pilot.pause()
        await pilot.pause()
        log = app.main.query_one("#log").texts()
        assert any("refused" in line and "nothing to stop" in line for line in log), log
        assert any("nothing to stop" in n.message for n in app._notifications)


async def test_stop_through_the_controller_changes_the_row(tmp_path):
    app, source = recorded_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        running = [r.run_id for r in app.model.runs.values() if r.status == "running"][0]
        app.main.query_one(RunsTable).select_run(running)
        await pilot.pause()
        await pilot.press("s")
        await settle(pilot, app, until=lambda: app.model.runs[running].status == "stopped")
        cell = app.main.query_one(RunsTable).get_cell(running, "status")
        assert cell.plain == "stopped"
        assert any(f"{running} stopped" in line for line in app.main.query_one("#log").texts())


async def test_view_keys_metric_theme_sort_help_details(tmp_path):
    app, source = recorded_app(tmp_path, respond=applied)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await pilot.press("m")
        assert app.main.metric == "eval_loss"
        before = app.theme
        await pilot.press("t")
        assert app.theme != before
        await pilot.press("o")
        assert app.main.query_one(RunsTable).sort_key == "status"
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        assert any(row[2] == "stop" for row in app.screen.keys)
        await pilot.press("escape")
        await pilot.press("enter")
        assert isinstance(app.screen, DetailsScreen) and app.screen.run_id == app.main.selected
        await pilot.press("escape")
        assert app.screen is app.main
    assert source.ops_sent == []


@pytest.mark.parametrize("size", [(80, 24), (120, 36)])
async def test_the_footer_shows_every_main_key_sort_and_theme_too(tmp_path, size):
    app, source = recorded_app(tmp_path, respond=applied)
    async with app.run_test(size=size) as pilot:
        await settle(pilot, app)
        await pilot.pause()
        rows = 2 if size[0] < 88 else 1  # too narrow for one row: two rows, nothing cut
        footer = " ".join(line.strip() for line in screen_text(app).splitlines()[-rows:])
        keys = ("s Stop", "r Resume", "c Clone", "w Warm", "d Delete", "⏎ Details", "m Metric",
                "o Sort", "t Theme", "? Help", "q Quit")
        assert [k for k in keys if k not in footer] == [], footer
        await pilot.press("o")  # the keys it shows do what they say
        assert app.main.query_one(RunsTable).sort_key == "status"
        await pilot.press("t")
        assert app.theme != "rftui-dark"


async def test_details_show_the_config_a_knob_a_line_without_the_flattened_copy(tmp_path):
    app, source = recorded_app(tmp_path, respond=applied)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        await pilot.press("enter")
        await pilot.pause()
        lines = str(app.screen.query_one("#config").render()).splitlines()
        at = lines.index("training:")
        assert lines[at + 1:at + 3] == ["  gradient_checkpointing: false", "  lr_scheduler_type: linear"]
        assert "  learning_rate: 0.001" in lines and "  target_modules: [q_proj, v_proj]" in lines
        assert not [line for line in lines if line.startswith(("knobs:", "run_id:", "label:"))]
        assert len([line for line in lines if "learning_rate" in line]) == 1  # was twice (training and knobs)


async def test_the_event_log_begins_with_what_trains_before_any_worker_is_ready(tmp_path):
    app, source = recorded_app(tmp_path, respond=applied)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        log = app.main.query_one("#log").texts()
        assert log[0] == "experiment chatqa-lite: 4 runs, 4 chunks; starting 2 workers", log[:2]


async def test_each_chart_names_the_metric_as_the_overlay_does(tmp_path):
    from rftui.ui.charts import OverlayChart, RunPane

    app, source = recorded_app(tmp_path, respond=applied)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        shown = {}
        for _ in range(5):
            await pilot.press("m")
            await charts_drawn(pilot, app)
            pane = next(p for p in app.main.query(RunPane) if p.run_id == "r1")
            shown[app.main.metric] = (app.main.query_one(OverlayChart).border_title, pane.border_subtitle.rsplit(" ", 1)[0])
        assert shown == {
            "eval_loss": ("all runs · eval loss", "eval loss"), "rougeL": ("all runs · ROUGE-L", "ROUGE-L"),
            "bleu": ("all runs · BLEU", "BLEU"), "learning_rate": ("all runs · learning rate", "learning rate"),
            "loss": ("all runs · loss", "loss")}


async def test_details_follow_the_run_while_they_are_open(tmp_path):
    """The details of a running run showed `running` and the same metrics long after it had ended."""
    app, source = recorded_app(tmp_path, respond=applied)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        app.main.query_one(RunsTable).select_run("r2")
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()
        details = app.screen
        assert isinstance(details, DetailsScreen)
        assert "status running" in str(details.query_one("#summary").render())
        assert [str(c.label) for c in details.query_one("#metrics").columns.values()] == ["no metrics logged yet"]
        last = 0  # r2's first quantum has not reported
        source.push(Batch(points=[("r2", last + 2, "loss", 0.4321, "train")],
                          events=[ev.RunStatusChanged("r2", "failed", "HookError: metrics hook raised")]))
        await settle(pilot, app, until=lambda: app.model.runs["r2"].status == "failed")
        assert "details" in {timer.name for timer in details._timers}  # the screen refreshes itself every second
        details.refresh_details()  # what that timer does: called here, a slow box cannot outrun a poll
        await pilot.pause()
        assert "status failed (HookError: metrics hook raised)" in str(details.query_one("#summary").render())
        table = details.query_one("#metrics")
        top = [str(cell) for cell in table.get_row_at(0)]
        assert top[:2] == [str(last + 2), "0.4321"], top


async def test_the_sort_key_names_each_column_as_its_header_does(tmp_path):
    app, source = recorded_app(tmp_path, respond=applied)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        table = app.main.query_one(RunsTable)
        headers = [str(column.label).rstrip(" ▲▼") for column in table.columns.values()]
        said = []  # kept here: a notification expires after 1.5 s
        app.notify = lambda message, **kwargs: said.append(message.removeprefix("sorted by "))
        for _ in headers:
            await pilot.press("o")
        await pilot.pause()
        assert said == headers[1:] + headers[:1], said  # from the column after `run`, round to `run`
        assert "lr" in said and "learning_rate" not in said


async def test_a_click_selects_a_run_and_a_click_on_the_selected_one_shows_its_details(tmp_path):
    """As the help says: a first-time user clicking a row twice should not be surprised."""
    app, source = recorded_app(tmp_path, respond=applied)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await pilot.click(RunsTable, offset=(3, 2))  # row 2 (row 0 is the header)
        await pilot.pause()
        assert app.screen is app.main and app.main.selected == "r2"
        await pilot.click(RunsTable, offset=(3, 2))
        await pilot.pause()
        assert isinstance(app.screen, DetailsScreen) and app.screen.run_id == "r2"
        await pilot.press("escape")
        await pilot.press("question_mark")
        intro = str(app.screen.query_one("#intro").render())
        assert "a click on the selected one shows its details" in intro, intro


async def test_user_keymap_overrides_by_binding_id(tmp_path):
    app, source = recorded_app(tmp_path, respond=applied, keymap={"stop": "x"})
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await pilot.press("s")
        await pilot.press("x")
        await pilot.pause()
        assert any(row[0] == "x" and row[2] == "stop" for row in app.key_help())
    assert source.ops_sent == [("stop", "r1", {})]


async def test_command_palette_runs_ops(tmp_path):
    app, source = recorded_app(tmp_path, respond=applied)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        app.run_command("stop", "r3")
        await pilot.pause()
    assert source.ops_sent == [("stop", "r3", {})]


async def test_quit_stops_and_checkpoints_a_hosted_experiment(tmp_path):
    app, source = recorded_app(tmp_path, respond=applied)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await pilot.press("q")
        assert isinstance(app.screen, QuitDialog) and app.screen.default == "stop"
        body = str(app.screen.query_one("#body").render())
        # the command rftui prints on exit, which works from any directory
        assert f"`rftui resume chatqa-lite --workdir {tmp_path.resolve()}`" in body.replace("\n", " "), body
        await pilot.press("escape")
        assert not source.done
        await pilot.press("q", "q")
        await pilot.pause(0.2)
    assert source.done
    assert app.return_value == 130  # stopped before every run ended: resumable


@pytest.mark.parametrize("hosted", [False])
async def test_quitting_a_watcher_never_stops_the_experiment(tmp_path, hosted):
    app, source = recorded_app(tmp_path, respond=applied)
    source.hosted = hosted
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await pilot.press("q")
        assert app.screen.default == "quit"
        await pilot.press("q")
        await pilot.pause()
    assert source.ops_sent == []
    assert app.return_value == 0


def test_bundled_themes_load():
    from rftui.ui.themes import bundled_themes

    themes, warnings = bundled_themes()
    names = {t.name for t in themes}
    assert {"rftui-dark", "rftui-light"} <= names and warnings == []
    assert not next(t for t in themes if t.name == "rftui-light").dark


async def test_a_broken_theme_file_falls_back_with_a_warning(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("name: broken\nprimary: not-a-colour\n")
    source = record(tmp_path / "exp", quanta=1)
    app = build_app(source, theme=str(bad), clock=FixedClock())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        assert app.theme == "rftui-dark"
        log = app.main.query_one("#log").texts()
        assert any("broken.yaml" in line and "using theme rftui-dark" in line for line in log), log


async def test_command_palette_provider_lists_ops_for_every_run(tmp_path):
    from rftui.ui.commands import RunCommands

    app, source = recorded_app(tmp_path, respond=applied)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        provider = RunCommands(app.screen)
        every = [str(hit.match_display) async for hit in provider.search("stop run")]
        assert {text.split(" (")[0] for text in every} >= {"Stop run r1", "Stop run r2", "Stop run r3", "Stop run r4"}
        hits = sorted([hit async for hit in provider.search("stop run r3")], key=lambda h: -h.score)
        assert [str(h.match_display) for h in hits] == ["Stop run r3 (r=8 lr=1e-4)"]  # a named run: only its commands
        hits[0].command()
        await pilot.pause()
    assert source.ops_sent == [("stop", "r3", {})]


async def test_every_help_row_can_be_reached_at_80x24(tmp_path):
    """The keys do not fit at 80x24: the help box scrolls to its last row (it was cut off, quit and
    the palette among the rows no key could reach)."""
    app, source = recorded_app(tmp_path, respond=applied)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        await pilot.press("question_mark")
        await pilot.pause()
        assert "rftui keys" in screen_text(app)
        await pilot.press("end")
        await pilot.pause()
        shown = screen_text(app)
        assert "command palette: every op for every run" in shown, shown
        assert "Quit: stop and checkpoint" in shown
        await pilot.press("escape")
        assert app.screen is app.main
