"""Grid expansion: the spec's axes become cells (base model x dataset x scale x method x seed)."""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from matrix.errors import UserError
from matrix.registry import METHODS
from matrix.spec import AXES, Spec, parse_scale


@dataclass(frozen=True)
class Cell:
    base_model: str
    dataset: str | None
    scale: int | None
    method: str
    seed: int

    def axis(self, name: str) -> Any:
        return getattr(self, name)

    @property
    def label(self) -> str:
        parts = [self.method, self.base_model]
        if self.dataset is not None:
            parts.append(f"{self.dataset}-{self.scale}")
        return "/".join(parts)


def _normalise(axis: str, value: Any) -> Any:
    return parse_scale(value) if axis == "scale" and value is not None else value


def _matches(cell: Cell, rule: dict[str, Any]) -> bool:
    for axis, wanted in rule.items():
        values = wanted if isinstance(wanted, list) else [wanted]
        if cell.axis(axis) not in [_normalise(axis, v) for v in values]:
            return False
    return True


def expand(spec: Spec) -> list[Cell]:
    """Every cell of the grid after `exclude` / `include` rules.

    Methods that train nothing (the baseline) get one cell per base model and seed: their result does
    not depend on a dataset or scale, and tables show them in every dataset group.
    """
    cells: list[Cell] = []
    datasets = list(spec.datasets) or [None]
    scales = list(spec.scales) or [None]
    for bm, method, seed in itertools.product(spec.base_models, spec.method_ids(), spec.seed_list):
        if METHODS.get(spec.method(method).plugin).objective == "none":
            cells.append(Cell(bm, None, None, method, seed))
            continue
        for ds, sc in itertools.product(datasets, scales):
            cells.append(Cell(bm, ds, sc, method, seed))
    cells = [c for c in cells if not any(_matches(c, r) for r in spec.grid.exclude)]
    for rule in spec.grid.include:
        extra = Cell(**{a: _normalise(a, rule.get(a)) for a in AXES if a != "seed"}, seed=rule.get("seed", spec.seed))
        if extra not in cells:
            cells.append(extra)
    return cells


def parse_only(text: str | None) -> dict[str, list[str]]:
    """`method=nsft,dataset=ocrvqa` -> {"method": ["nsft"], "dataset": ["ocrvqa"]}; `a=x|y` for several."""
    if not text:
        return {}
    out: dict[str, list[str]] = {}
    for part in text.split(","):
        if "=" not in part:
            raise UserError(f"--only: expected AXIS=VALUE[,AXIS=VALUE...], got {part!r}")
        axis, value = (s.strip() for s in part.split("=", 1))
        if axis not in AXES:
            raise UserError(f"--only: unknown axis {axis!r}; axes are {', '.join(AXES)}")
        out.setdefault(axis, []).extend(value.split("|"))
    return out


def select(cells: list[Cell], only: dict[str, list[str]]) -> list[Cell]:
    def keep(cell: Cell) -> bool:
        for axis, values in only.items():
            got = cell.axis(axis)
            wanted = {_normalise(axis, v) if axis != "seed" else int(v) for v in values}
            if got is not None and got not in wanted:
                return False
            if got is None and axis in ("dataset", "scale"):
                continue  # a baseline cell belongs to every dataset and scale
        return True

    return [c for c in cells if keep(c)]
