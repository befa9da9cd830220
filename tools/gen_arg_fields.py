"""Regenerate rftui/config/arg_fields.json: the SFTConfig and LoraConfig argument names and kinds.

`rftui plan` validates configs without importing torch or TRL, so it reads this file instead
of the classes. Run after upgrading TRL or PEFT: `python tools/gen_arg_fields.py`.
"""
from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "rftui" / "config" / "arg_fields.json"


def kind(tp) -> str:
    if tp in (int, float, bool, str):
        return tp.__name__
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        parts = {kind(a) for a in args if a is not type(None)}
        if type(None) in args:
            parts.add("none")  # null is a valid value (the library's default); validation checks this marker
        return "|".join(sorted(parts))
    if origin in (list, tuple, set):
        return "list"
    if origin is dict:
        return "dict"
    if origin is typing.Literal:
        return "str"
    if isinstance(tp, type) and issubclass(tp, str):
        return "str"
    return "any"


def fields_of(cls) -> dict[str, str]:
    hints = typing.get_type_hints(cls)
    return {f.name: kind(hints.get(f.name, typing.Any)) for f in dataclasses.fields(cls) if f.init}


def main() -> None:
    from peft import LoraConfig
    from trl import SFTConfig

    data = {"sft": fields_of(SFTConfig), "lora": fields_of(LoraConfig)}
    OUT.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUT}: {len(data['sft'])} SFTConfig and {len(data['lora'])} LoraConfig fields")


if __name__ == "__main__":
    main()
