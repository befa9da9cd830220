"""Turn raw dataset rows into the shapes TRL's SFTTrainer trains on.

A formatting function takes one row (a dict) and returns either a conversational
prompt/completion pair::

    {"prompt": [{"role": "system", ...}, {"role": "user", ...}],
     "completion": [{"role": "assistant", ...}]}

or plain text ``{"text": "..."}``. `support_chat` is the formatter for the bundled
customer-support data (instruction / response rows); `make_chat_formatter` builds the same
kind of function for other column names or system prompts, as a picklable object so it can
be shipped to worker processes. `format_rows` applies any formatter and checks every result,
so a bad row fails before training with a message that names it.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Mapping, Sequence

from rftui.errors import DataError

SUPPORT_SYSTEM_PROMPT = (
    "You are a helpful and friendly customer support assistant. Please answer the user's "
    "query to the best of your ability."
)

PROMPT_COMPLETION_KEYS = frozenset({"prompt", "completion"})
TEXT_KEYS = frozenset({"text"})

_EXPECTED_SHAPE = ('{"prompt": [messages], "completion": [messages]} (each message a dict '
                   'with string "role" and "content") or {"text": str}')


def support_chat(row: Mapping[str, Any]) -> dict[str, list[dict[str, str]]]:
    """Format an instruction/response row as a system + user prompt and an assistant reply."""
    return {
        "prompt": [
            {"role": "system", "content": SUPPORT_SYSTEM_PROMPT},
            {"role": "user", "content": row["instruction"]},
        ],
        "completion": [
            {"role": "assistant", "content": row["response"]},
        ],
    }


class ChatFormatter:
    """A prompt/completion formatter for rows with one prompt column and one answer column.

    Instances are plain objects (picklable, comparable) that behave like `support_chat`
    with a configurable system prompt and column names. An empty or None system prompt
    leaves the system message out.
    """

    def __init__(self, system_prompt: str | None = SUPPORT_SYSTEM_PROMPT,
                 prompt_field: str = "instruction", completion_field: str = "response"):
        self.system_prompt = system_prompt
        self.prompt_field = prompt_field
        self.completion_field = completion_field

    def __call__(self, row: Mapping[str, Any]) -> dict[str, list[dict[str, str]]]:
        prompt: list[dict[str, str]] = []
        if self.system_prompt:
            prompt.append({"role": "system", "content": self.system_prompt})
        prompt.append({"role": "user", "content": row[self.prompt_field]})
        return {
            "prompt": prompt,
            "completion": [{"role": "assistant", "content": row[self.completion_field]}],
        }

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ChatFormatter):
            return NotImplemented
        return (self.system_prompt, self.prompt_field, self.completion_field) == (
            other.system_prompt, other.prompt_field, other.completion_field)

    def __hash__(self) -> int:
        return hash((self.system_prompt, self.prompt_field, self.completion_field))

    def __repr__(self) -> str:
        return (f"ChatFormatter(system_prompt={self.system_prompt!r}, "
                f"prompt_field={self.prompt_field!r}, "
                f"completion_field={self.completion_field!r})")


def make_chat_formatter(system_prompt: str | None = SUPPORT_SYSTEM_PROMPT,
                        prompt_field: str = "instruction",
                        completion_field: str = "response") -> ChatFormatter:
    """A picklable formatter like `support_chat` for other columns or system prompts."""
    return ChatFormatter(system_prompt, prompt_field, completion_field)


def function_name(func: Any) -> str:
    """'module:qualname' for a function, a partial or a callable object."""
    while isinstance(func, functools.partial):
        func = func.func
    target = func if hasattr(func, "__qualname__") else type(func)
    module = getattr(target, "__module__", None) or "?"
    qualname = getattr(target, "__qualname__", None) or getattr(target, "__name__", repr(func))
    return f"{module}:{qualname}"


def format_rows(rows: Sequence[Mapping[str, Any]], func: Callable[[Mapping[str, Any]], Any],
                source_name: str = "train data", positions: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """Apply `func` to every row and check each result has a shape TRL can train on.

    Returns the formatted rows. All rows must share one shape (prompt/completion or text).
    Raises `DataError` naming `source_name`, the row index and the function when a row lacks
    a field, the function raises, or the result has the wrong shape. `positions[i]`, when
    given, is the number to name row i by (its row in the source file, before shuffling).
    """
    if not callable(func):
        raise DataError(f"the formatting function for {source_name} is not callable: "
                        f"{func!r}. Pass a function that takes a row dict and returns a "
                        "formatted dict.")
    if not rows:
        raise DataError(f"{source_name} is empty: there are no rows to format. Check the "
                        "data source and its `select` range.")
    name = function_name(func)
    out: list[dict[str, Any]] = []
    first_keys: frozenset[str] | None = None
    for index, row in enumerate(rows):
        i = positions[index] if positions is not None else index
        try:
            result = func(row)
        except KeyError as exc:
            field = exc.args[0] if exc.args else "?"
            fields = ", ".join(repr(k) for k in row) if isinstance(row, Mapping) else "?"
            raise DataError(f"{source_name} row {i}: formatting function {name} needs field "
                            f"{field!r}, which the row does not have (it has {fields}). Fix "
                            "the data or the field names the function uses.") from exc
        except Exception as exc:
            raise DataError(f"{source_name} row {i}: formatting function {name} raised "
                            f"{type(exc).__name__}: {exc}. Row: {_preview(row)}") from exc
        problem = _shape_problem(result)
        if problem:
            raise DataError(f"{source_name} row {i}: formatting function {name} returned "
                            f"{problem}; expected {_EXPECTED_SHAPE}.")
        keys = frozenset(result)
        if first_keys is None:
            first_keys = keys
        elif keys != first_keys:
            raise DataError(f"{source_name} row {i}: formatting function {name} returned keys "
                            f"{sorted(keys)} but row 0 had {sorted(first_keys)}; every row must "
                            "have the same shape.")
        out.append(result)
    return out


def _shape_problem(result: Any) -> str | None:
    """None if `result` is a valid formatted row, else a short description of what is wrong."""
    if not isinstance(result, dict):
        return f"a {type(result).__name__}, not a dict"
    keys = frozenset(result)
    if keys == TEXT_KEYS:
        if not isinstance(result["text"], str):
            return f'"text" as a {type(result["text"]).__name__}, not a string'
        return None
    if keys == PROMPT_COMPLETION_KEYS:
        for key in ("prompt", "completion"):
            messages = result[key]
            if not isinstance(messages, list) or not messages:
                return f'"{key}" that is not a non-empty list of messages'
            for j, msg in enumerate(messages):
                if not isinstance(msg, dict):
                    return f'"{key}"[{j}] as a {type(msg).__name__}, not a message dict'
                for part in ("role", "content"):
                    if not isinstance(msg.get(part), str):
                        return (f'"{key}"[{j}] whose "{part}" is '
                                f'{type(msg.get(part)).__name__}, not a string')
        return None
    return f"a dict with keys {sorted(map(str, keys))}"


def _preview(row: Any, limit: int = 120) -> str:
    text = repr(row)
    return text if len(text) <= limit else text[: limit - 3] + "..."
