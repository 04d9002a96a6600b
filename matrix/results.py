"""A run's results as one long table: a row per (cell, benchmark, metric), with the stage's status.

This is what reports and plots read: `collect(spec, store)` re-expands the spec, looks up each cell's
evaluate stages by key, and returns their metrics, or a status saying why there is no number.
"""
from __future__ import annotations

import pandas as pd

from matrix.spec import Spec
from matrix.store import Store

COLUMNS = ["base_model", "dataset", "scale", "method", "seed", "benchmark", "metric", "value", "status", "stage"]


def collect(spec: Spec, store: Store) -> pd.DataFrame:
    """Rows for every (cell, benchmark): metric values when done, else one row with status
    `failed` (the stage or one it needs failed) or `missing` (not run yet)."""
    from matrix import api

    planned = api.plan(spec)
    records = store.stages()
    values: dict[str, list[tuple[str, float]]] = {}
    for key, _bench, metric, value in store.metrics():
        values.setdefault(key, []).append((metric, value))
    rows = []
    for cs in planned.graph.cells:
        c = cs.cell
        base = {"base_model": c.base_model, "dataset": c.dataset, "scale": c.scale, "method": c.method, "seed": c.seed}
        for bench, stage in cs.evaluate.items():
            rec = records.get(stage.key)
            if rec and rec.status == "done" and stage.key in values:
                for metric, value in values[stage.key]:
                    rows.append({**base, "benchmark": bench, "metric": metric, "value": value, "status": "ok",
                                 "stage": stage.key})
            else:
                status = "failed" if _failed_upstream(stage, records) else "missing"
                rows.append({**base, "benchmark": bench, "metric": None, "value": None, "status": status,
                             "stage": stage.key})
    return pd.DataFrame(rows, columns=COLUMNS)


def _failed_upstream(stage, records) -> bool:
    rec = records.get(stage.key)
    if rec and rec.status == "failed":
        return True
    return any(_failed_upstream(d, records) for d in stage.deps.values())


def train_costs(spec: Spec, store: Store) -> pd.DataFrame:
    """Wall time and peak memory of each cell's train stage (the paper's Fig. 2 compares these)."""
    from matrix import api

    planned = api.plan(spec)
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
