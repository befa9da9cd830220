"""User hooks named as `module:function` or `path/to/file.py:function`."""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
import traceback
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any, Callable

from rftui.errors import RftuiError

HOOK_FORMS = "as module:function or file.py:function"


class HookError(RftuiError):
    """A hook reference cannot be resolved. `message` says what is wrong and `hint` what to do about it (which
    depends on the cause: no such module, a module that raises on import, no such function)."""

    def __init__(self, message: str, hint: str = ""):
        self.message, self.hint = message, hint
        super().__init__(f"{message} — {hint}" if hint else message)


def check_hook_ref(ref: Any, base_dir: Path) -> str | None:
    """Why `ref` cannot name a hook (None when it looks resolvable), saying where its module was looked for.
    Does not run the module (a dotted name's parent packages are imported to look inside them)."""
    if not isinstance(ref, str) or ref.count(":") != 1 or not all(ref.split(":")):
        return "must look like `module:function` or `file.py:function`"
    module, _ = ref.split(":")
    if module.endswith(".py"):
        path = (base_dir / module).resolve()
        if path.is_file():
            return None
        relative = "" if Path(module).expanduser().is_absolute() else f" (relative to {base_dir.resolve()})"
        return f"file {path} does not exist{relative}"
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        found = None
    except Exception:  # a parent package raises on import: resolve_hook reports that, with its line
        return None
    if found is None:
        local = base_dir.resolve() / module.replace(".", "/")
        if local.with_suffix(".py").is_file() or (local / "__init__.py").is_file():
            return None
        return (f"module `{module}` cannot be found: it is not installed in this Python environment and there "
                f"is no {local.with_suffix('.py')}")
    return None


def unfound_hook_hint(ref: Any) -> str:
    """What to do about a reference check_hook_ref refused: fix its form, or make its module findable."""
    module = ref.split(":")[0] if isinstance(ref, str) and ref.count(":") == 1 else ""
    return _not_found_hint(module) if module else f"name a function {HOOK_FORMS}"


def _not_found_hint(module: str) -> str:
    if module.endswith(".py"):
        return "name an existing Python file, as path/to/file.py:function, or an importable module, as module:function"
    return ("install the module or put its folder on PYTHONPATH, or name its file instead, as "
            "path/to/file.py:function")


def _import_line(exc: BaseException, tb: TracebackType | None, origin: str | None) -> str:
    """Where the module raised: the line of `origin` (the module's own file) nearest the error, or, for a
    SyntaxError, the line the parser stopped at (in whichever file that was)."""
    if isinstance(exc, SyntaxError) and exc.filename and exc.lineno:
        return f"{exc.filename}, line {exc.lineno}"
    frames = list(traceback.walk_tb(tb))
    own = [(f, n) for f, n in frames if origin and Path(f.f_code.co_filename) == Path(origin)]
    user = own or [(f, n) for f, n in frames
                   if not f.f_code.co_filename.startswith("<frozen") and f.f_code.co_filename != __file__]
    if not user:
        return origin or "?"
    frame, lineno = user[-1]
    return f"{frame.f_code.co_filename}, line {lineno}"


def _import(module_name: str, base: Path, ref: str) -> ModuleType:
    origin = None
    try:
        if module_name.endswith(".py"):
            path = (base / module_name).resolve()
            origin = str(path)
            spec = importlib.util.spec_from_file_location(f"rftui_hooks_{path.stem}", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
        if str(base.resolve()) not in sys.path:
            sys.path.insert(0, str(base.resolve()))
        try:
            found = importlib.util.find_spec(module_name)
            origin = found.origin if found is not None else None
        except Exception:  # a parent package that raises: import_module below says so
            pass
        return importlib.import_module(module_name)
    except Exception as exc:  # the user's module raised while importing
        text = exc.msg if isinstance(exc, SyntaxError) else str(exc)
        where = _import_line(exc, exc.__traceback__, origin)
        raise HookError(f"hook `{ref}`: importing {module_name} raised {type(exc).__name__}: {text} ({where})",
                        "fix the module so that it imports; the function cannot be loaded until it does") from exc


def _functions_of(module: ModuleType) -> list[str]:
    """The public functions a module defines itself (not those it imports), for a hint."""
    return sorted(name for name, value in vars(module).items()
                  if not name.startswith("_") and inspect.isfunction(value)
                  and value.__module__ == module.__name__)


def resolve_hook(ref: Any, base_dir: Path | str | None = None) -> Callable[..., Any] | None:
    """The callable behind a hook reference (callables pass through)."""
    if ref is None or callable(ref):
        return ref
    base = Path(base_dir or ".")
    problem = check_hook_ref(ref, base)
    if problem:
        raise HookError(f"hook `{ref}`: {problem}", unfound_hook_hint(ref))
    module_name, func_name = ref.split(":")
    module = _import(module_name, base, ref)
    func = getattr(module, func_name, None)
    if not callable(func):
        defined = _functions_of(module)
        listed = f"; it defines {', '.join(f'`{n}`' for n in defined[:10])}" if defined else ""
        raise HookError(f"hook `{ref}`: `{func_name}` is not a function in {module_name}",
                        f"name a function that the module defines, {HOOK_FORMS}{listed}")
    return func
