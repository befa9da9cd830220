"""Themes as data files (TOML or YAML) in the top-level `themes/` folder, turned into Textual Themes.

A theme file holds `textual.theme.Theme` fields (name, primary, background, ..., dark) and an
optional `variables` table. A file that fails to load never stops the app: the caller gets a
warning to show and the default theme is used.
"""
from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from textual.theme import BUILTIN_THEMES, Theme

DEFAULT_THEME = "rftui-dark"
LAST_RESORT = "textual-dark"
SUFFIXES = (".toml", ".yaml", ".yml")
_FIELDS = {f.name for f in fields(Theme)}


class ThemeError(Exception):
    pass


def themes_dir() -> Path:
    from rftui.resources import bundled_dir

    return bundled_dir("themes")


def load_theme_file(path: Path) -> Theme:
    """A Theme from a file; ThemeError says what is wrong with it."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ThemeError(f"cannot read theme file {path}: {exc.strerror or exc}") from None
    try:
        if path.suffix == ".toml":
            try:
                import tomllib
            except ImportError:  # Python 3.10
                import tomli as tomllib
            data = tomllib.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # tomllib / yaml parse errors name the line
        raise ThemeError(f"theme file {path} is not valid {path.suffix[1:].upper()}: {exc}") from None
    if not isinstance(data, dict):
        raise ThemeError(f"theme file {path} must be a table of Theme fields (name, primary, ...)")
    data.setdefault("name", path.stem)
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise ThemeError(f"theme file {path}: unknown key(s) {', '.join(unknown)}; "
                         f"known keys: {', '.join(sorted(_FIELDS))}")
    if "primary" not in data:
        raise ThemeError(f"theme file {path}: `primary` is required")
    try:
        theme = Theme(**data)
        theme.to_color_system().generate()  # parses every colour now, not at first paint
    except Exception as exc:
        raise ThemeError(f"theme file {path}: {exc}") from None
    return theme


def bundled_themes(folder: Path | None = None) -> tuple[list[Theme], list[str]]:
    """Every loadable theme in the themes folder, and a warning for each that is not."""
    folder = folder or themes_dir()
    themes, warnings = [], []
    if not folder.is_dir():
        return themes, [f"themes folder {folder} is missing; using Textual's built-in themes"]
    for path in sorted(folder.iterdir()):
        if path.suffix not in SUFFIXES:
            continue
        try:
            themes.append(load_theme_file(path))
        except ThemeError as exc:
            warnings.append(str(exc))
    return themes, warnings


def resolve(requested: str | None, available: dict[str, Theme]) -> tuple[Theme | None, str, list[str]]:
    """(extra theme to register or None, name to use, warnings) for `--theme NAME|PATH`."""
    default = DEFAULT_THEME if DEFAULT_THEME in available else LAST_RESORT
    if not requested:
        return None, default, []
    if requested in available or requested in BUILTIN_THEMES:
        return None, requested, []
    path = Path(requested).expanduser()
    if path.suffix in SUFFIXES or path.exists():
        try:
            theme = load_theme_file(path)
            return theme, theme.name, []
        except ThemeError as exc:
            return None, default, [f"{exc}; using theme {default}"]
    names = ", ".join(sorted(available))
    return None, default, [f"no theme {requested!r} (bundled: {names}); using theme {default}"]
