"""A spec's plan: the cells `--only` selects and the stage graph that computes them.

`plan(spec, only)` expands the grid, keeps the selected cells and builds the graph of the whole grid's
shared stages for them (`matrix.runner.graph`). Everything that reads a run against its spec (status, reports,
plots, export, repair) starts from a plan.
"""
from __future__ import annotations

from dataclasses import dataclass

from matrix.errors import UserError
from matrix.grid import Cell, expand, parse_only, select
from matrix.spec import Spec
from matrix.store import StageRecord
from matrix.runner.graph import StageGraph, build
from matrix.runner.progress import KIND_ORDER


@dataclass
class Planned:
    spec: Spec
    cells: list[Cell]
    graph: StageGraph

    def stage_rows(self, records: dict[str, StageRecord]) -> list[dict]:
        rows = []
        for stage in self.graph.ordered():
            rec = records.get(stage.key)
            status = rec.status if rec else "to run"
            status = {"done": "cached", "running": "to run", "interrupted": "to run"}.get(status, status)
            why = rec.error_line if rec and rec.status == "failed" else ("" if rec else "not computed yet")
            runtime = (rec.result or {}).get("runtime") if rec and rec.status == "done" else None
            rows.append({"kind": stage.kind, "label": stage.label, "key": stage.short, "status": status, "why": why,
                         "runtime": runtime, "wall_s": rec.wall_s if rec else None})
        return rows


def plan(spec: Spec, only: str | None = None) -> Planned:
    all_cells = expand(spec)
    cells = select(all_cells, parse_only(only))
    if not cells:
        raise UserError(f"--only {only!r} selects no cell of the grid")
    return Planned(spec, cells, build(spec, cells, all_cells))




def by_kind(rows: list[dict]) -> list[tuple[str, int, int, int, int]]:
    """`Planned.stage_rows` counted per stage kind, in pipeline order: (kind, stages, cached, to run, failed)."""
    out = []
    for kind in KIND_ORDER + tuple(sorted({r["kind"] for r in rows} - set(KIND_ORDER))):
        ks = [r for r in rows if r["kind"] == kind]
        if ks:
            out.append((kind, len(ks), *(sum(r["status"] == s for r in ks) for s in ("cached", "to run", "failed"))))
    return out
