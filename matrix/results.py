"""A run's results as one long table: a row per (cell, benchmark, metric), with the stage's status.

This is what reports and plots read: `collect(spec, store)` re-expands the spec, looks up each cell's
evaluate stages by key, and returns their metrics, or a status saying why there is no number:

- `ok`: computed by this run's current plan;
- `imported`: an external number (`matrix import`); `source` names the file. A computed `ok` number for
  the same cell, seed and benchmark wins; an import fills a cell that is not computed (yet), and imports
  for cells outside the grid are listed too, so published rows sit next to the run's own;
- `stale`: the cell is in the plan but its stored result was computed under other settings (the spec
  changed since, e.g. `training.lr`): a done evaluate stage with the same label (benchmark + cell) whose
  key is no longer any stage of the current plan. Its numbers are never shown; re-run to refresh;
- `failed`: the stage or one it needs failed; `missing`: not run yet.
"""
from __future__ import annotations

import pandas as pd

from matrix.spec import Spec
from matrix.store import Store
from matrix.runner.plan import plan

COLUMNS = ["base_model", "dataset", "scale", "method", "seed", "benchmark", "metric", "value", "status", "stage",
           "source"]
NUMBER_STATUSES = ("ok", "imported")


def collect(spec: Spec, store: Store) -> pd.DataFrame:
    """Rows for every (cell, benchmark): metric values when done (`ok`) or imported (`imported`), else
    one row with status `stale`, `failed` or `missing` (see the module doc)."""
    planned = plan(spec)
    records = store.stages()
    values: dict[str, list[tuple[str, float]]] = {}
    for key, _bench, metric, value in store.metrics():
        values.setdefault(key, []).append((metric, value))
    planned_keys = set(planned.graph.stages)
    stale_labels = {rec.label for key, rec in records.items()
                    if rec.kind == "evaluate" and rec.status == "done" and key in values and key not in planned_keys}
    imported: dict[tuple, list[dict]] = {}
    for r in store.imported():
        imported.setdefault((r["base_model"], r["dataset"], r["scale"], r["method"], r["seed"], r["benchmark"]),
                            []).append(r)
    rows = []
    for cs in planned.graph.cells:
        c = cs.cell
        base = {"base_model": c.base_model, "dataset": c.dataset, "scale": c.scale, "method": c.method, "seed": c.seed}
        for bench, stage in cs.evaluate.items():
            rec = records.get(stage.key)
            ik = (c.base_model, c.dataset, c.scale, c.method, c.seed, bench)
            if rec and rec.status == "done" and stage.key in values:
                imported.pop(ik, None)
                for metric, value in values[stage.key]:
                    rows.append({**base, "benchmark": bench, "metric": metric, "value": value, "status": "ok",
                                 "stage": stage.key, "source": None})
            elif ik in imported:
                rows += _imported_rows(imported.pop(ik))
            else:
                status = ("failed" if _failed_upstream(stage, records)
                          else "stale" if stage.label in stale_labels else "missing")
                rows.append({**base, "benchmark": bench, "metric": None, "value": None, "status": status,
                             "stage": stage.key, "source": None})
    for group in imported.values():  # cells outside the grid: published rows next to the run's own
        rows += _imported_rows(group)
    return pd.DataFrame(rows, columns=COLUMNS)


def _imported_rows(group: list[dict]) -> list[dict]:
    return [{"base_model": r["base_model"], "dataset": r["dataset"], "scale": r["scale"], "method": r["method"],
             "seed": r["seed"], "benchmark": r["benchmark"], "metric": r["metric"], "value": r["value"],
             "status": "imported", "stage": None, "source": r["source"]} for r in group]


def _failed_upstream(stage, records) -> bool:
    rec = records.get(stage.key)
    if rec and rec.status == "failed":
        return True
    return any(_failed_upstream(d, records) for d in stage.deps.values())


def train_costs(spec: Spec, store: Store) -> pd.DataFrame:
    """Wall time and peak memory of each cell's train stage (the paper's Fig. 2 compares these)."""
    planned = plan(spec)
    records = store.stages()
    rows = []
    for cs in planned.graph.cells:
        if cs.train is None:
            continue
        rec = records.get(cs.train.key)
        c = cs.cell
        rows.append({"base_model": c.base_model, "dataset": c.dataset, "scale": c.scale, "method": c.method,
                     "seed": c.seed, "wall_s": rec.wall_s if rec and rec.status == "done" else None,
                     "peak_mem_mb": rec.peak_mem_mb if rec and rec.status == "done" else None})
    return pd.DataFrame(rows)


def details(spec: Spec, store: Store, benchmark: str) -> pd.DataFrame:
    """Per-sample answers and scores of `benchmark` for every cell of the plan whose evaluation is done:
    one row per (cell, question), the cell's columns first, then the scorer's own fields (the answer,
    the label, the per-sample score, judge replies...), read from the stage's `scores.jsonl`. An evaluation
    whose artifact is damaged (see `matrix.manifest`) is left out, never read: `frame.attrs["damaged"]`
    names each one."""
    import json

    from matrix.errors import UserError

    known = [b.id for b in spec.benchmarks]
    if benchmark not in known:
        raise UserError(f"--details {benchmark}: the spec evaluates no such benchmark; it has: {', '.join(known)}")
    from matrix.manifest import problems

    planned = plan(spec)
    records = store.stages()
    rows, damaged = [], []
    for cs in planned.graph.cells:
        stage = cs.evaluate.get(benchmark)
        rec = records.get(stage.key) if stage else None
        if rec is None or rec.status != "done":
            continue
        c = cs.cell
        cell = {"base_model": c.base_model, "dataset": c.dataset, "scale": c.scale, "method": c.method, "seed": c.seed}
        folder = store.artifact_dir(stage.key, "evaluate")
        found = problems(folder)
        if not found:
            try:
                with open(folder / "scores.jsonl", encoding="utf-8") as f:
                    rows += [{**cell, **json.loads(line)} for line in f if line.strip()]
                continue
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:  # an artifact without a manifest
                found = [f"scores.jsonl is unreadable ({type(e).__name__}: {e})"]
        damaged.append(f"{folder}: {stage.label}: {'; '.join(found)}")
    frame = pd.DataFrame(rows)
    frame.attrs["damaged"] = damaged  # cells left out: their artifact is damaged (`matrix run` redoes it)
    return frame
