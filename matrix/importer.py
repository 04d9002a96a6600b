"""`matrix import RUN FILE.csv`: external numbers (e.g. a paper's published rows) into a run's store.

The file is long format, one number per line: `base_model,dataset,scale,method,benchmark,value` and
optionally `seed` and `metric`. Empty `dataset` / `scale` mean none (the baseline's cell); `scale` reads
as in specs (`5k`, `10000`); `seed` defaults to the spec's first seed; `metric` to the benchmark's
headline metric. The numbers go to the store's `imported` table, tagged with the file's name and line,
never to the computed metrics: reports show them marked as imported (status `imported`).

Every line is checked before anything is written; bad lines are reported as `FILE:LINE: message`, and
then nothing is imported.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from matrix.errors import UserError
from matrix.spec import Spec, parse_scale

REQUIRED = ("base_model", "dataset", "scale", "method", "benchmark", "value")
OPTIONAL = ("seed", "metric")
MAX_REPORTED = 20


def read_rows(path: Path, spec: Spec) -> list[dict[str, Any]]:
    """The file's rows, checked; raises UserError listing every bad line."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text ({e.reason})") from None
    reader = csv.reader(text.splitlines())
    header = next(reader, None)
    if not header:
        raise UserError(f"{path}:1: empty file; expected a header {','.join(REQUIRED)}[,seed,metric]")
    header = [h.strip() for h in header]
    missing = [c for c in REQUIRED if c not in header]
    unknown = [c for c in header if c not in REQUIRED + OPTIONAL]
    if missing or unknown:
        parts = ([f"missing column(s) {', '.join(missing)}"] if missing else []) + \
                ([f"unknown column(s) {', '.join(unknown)}"] if unknown else [])
        raise UserError(f"{path}:1: {'; '.join(parts)}; expected {','.join(REQUIRED)}[,seed,metric]")
    if len(set(header)) != len(header):
        raise UserError(f"{path}:1: a column is named twice: {header}")
    default_seed = (spec.seeds or [spec.seed])[0]
    rows, problems, seen = [], [], {}
    for lineno, fields in enumerate(reader, start=2):
        if not any(f.strip() for f in fields):
            continue  # blank line
        where = f"{path}:{lineno}"
        if len(fields) != len(header):
            problems.append(f"{where}: expected {len(header)} fields, got {len(fields)}")
            continue
        raw = {h: f.strip() for h, f in zip(header, fields)}
        try:
            rows.append(_row(raw, spec, default_seed, lineno))
        except ValueError as e:
            problems.append(f"{where}: {e}")
            continue
        r = rows[-1]
        key = tuple(r[k] for k in ("base_model", "dataset", "scale", "method", "seed", "benchmark", "metric"))
        if key in seen:
            problems.append(f"{where}: same cell, seed, benchmark and metric as line {seen[key]}")
        seen.setdefault(key, lineno)
    if problems:
        more = len(problems) - MAX_REPORTED
        shown = problems[:MAX_REPORTED] + ([f"... and {more} more bad lines"] if more > 0 else [])
        raise UserError("\n".join(shown + [f"{path}: nothing imported ({len(problems)} bad lines)"]))
    if not rows:
        raise UserError(f"{path}: no rows to import")
    return rows


def _row(raw: dict[str, str], spec: Spec, default_seed: int, lineno: int) -> dict[str, Any]:
    for col in ("base_model", "method", "benchmark"):
        if not raw[col]:
            raise ValueError(f"{col} is empty")
    try:
        value = float(raw["value"])
    except ValueError:
        raise ValueError(f"value {raw['value']!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"value {raw['value']!r} is not a finite number")
    scale = None
    if raw["scale"]:
        try:
            scale = parse_scale(raw["scale"])
        except ValueError as e:
            raise ValueError(f"scale {raw['scale']!r}: {e}") from None
    seed = default_seed
    if raw.get("seed"):
        try:
            seed = int(raw["seed"])
        except ValueError:
            raise ValueError(f"seed {raw['seed']!r} is not an integer") from None
    if (raw["dataset"] == "") != (scale is None):
        raise ValueError("dataset and scale go together: give both, or neither for a cell without "
                         "alignment data (the baseline)")
    metric = raw.get("metric") or _headline(raw["benchmark"])
    return {"base_model": raw["base_model"], "dataset": raw["dataset"] or None, "scale": scale,
            "method": raw["method"], "seed": seed, "benchmark": raw["benchmark"], "metric": metric,
            "value": value, "line": lineno}


def _headline(benchmark: str) -> str:
    from matrix.benchmarks.base import BENCHMARKS

    try:
        name = BENCHMARKS.get(benchmark).headline
    except KeyError:
        raise ValueError(f"unknown benchmark {benchmark!r}; give a 'metric' column for external "
                         f"benchmarks") from None
    if not name:
        raise ValueError(f"benchmark {benchmark!r} has no headline metric; give a 'metric' column")
    return name


def import_file(spec: Spec, store, path: Path) -> int:
    """Check `path` and store its rows, all or nothing; returns how many numbers were imported."""
    rows = read_rows(path, spec)
    return store.add_imported(rows, Path(path).name)


def outside_spec(spec: Spec, path: Path) -> list[str]:
    """Notes on values the spec does not declare (imported anyway: they show as rows of their own)."""
    rows = read_rows(path, spec)
    declared = {"base_model": set(spec.base_models), "dataset": set(spec.datasets),
                "method": set(spec.method_ids()), "benchmark": {b.id for b in spec.benchmarks}}
    notes = []
    for axis, known in declared.items():
        extra = sorted({r[axis] for r in rows if r[axis] is not None} - known)
        if extra:
            notes.append(f"{axis} not in spec {spec.name!r}: {', '.join(extra)} (shown as rows / ignored by "
                         f"tables that do not name them)")
    return notes
