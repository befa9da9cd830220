"""Map field paths (`grid.lora[1].r`) of a YAML document to their line numbers, and find repeated keys."""
from __future__ import annotations

from typing import Callable, NamedTuple

import yaml


class DuplicateKey(NamedTuple):
    path: str    # the repeated key's field path, e.g. `training.seed`
    first: int   # 1-based line of its first occurrence
    line: int    # 1-based line of the repeat


def _walk(text: str, visit: Callable[[str, yaml.Node, "yaml.Node | None", "yaml.Node | None"], None]) -> None:
    """Call `visit(path, node, key_node, mapping)` for the root and every key/item of `text`, where
    `mapping` is the mapping node holding the key (nothing happens when the text does not parse)."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return

    def walk(node, path: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                child = f"{path}.{key_node.value}" if path else str(key_node.value)
                visit(child, value_node, key_node, node)
                walk(value_node, child)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                child = f"{path}[{i}]"
                visit(child, item, None, None)
                walk(item, child)

    if root is not None:
        visit("", root, None, None)
        walk(root, "")


def line_map(text: str) -> dict[str, int]:
    """Path -> 1-based line of each key/item in `text` (empty when it does not parse)."""
    lines: dict[str, int] = {}

    def visit(path: str, node, key_node, mapping) -> None:
        lines[path] = (key_node or node).start_mark.line + 1

    _walk(text, visit)
    return lines


def duplicate_keys(text: str) -> list[DuplicateKey]:
    """Keys given twice in one mapping (YAML itself keeps the last one without a word)."""
    firsts: dict[tuple[int, str], yaml.Node] = {}  # (id of the mapping node, key) -> its first key node
    found: list[DuplicateKey] = []

    def visit(path: str, node, key_node, mapping) -> None:
        if key_node is None or key_node.tag == "tag:yaml.org,2002:merge":
            return
        first = firsts.setdefault((id(mapping), key_node.value), key_node)
        if first is not key_node:  # the same key node again is an alias (`*name`) revisited, not a repeat
            found.append(DuplicateKey(path, first.start_mark.line + 1, key_node.start_mark.line + 1))

    _walk(text, visit)
    return found


def line_of(lines: dict[str, int], path: str) -> int | None:
    """The line of `path`, or of its nearest ancestor that has one."""
    while path:
        if path in lines:
            return lines[path]
        cut = max(path.rfind("."), path.rfind("["))
        path = path[:cut] if cut > 0 else ""
    return lines.get("")
