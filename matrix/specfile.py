"""Reading a spec file: safe-loaded YAML, `extends:` merged, `--set` overrides applied, validated
against `matrix.spec`'s models and the plug-in registries. Every problem becomes a `SpecError` whose
lines read `file:line: key.path: what was expected`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from matrix.errors import Problem, SpecError
from matrix.registry import BENCHMARKS, FAMILIES, METHODS, SYNTHETIC_BENCHMARKS
from matrix.settings import training_params
from matrix.spec import AXES, Spec, TrainingSpec, _deep_merge, parse_scale
from matrix.yamlmap import LineMap, format_path, load_yaml


def _load_with_extends(path: Path, seen: tuple[Path, ...] = ()) -> tuple[dict, LineMap]:
    data, lines = load_yaml(path)
    if data is None:
        raise SpecError(problems=[Problem(str(path), 1, "", "empty file: expected a spec, a mapping with "
                                          "name, base_models, methods and benchmarks")])
    if not isinstance(data, dict):
        raise SpecError(problems=[Problem(str(path), 1, "", "expected a mapping of spec keys at the top level")])
    parent = data.pop("extends", None)
    if parent is None:
        return data, lines
    parent_path = (path.parent / str(parent)).resolve()
    if parent_path in seen:
        file, line = lines.locate(("extends",))
        raise SpecError(problems=[Problem(file, line, "extends", f"circular extends through {parent_path}")])
    if not parent_path.exists():
        file, line = lines.locate(("extends",))
        raise SpecError(problems=[Problem(file, line, "extends", f"file not found: {parent_path}")])
    base, base_lines = _load_with_extends(parent_path, seen + (parent_path,))
    base_lines.update(lines)
    return _deep_merge(base, data), base_lines


def _parse_override(text: str) -> tuple[list[str | int], Any]:
    if "=" not in text:
        raise SpecError(problems=[Problem("--set", None, text, "expected KEY.PATH=VALUE")])
    key, raw = text.split("=", 1)
    path: list[str | int] = [int(p) if p.isdigit() else p for p in key.strip().split(".")]
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return path, value


def apply_overrides(data: dict, overrides: list[str], lines: LineMap) -> None:
    """Apply `--set a.b.c=value` overrides in place; each path is remembered as coming from --set."""
    for text in overrides:
        path, value = _parse_override(text)
        node: Any = data
        for i, p in enumerate(path[:-1]):
            if isinstance(node, list) and isinstance(p, int) and p < len(node):
                node = node[p]
            elif isinstance(node, dict):
                node = node.setdefault(p, {})
            else:
                raise SpecError(problems=[Problem("--set", None, text, f"cannot descend into {format_path(tuple(path[:i + 1]))}")])
        last = path[-1]
        if isinstance(node, list) and isinstance(last, int) and last < len(node):
            node[last] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise SpecError(problems=[Problem("--set", None, text, "cannot set this path")])
        lines.add(tuple(path), f"--set {text}", None)  # type: ignore[arg-type]


def _data_path(loc: tuple, data: Any) -> tuple:
    """Pydantic adds union tags and model names to `loc`; keep only the parts that index the data."""
    out: list = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            out.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            out.append(part)
            node = node[part]
    return tuple(out)


def _describe(err: dict) -> str:
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        return "unknown key"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if err["type"] not in ("missing",) and "input" in err and not isinstance(err["input"], (dict, list)):
        msg += f" (got {err['input']!r})"
    return msg


def validate(data: dict, lines: LineMap, file: str) -> Spec:
    try:
        spec = Spec.model_validate(data)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            path = _data_path(err["loc"], data)
            last = err["loc"][-1] if err["loc"] else None
            if err["type"] == "missing" and isinstance(last, str):
                path = path + (last,)
            where_file, line = lines.locate(path)
            problems.append(Problem(where_file, line, format_path(path), _describe(err)))
        raise SpecError(problems=_unique(problems)) from None
    problems = _check_references(spec, data, lines)
    if problems:
        raise SpecError(problems=problems)
    return spec


def _unique(problems: list[Problem]) -> list[Problem]:
    seen, out = set(), []
    for p in problems:
        if (p.file, p.line, p.key, p.message) not in seen:
            seen.add((p.file, p.line, p.key, p.message))
            out.append(p)
    return out


def _check_references(spec: Spec, data: dict, lines: LineMap) -> list[Problem]:
    """Cross-checks Pydantic cannot do alone: registered plug-ins, known names in rules and tables."""
    problems: list[Problem] = []

    def add(path: tuple, msg: str) -> None:
        file, line = lines.locate(path)
        problems.append(Problem(file, line, format_path(path), msg))

    for name, bm in spec.base_models.items():
        if bm.family not in FAMILIES:
            add(("base_models", name, "family"), f"unknown model family {bm.family!r}; known: {', '.join(FAMILIES.names())}")
    seen_methods: set[str] = set()
    for i, m in enumerate(spec.methods):
        if m.plugin not in METHODS:
            add(("methods", i), f"unknown method {m.plugin!r}; known: {', '.join(METHODS.names())}")
        else:
            for msg in METHODS.get(m.plugin).check_params(m.params):
                add(("methods", i, "params"), msg)
        if m.id in seen_methods or seen_methods & set(m.row_ids()):
            add(("methods", i), f"method {m.id!r} listed twice")
        seen_methods.update(m.row_ids())
        if m.iterations > 1 and m.plugin in METHODS and METHODS.get(m.plugin).objective == "none":
            add(("methods", i, "iterations"), f"method {m.plugin!r} trains nothing: it cannot iterate")
        bad = set(m.overrides) - set(TrainingSpec.model_fields)
        if bad:
            add(("methods", i, "overrides"), f"unknown training keys {sorted(bad)}; known: {', '.join(TrainingSpec.model_fields)}")
        if not bad and m.plugin in METHODS:
            problems += _check_training(spec, i, lines)
        if m.sft_mix is not None and m.plugin in METHODS and METHODS.get(m.plugin).objective != "sft":
            add(("methods", i, "sft_mix"), f"method {m.plugin!r} does not train with SFT: an SFT mix cannot join it")
        elif m.sft_mix is not None and m.sft_mix not in spec.datasets:
            add(("methods", i, "sft_mix"), f"dataset {m.sft_mix!r} is not in 'datasets'")
    for name, ds in spec.datasets.items():
        for j, part in enumerate(ds.parts):
            if part.dataset not in spec.datasets or spec.datasets[part.dataset].source == "mixture":
                add(("datasets", name, "parts", j, "dataset"),
                    f"{part.dataset!r} is not a non-mixture dataset of 'datasets'")
    seen_benchmarks: set[str] = set()
    for i, b in enumerate(spec.benchmarks):
        if b.plugin not in BENCHMARKS:
            add(("benchmarks", i), f"unknown benchmark {b.plugin!r}; known: {', '.join(BENCHMARKS.names())}")
        if b.id in seen_benchmarks:
            add(("benchmarks", i), f"benchmark {b.id!r} listed twice")
        if b.synthetic is not None and b.plugin in BENCHMARKS and b.plugin not in SYNTHETIC_BENCHMARKS:
            add(("benchmarks", i, "synthetic"),
                f"the synthetic world cannot write benchmark {b.plugin!r} (it writes "
                f"{', '.join(SYNTHETIC_BENCHMARKS.names())}); give 'path' (its official files), or 'dataset' "
                "for an in-domain benchmark")
        if b.template is not None and b.plugin in BENCHMARKS and not hasattr(BENCHMARKS.get(b.plugin), "template_path"):
            add(("benchmarks", i, "template"), f"benchmark {b.plugin!r} has no grading template to replace")
        if b.plugin in BENCHMARKS and BENCHMARKS.get(b.plugin).needs_judge and spec.judge is None and b.judge is None:
            add(("benchmarks", i), f"benchmark {b.id!r} is scored by a judge LLM: add a 'judge' section")
        if b.dataset is not None and b.dataset not in spec.datasets:
            add(("benchmarks", i, "dataset"), f"dataset {b.dataset!r} is not in 'datasets'")
        seen_benchmarks.add(b.id)
    needs_data = any(m.plugin in METHODS and METHODS.get(m.plugin).objective != "none" for m in spec.methods)
    if needs_data and (not spec.datasets or not spec.scales):
        add(("methods",), "training methods need at least one entry in 'datasets' and in 'scales'")
    for t, table in enumerate(spec.tables):
        if table.baseline not in seen_methods:
            add(("tables", t, "baseline"), f"baseline method {table.baseline!r} is not in 'methods'")
        for axis, wanted in table.where.items():
            if axis not in AXES:
                add(("tables", t, "where", axis), f"unknown axis {axis!r}; axes are {', '.join(AXES)}")
            elif axis in ("scale", "seed"):
                for v in wanted if isinstance(wanted, list) else [wanted]:
                    if isinstance(v, bool) or (axis == "seed" and not isinstance(v, int)):
                        add(("tables", t, "where", axis), f"expected {'a size' if axis == 'scale' else 'an integer'}"
                                                          f" (or a list of them), got {v!r}")
                    elif axis == "scale":
                        try:
                            parse_scale(v)
                        except ValueError as e:
                            add(("tables", t, "where", axis), str(e))
        for g, group in enumerate(table.groups):
            for c, col in enumerate(group.metrics):
                if col.benchmark not in seen_benchmarks:
                    add(("tables", t, "groups", g, "metrics", c, "benchmark"),
                        f"benchmark {col.benchmark!r} is not in 'benchmarks'")
    return problems


def _check_training(spec: Spec, i: int, lines: LineMap) -> list[Problem]:
    """A method's effective training settings (defaults < paper defaults < `training` < its `overrides`)
    validate; a wrong value in `overrides` is named there, not raised later as a traceback."""
    entry = spec.methods[i]
    try:
        training_params(spec, entry.row_ids()[0])
    except ValidationError as e:
        problems = []
        for err in e.errors():
            key = err["loc"][0] if err["loc"] else None
            if key in entry.overrides:
                path: tuple = ("methods", i, "overrides", key)
            else:
                path = ("methods", i, "overrides") if entry.overrides else ("training",)
            file, line = lines.locate(path)
            shown = path + tuple(err["loc"][1:]) if key in entry.overrides else path
            problems.append(Problem(file, line, format_path(shown), _describe(err)))
        return _unique(problems)
    return []


def load_spec(path: str | Path, overrides: list[str] | None = None) -> Spec:
    """Load, merge (`extends`), override (`--set`) and validate a spec file."""
    path = Path(path)
    data, lines = _load_with_extends(path.resolve() if path.exists() else path)
    # Report the path as the user wrote it, not resolved.
    apply_overrides(data, overrides or [], lines)
    return validate(data, lines, str(path))


