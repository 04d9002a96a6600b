"""Safe YAML loading that remembers which file and line every key path came from."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from matrix.errors import Problem, SpecError

Path_ = tuple  # a key path: strings for mapping keys, ints for list indices


class LineMap:
    """Key path -> (file, line). Paths that were never written (defaults) fall back to their parent."""

    def __init__(self) -> None:
        self._where: dict[tuple, tuple[str, int]] = {}

    def add(self, path: tuple, file: str, line: int) -> None:
        self._where[path] = (file, line)

    def update(self, other: "LineMap") -> None:
        self._where.update(other._where)

    def locate(self, path: tuple) -> tuple[str, int | None]:
        path = tuple(path)
        while path:
            if path in self._where:
                return self._where[path]
            path = path[:-1]
        return self._where.get((), ("<spec>", None))


def _walk(node: yaml.Node, path: tuple, file: str, lines: LineMap) -> None:
    lines.add(path, file, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            k = key.value
            lines.add(path + (k,), file, key.start_mark.line + 1)
            _walk(value, path + (k,), file, lines)
            lines.add(path + (k,), file, key.start_mark.line + 1)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, path + (i,), file, lines)


def load_yaml(path: Path) -> tuple[Any, LineMap]:
    """Load one YAML file safely; syntax errors become a SpecError naming file and line."""
    file = str(path)
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise SpecError(problems=[Problem(file, None, "", "file not found")]) from None
    except OSError as e:
        raise SpecError(problems=[Problem(file, None, "", f"cannot read: {e.strerror}")]) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark else None
        msg = getattr(e, "problem", None) or str(e)
        raise SpecError(problems=[Problem(file, line, "", f"invalid YAML: {msg}")]) from None
    lines = LineMap()
    if node is not None:
        _walk(node, (), file, lines)
    return data, lines


def format_path(path: tuple) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out
