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
    """Record every key path's line; a key given twice in one mapping is refused (PyYAML would silently
    keep the last one)."""
    lines.add(path, file, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        first: dict[tuple, int] = {}
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode):
                raise SpecError(problems=[Problem(file, key.start_mark.line + 1, format_path(path),
                                                  "a key must be a plain value, not a list or mapping")])
            k = key.value
            if key.tag != "tag:yaml.org,2002:merge":
                if (key.tag, k) in first:
                    raise SpecError(problems=[Problem(file, key.start_mark.line + 1, format_path(path + (k,)),
                                                      f"key given twice (first on line {first[key.tag, k]})")])
                first[key.tag, k] = key.start_mark.line + 1
            lines.add(path + (k,), file, key.start_mark.line + 1)
            _walk(value, path + (k,), file, lines)
            lines.add(path + (k,), file, key.start_mark.line + 1)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, path + (i,), file, lines)


#: Most nodes a file may expand to once its aliases are followed. A spec is a few hundred nodes; nested
#: aliases (`a: &a [x, x]`, `b: &b [*a, *a]`, ...) double with every level, and a "billion laughs" file
#: of a few hundred bytes would otherwise make the walk below, validation and hashing take forever.
MAX_NODES = 100_000


def _expanded_sizes(root: yaml.Node, file: str) -> dict[int, int]:
    """Nodes below each node once aliases are expanded (a node's children counted as often as they are
    referenced), computed once per distinct node; a node that contains itself is refused."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:  # iterative: a deeply nested file must not hit Python's recursion limit
        node, children_done = stack.pop()
        if id(node) in sizes:
            continue
        children = _children(node)
        if children_done:
            on_path.discard(id(node))
            sizes[id(node)] = min(MAX_NODES + 1, 1 + sum(sizes[id(c)] for c in children))
            continue
        if id(node) in on_path:
            raise SpecError(problems=[Problem(file, node.start_mark.line + 1, "", "invalid YAML: an alias refers "
                                              "to a node that contains it (recursive structure)")])
        on_path.add(id(node))
        stack.append((node, True))
        for c in children:
            if id(c) in on_path:
                raise SpecError(problems=[Problem(file, c.start_mark.line + 1, "", "invalid YAML: an alias "
                                                  "refers to a node that contains it (recursive structure)")])
            if id(c) not in sizes:
                stack.append((c, False))
    return sizes


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_expansion(root: yaml.Node, file: str) -> None:
    sizes = _expanded_sizes(root, file)
    if sizes[id(root)] <= MAX_NODES:
        return
    path: tuple = ()
    node = root
    while True:  # descend to the innermost key whose expansion alone is too large, to name it
        nxt = None
        if isinstance(node, yaml.MappingNode):
            nxt = next(((path + (k.value,), v) for k, v in node.value if sizes[id(v)] > MAX_NODES), None)
        elif isinstance(node, yaml.SequenceNode):
            nxt = next(((path + (i,), v) for i, v in enumerate(node.value) if sizes[id(v)] > MAX_NODES), None)
        if nxt is None:
            break
        path, node = nxt
    raise SpecError(problems=[Problem(file, node.start_mark.line + 1, format_path(path),
                                      f"YAML aliases here expand to more than {MAX_NODES:,} values; a spec is "
                                      "far smaller (is this an alias bomb?)")])


def load_yaml(path: Path) -> tuple[Any, LineMap]:
    """Load one YAML file safely; syntax errors, keys given twice and alias expansions past `MAX_NODES`
    become a SpecError naming file and line. The file is composed once: the checks run on the node graph
    before anything is constructed from it."""
    file = str(path)
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise SpecError(problems=[Problem(file, None, "", "file not found")]) from None
    except OSError as e:
        raise SpecError(problems=[Problem(file, None, "", f"cannot read: {e.strerror}")]) from None
    except UnicodeDecodeError as e:
        raise SpecError(problems=[Problem(file, None, "", f"not UTF-8 text ({e.reason})")]) from None
    if "\x00" in text:
        raise SpecError(problems=[Problem(file, text[: text.index("\x00")].count("\n") + 1, "",
                                          "invalid YAML: a NUL character")])
    loader = yaml.SafeLoader(text)
    lines = LineMap()
    lines.add((), file, 1)  # problems with no better place (a missing top-level key) still name the file
    try:
        node = loader.get_single_node()
        if node is not None:
            _check_expansion(node, file)
            _walk(node, (), file, lines)
        data = loader.construct_document(node) if node is not None else None
    except RecursionError:
        raise SpecError(problems=[Problem(file, None, "", "invalid YAML: nested too deeply")]) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark else None
        msg = getattr(e, "problem", None) or str(e)
        raise SpecError(problems=[Problem(file, line, "", f"invalid YAML: {msg}")]) from None
    finally:
        loader.dispose()
    return data, lines


def format_path(path: tuple) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out
