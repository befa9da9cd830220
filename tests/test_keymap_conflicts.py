"""ui.keymap: a key another binding of the same screen still has is refused (Textual would silently
give it to one of them), and the plain-text table of default keys stays the UI's."""
from __future__ import annotations

from textual.binding import Binding
from textual.widgets import TextArea

from rftui.cli import main as cli_main
from rftui.config.keymap import APP_WIDE, FIXED, SCREENS, check_keymap, key_name
from reliability_helpers import smoke_text


def problems(keymap: dict) -> list[str]:
    return [str(p) for p in check_keymap(keymap, "ui.keymap")]


def test_the_default_keys_and_screens_are_the_uis():
    from rftui.ui.app import RftuiApp
    from rftui.ui.clone_dialog import CloneDialog
    from rftui.ui.confirm import ConfirmDialog
    from rftui.ui.details import DetailsScreen
    from rftui.ui.help import HelpScreen
    from rftui.ui.main_screen import MainScreen
    from rftui.ui.quit_dialog import QuitDialog
    from rftui.ui.runs_table import RunsTable

    def declared(cls):
        return {b.id: b.key for b in cls.BINDINGS if isinstance(b, Binding) and b.id}

    assert declared(RftuiApp) == APP_WIDE
    assert {"main screen": declared(MainScreen), "clone dialog": declared(CloneDialog),
            "delete dialog": declared(ConfirmDialog), "run details screen": declared(DetailsScreen),
            "help screen": declared(HelpScreen), "quit dialog": declared(QuitDialog)} == SCREENS
    table_keys = {k for b in RunsTable.BINDINGS for k in b.key.split(",")}
    assert table_keys | {"ctrl+p"} == set(FIXED["main screen"])
    editor_keys = {k.strip() for b in TextArea.BINDINGS for k in b.key.split(",")}  # the clone dialog's editor
    assert editor_keys | {"enter", "tab"} == set(FIXED["clone dialog"])


def test_a_key_taken_from_a_default_binding_is_refused_naming_both():
    assert problems({"stop": "q"}) == [
        "ui.keymap.stop: `q` is already quit's key by default on the main screen — a key does one thing: "
        "pick a free one (a, b, e, f) or give quit another key too"]
    # `?` is question_mark, help's key, as Textual reads it
    assert key_name("?") == "question_mark"
    assert problems({"theme": "?"})[0].startswith(
        "ui.keymap.theme: `question_mark` is already help's key by default")
    # two remapped bindings given one key
    assert problems({"stop": "x", "resume": "f2,x"}) == [
        "ui.keymap.stop: `x` is already resume's key on the main screen — a key does one thing: "
        "pick a free one (a, b, e, f) or give resume another key too"]
    # the runs table has the focus: its keys come before the screen's (d, moved away, is free again)
    assert problems({"delete": "up"}) == [
        "ui.keymap.delete: `up` moves the runs table's cursor on the main screen — "
        "pick a free key, e.g. one of a, b, d, e"]
    # the clone dialog's text editor has the focus there, and takes every printable key
    assert problems({"clone-submit": "x"}) == [
        "ui.keymap.clone-submit: `x` is typed into the clone dialog's text editor — "
        "pick a free key, e.g. one of f1, f2, f3, f4"]
    assert problems({"clone-cancel": "escape,ctrl+a"}) == [
        "ui.keymap.clone-cancel: `ctrl+a` is a key of the clone dialog's text editor — "
        "pick a free key, e.g. one of f1, f2, f3, f4"]


def test_app_wide_and_dialog_keys_get_function_keys_as_alternatives():
    # ctrl+q/ctrl+c are priority bindings in every screen: a letter would be taken everywhere
    found = problems({"quit-ctrl": "q"})
    assert [p.split(" — ")[0] for p in found] == [
        "ui.keymap.quit-ctrl: `q` is already quit's key by default on the main screen",
        "ui.keymap.quit-ctrl: `q` is typed into the clone dialog's text editor",
        "ui.keymap.quit-ctrl: `q` is already details-close's key by default on the run details screen",
        "ui.keymap.quit-ctrl: `q` is already help-close's key by default on the help screen",
        "ui.keymap.quit-ctrl: `q` is already quit-confirm's key by default on the quit dialog"]
    assert "pick a free one (f1, f2, f3, f4)" in found[0]
    assert problems({"clone-submit": "escape"}) == [
        "ui.keymap.clone-submit: `escape` is already clone-cancel's key by default on the clone dialog — "
        "a key does one thing: pick a free one (f1, f2, f3, f4) or give clone-cancel another key too"]


def test_keys_that_do_not_collide_are_accepted():
    assert problems({"stop": "q", "quit": "x"}) == []          # quit moved away from q
    assert problems({"stop": "q", "quit": "s"}) == []          # swapped
    assert problems({"help": "escape"}) == []                  # escape is free on the main screen
    assert problems({"stop": "ctrl+s"}) == []                  # clone-submit's key, but in the clone dialog
    assert problems({"help": "f1,question_mark"}) == []        # its own default key kept
    assert problems({"confirm-yes": "q"}) == []                # the delete dialog has no q
    assert problems({"interrupt": "ctrl+c,f9"}) == []          # ctrl+c is the editor's copy too, by default
    assert problems({"clone-submit": "ctrl+enter"}) == []


def test_plan_exits_2_at_the_keymap_line(tmp_path, capsys):
    path = tmp_path / "experiment.yaml"
    path.write_text(smoke_text() + "ui: {keymap: {stop: q}}\n")
    line = path.read_text().count("\n")
    assert cli_main(["plan", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"experiment.yaml:{line}: ui.keymap.stop: `q` is already quit's key by default on the main screen" in err
    assert "Traceback" not in err
