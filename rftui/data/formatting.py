"""Turn raw dataset rows into the shapes TRL's SFTTrainer trains on.

A formatting function takes one row (a dict) and returns one of the shapes TRL's SFTTrainer
trains on: a conversational prompt/completion pair::

    {"prompt": [{"role": "system", ...}, {"role": "user", ...}],
     "completion": [{"role": "assistant", ...}]}

a plain prompt/completion pair ``{"prompt": "...", "completion": "..."}``, a conversation
``{"messages": [..., {"role": "assistant", ...}]}`` or plain text ``{"text": "..."}``.
Rows already in one of these shapes need no formatting function (`TrlColumns` keeps them). `support_chat` is the formatter for the bundled
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
MESSAGES_KEYS = frozenset({"messages"})

_EXPECTED_SHAPE = ('{"prompt": [messages], "completion": [messages]}, {"prompt": str, '
                   '"completion": str}, {"messages": [messages]} (each message a dict with string '
                   '"role" and "content") or {"text": str}')


class RowError(ValueError):
    """A row that cannot be formatted; `format_rows` reports the message as is, after the row's place."""


def trl_shape(row: Mapping[str, Any]) -> frozenset[str] | None:
    """The TRL dataset columns a raw row already has (prompt/completion, messages or text), else None."""
    if "prompt" in row and "completion" in row:
        return PROMPT_COMPLETION_KEYS
    if isinstance(row.get("messages"), list):
        return MESSAGES_KEYS
    if isinstance(row.get("text"), str):
        return TEXT_KEYS
    return None


class TrlColumns:
    """The formatter for rows already in a TRL shape: keeps those columns and drops the others."""

    def __init__(self, keys: frozenset[str]):
        self.keys = tuple(sorted(keys))

    def __call__(self, row: Mapping[str, Any]) -> dict[str, Any]:
        missing = [k for k in self.keys if k not in row]
        if missing:
            raise RowError(f"has no {' or '.join(repr(k) for k in missing)} field (it has {_fields(row)}), "
                           f"while row 0 has {' and '.join(map(repr, self.keys))}; give every row the same "
                           "columns")
        return {k: row[k] for k in self.keys}


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
        prompt.append({"role": "user", "content": self._text(row, self.prompt_field)})
        return {
            "prompt": prompt,
            "completion": [{"role": "assistant", "content": self._text(row, self.completion_field)}],
        }

    def _text(self, row: Mapping[str, Any], field: str) -> str:
        # The user wrote no code here, so say what is wrong with the row, not with "the function".
        both = f"{self.prompt_field!r} and {self.completion_field!r}"
        if field not in row:
            raise RowError(f"has no field {field!r} (it has {_fields(row)}); every row needs {both} (for other "
                           "column names set data.prompt_field / data.completion_field, or pass a formatting "
                           "function)")
        value = row[field]
        if not isinstance(value, str):
            kind = {bool: "true/false", int: "a number", float: "a number", list: "a list", dict: "an object"}
            what = "empty (null)" if value is None else \
                f"{kind.get(type(value), type(value).__name__)} ({_preview(value, 40)})"
            raise RowError(f"field {field!r} is {what}, not text; every row needs text in {both}: fix or "
                           "drop that row")
        return value

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
                source_name: str = "train data", positions: Sequence[int] | None = None,
                locate: Callable[[int], str] | None = None, name: str | None = None) -> list[dict[str, Any]]:
    """Apply `func` to every row and check each result has a shape TRL can train on.

    Returns the formatted rows. All rows must share one shape (see the module docstring).
    Raises `DataError` naming `source_name`, the row and the function when a row lacks
    a field, the function raises, or the result has the wrong shape. `positions[i]`, when
    given, is the number to name row i by (its row in the source file, before shuffling);
    `locate(position)`, when given, says where that is ("row 3 (line 4)"). `name`, when given, is how
    messages name the function: the hook as the user wrote it ("hooks/fmt.py:chat"), since a function
    loaded from a file only knows the internal module name its loader gave it.
    """
    if not callable(func):
        raise DataError(f"the formatting function for {source_name} is not callable: "
                        f"{func!r}. Pass a function that takes a row dict and returns a "
                        "formatted dict.")
    if not rows:
        raise DataError(f"{source_name} is empty: there are no rows to format. Check the "
                        "data source and its `select` range.")
    name = name or function_name(func)
    out: list[dict[str, Any]] = []
    first_kind: str | None = None
    for index, row in enumerate(rows):
        i = positions[index] if positions is not None else index
        try:
            result = func(row)
        except RowError as exc:
            raise DataError(f"{source_name} {_where(i, locate)}: {exc}.") from exc
        except KeyError as exc:
            field = exc.args[0] if exc.args else "?"
            raise DataError(f"{source_name} {_where(i, locate)}: formatting function {name} needs field "
                            f"{field!r}, which the row does not have (it has {_fields(row)}). Fix "
                            "the data or the field names the function uses.") from exc
        except Exception as exc:
            raise DataError(f"{source_name} {_where(i, locate)}: formatting function {name} raised "
                            f"{type(exc).__name__}: {exc}. Row: {_preview(row)}") from exc
        problem = _shape_problem(result)
        if problem:
            raise DataError(f"{source_name} {_where(i, locate)}: formatting function {name} returned "
                            f"{problem}; expected {_EXPECTED_SHAPE}.")
        kind = _shape_kind(result)
        if first_kind is None:
            first_kind = kind
        elif kind != first_kind:
            raise DataError(f"{source_name} {_where(i, locate)}: formatting function {name} returned "
                            f"{kind} but the first row was {first_kind}; every row must have the same "
                            "shape.")
        out.append(result)
    return out


def _where(position: int, locate: Callable[[int], str] | None) -> str:
    return locate(position) if locate is not None else f"row {position}"


def _fields(row: Any) -> str:
    if not isinstance(row, Mapping):
        return "?"
    return ", ".join(repr(k) for k in row) if row else "no fields"


def _shape_kind(result: dict[str, Any]) -> str:
    keys = frozenset(result)
    if keys == PROMPT_COMPLETION_KEYS:
        texts = isinstance(result["prompt"], str)
        return "a prompt/completion pair of " + ("texts" if texts else "messages")
    return "a conversation (messages)" if keys == MESSAGES_KEYS else "text"


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
        if isinstance(result["prompt"], str) or isinstance(result["completion"], str):
            for key in ("prompt", "completion"):  # TRL's standard (non-chat) prompt/completion rows
                if not isinstance(result[key], str):
                    other = "completion" if key == "prompt" else "prompt"
                    return (f'"{key}" as a {type(result[key]).__name__} while "{other}" is a string '
                            "(both must be strings, or both lists of messages)")
            return None
        return _messages_problem(result, ("prompt", "completion"))
    if keys == MESSAGES_KEYS:
        problem = _messages_problem(result, ("messages",))
        if problem is None and result["messages"][-1]["role"] != "assistant":
            return ('"messages" whose last message is not the assistant\'s (a conversation ends with the '
                    "reply the model learns)")
        if problem is None and all(m["role"] == "assistant" for m in result["messages"]):
            return '"messages" with only assistant messages (nothing the reply answers)'
        return problem
    return f"a dict with keys {sorted(map(str, keys))}"


def _messages_problem(result: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    for key in keys:
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


def _preview(row: Any, limit: int = 120) -> str:
    text = repr(row)
    return text if len(text) <= limit else text[: limit - 3] + "..."
