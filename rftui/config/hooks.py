"""User hooks named as `module:function` or `path/to/file.py:function`."""
from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any, Callable

from rftui.errors import RftuiError


class HookError(RftuiError):
    """A hook reference cannot be resolved."""


def check_hook_ref(ref: Any, base_dir: Path) -> str | None:
    """Why `ref` cannot name a hook (None when it looks resolvable). Does not import the module."""
    if not isinstance(ref, str) or ref.count(":") != 1 or not all(ref.split(":")):
        return "must look like `module:function` or `file.py:function`"
    module, _ = ref.split(":")
    if module.endswith(".py"):
        path = (base_dir / module).resolve()
        return None if path.is_file() else f"file {path} does not exist"
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        found = None
    if found is None:
        if (base_dir / (module.replace(".", "/") + ".py")).is_file():
            return None
        return f"module `{module}` cannot be found"
    return None


def resolve_hook(ref: Any, base_dir: Path | str | None = None) -> Callable[..., Any] | None:
    """The callable behind a hook reference (callables pass through)."""
    if ref is None or callable(ref):
        return ref
    base = Path(base_dir or ".")
    problem = check_hook_ref(ref, base)
    if problem:
        raise HookError(f"hook `{ref}`: {problem}")
    module_name, func_name = ref.split(":")
    try:
        if module_name.endswith(".py"):
            path = (base / module_name).resolve()
            spec = importlib.util.spec_from_file_location(f"rftui_hooks_{path.stem}", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            if str(base.resolve()) not in sys.path:
                sys.path.insert(0, str(base.resolve()))
            module = importlib.import_module(module_name)
    except Exception as exc:  # the user's module raised while importing
        raise HookError(f"hook `{ref}`: importing it failed: {type(exc).__name__}: {exc}") from exc
    func = getattr(module, func_name, None)
    if not callable(func):
        raise HookError(f"hook `{ref}`: `{func_name}` is not a function in {module_name}")
    return func
