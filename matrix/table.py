"""A declared table built from the long results frame: rows, seed means, totals, best cells.

Pure: `build_table(table, frame, spec)` reads only its arguments (plus the benchmark registry, to resolve a
column's headline metric when the spec leaves `metric` out). The formatters in `matrix.report` only print
what it computed.

Numbers are rounded half away from zero on their decimal digits (`round_half_up`), as a person checking
the table by hand would: the mean of 66.8 and 66.9 prints 66.9, where Python's `f"{66.85:.1f}"` prints 66.8.
Totals are computed from the unrounded seed means, not from the printed numbers.

Cell statuses: `ok` (computed), `imported` (an external number from `matrix import`; counted in totals
and best like a computed one, but marked as imported in every format), `stale` (computed under settings
the spec no longer has), `failed`, `missing`. A total is `imported` when any of its terms is.

Seeds: a cell's value is the mean over its seeds (std: sample std). `significant` marks cells whose delta
to the row's baseline a two-sided paired t-test over the shared seeds supports (p < `alpha`, at least
two shared seeds); totals always use the means.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Callable

import pandas as pd

from matrix.errors import UserError
from matrix.spec import AXES, ColumnGroup, MetricColumn, Spec, TableSpec, parse_scale, scale_label

TOTAL_DECIMALS = 1
AXIS_TITLES = {"base_model": "Model", "dataset": "Data", "scale": "Scale", "method": "Method"}
BROADCAST_AXES = ("dataset", "scale")  # a cell with None here (the baseline) belongs to every value


# ---- numbers -------------------------------------------------------------------------------------
def round_half_up(x: float, decimals: int) -> Decimal:
    """`x` rounded to `decimals` places, half away from zero, on its 12 significant digits (so that float
    noise such as 58.150000000000006 or 0.04999999999999716 does not decide the last digit); never -0."""
    q = Decimal(f"{x:.12g}").quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)
    return abs(q) if q == 0 else q


def format_number(x: float, decimals: int) -> str:
    return f"{round_half_up(x, decimals):f}"


def format_total(x: float, decimals: int = TOTAL_DECIMALS) -> str:
    q = round_half_up(x, decimals)
    return f"({'-' if q < 0 else '+'}{abs(q):f})"


# ---- the table -----------------------------------------------------------------------------------
@dataclass
class ReportTable:
    """Every frame shares one index: a MultiIndex (row group label, row label), in display order.
    Cell frames (`values`, `std`, `seeds`, `status`, `best`) have MultiIndex columns (group id, column id);
    total frames have a column per group id that has a total."""

    table: TableSpec
    row_axes: list[str]
    keys: pd.DataFrame          # the row axes' raw values (dataset id, scale as int, method id, ...)
    values: pd.DataFrame        # mean over seeds (NaN unless status is ok)
    std: pd.DataFrame           # sample std over seeds (NaN with one seed)
    seeds: pd.DataFrame         # number of seeds averaged
    status: pd.DataFrame        # 'ok' | 'imported' | 'stale' | 'missing' | 'failed'
    best: pd.DataFrame          # bool: best printed value of its column within its row group
    totals: pd.DataFrame        # Σ (value − baseline) × scale, sign-flipped when lower is better
    total_status: pd.DataFrame  # 'ok' | 'imported' | 'missing' | 'failed' | 'stale' (the baseline: 0 when ok)
    is_baseline: pd.Series
    groups: list[ColumnGroup]   # the groups with at least one column, in spec order
    total_groups: list[str]     # ids of the groups that show a total
    per_seed: pd.DataFrame = None      # {seed: value} per cell (object)
    significant: pd.DataFrame = None   # bool: delta vs baseline supported by a paired test over seeds
    p_values: pd.DataFrame = None      # the test's p-value (NaN where not testable)
    sources: list[str] = None          # files numbers were imported from
    row_sources: list[str] = None      # per row: the files its imported numbers came from ('; '-joined)
    alpha: float = 0.05
    show_significance: bool = False    # formatters mark `significant` cells
    cost: pd.DataFrame = None          # train cost per row (`matrix.report.cost_frame`), when asked for

    def column(self, group_id: str, column_id: str) -> MetricColumn:
        group = next(g for g in self.groups if g.id == group_id)
        return next(c for c in group.metrics if c.id == column_id)

    @property
    def group_axes(self) -> list[str]:
        return self.row_axes[:-1]

    @property
    def axis_titles(self) -> tuple[str, str]:
        """Header of the row-group column ('' when rows have one axis) and of the row-label column."""
        return " / ".join(AXIS_TITLES[a] for a in self.group_axes), AXIS_TITLES[self.row_axes[-1]]


def headline_metric(benchmark_id: str) -> str:
    """The benchmark's headline metric name, from the benchmark registry."""
    try:
        from matrix.benchmarks.base import BENCHMARKS
    except ImportError as e:  # pragma: no cover - depends on the benchmarks package being present
        raise UserError(f"column of benchmark {benchmark_id!r} names no metric and the benchmark registry "
                        f"cannot be imported ({e}); give 'metric' in the table") from None
    try:
        name = BENCHMARKS.get(benchmark_id).headline
    except KeyError as e:
        raise UserError(str(e)) from None
    if not name:
        raise UserError(f"benchmark {benchmark_id!r} declares no headline metric; give 'metric' in the table")
    return name


def build_table(table: TableSpec, frame: pd.DataFrame, spec: Spec,
                headline: Callable[[str], str] | None = None, alpha: float = 0.05) -> ReportTable:
    """Build `table` from `collect()`'s long frame. `headline(benchmark_id)` resolves `metric: null`
    (default: the benchmark registry)."""
    if headline is None:
        plugins = {b.id: b.plugin for b in spec.benchmarks}
        headline = lambda bid: headline_metric(plugins.get(bid, bid))  # noqa: E731
    where = f"table {table.id!r}"
    rows = list(table.rows)
    if len(set(rows)) != len(rows):
        raise UserError(f"{where}: rows list an axis twice: {rows}")
    f = _filter(_normalise(frame), table, where)
    order = {a: _axis_values(a, f, spec, table.baseline) for a in rows}
    f = _broadcast(f, rows, order)
    _check_unique_cells(f, rows, where)

    f["_row"] = list(zip(*(f[a] for a in rows))) if len(f) else []
    present = set(f["_row"])
    keys = [k for k in itertools.product(*(order[a] for a in rows)) if k in present]
    position = {k: i for i, k in enumerate(keys)}
    f["_rid"] = [position[k] for k in f["_row"]]

    index = pd.MultiIndex.from_tuples(
        [(_group_label(dict(zip(rows, k)), rows[:-1], spec), _label(rows[-1], k[-1], spec)) for k in keys],
        names=["group", "row"]) if keys else pd.MultiIndex.from_tuples([], names=["group", "row"])
    if index.has_duplicates:
        dup = index[index.duplicated()][0]
        raise UserError(f"{where}: two rows print as {' / '.join(x for x in dup if x)!r}; "
                        "give them distinct labels")
    key_frame = pd.DataFrame([list(k) for k in keys], index=index, columns=rows, dtype=object)
    m = rows.index("method") if "method" in rows else None
    is_base = pd.Series([m is not None and k[m] == table.baseline for k in keys], index=index, dtype=bool)

    groups = [g for g in table.groups if g.metrics]
    ids = [c.id for g in groups for c in g.metrics]
    if len(set(ids)) != len(ids):
        raise UserError(f"{where}: metric column ids must be unique in a table, got {ids}")
    cols = pd.MultiIndex.from_tuples([(g.id, c.id) for g in groups for c in g.metrics],
                                     names=["group", "column"])
    cells = {(g.id, c.id): _column(f, len(keys), c, c.metric or headline(c.benchmark), where) for g in groups
             for c in g.metrics}

    def frame_of(field: str, dtype: Any) -> pd.DataFrame:
        return pd.DataFrame({k: v[field] for k, v in cells.items()}, index=index, columns=cols).astype(dtype)

    values, std = frame_of("mean", float), frame_of("std", float)
    seeds, status = frame_of("n", int), frame_of("status", object)
    per_seed = frame_of("per_seed", object)

    total_groups = [g.id for g in groups if g.total and any(c.in_total for c in g.metrics)]
    # Each row's baseline: the row with the same values on every other row axis and the baseline method.
    base_pos = [position.get(tuple(table.baseline if a == "method" else v for a, v in zip(rows, k)))
                if m is not None else None for k in keys]
    totals = pd.DataFrame(index=index, columns=total_groups, dtype=float)
    total_status = pd.DataFrame(index=index, columns=total_groups, dtype=object)
    for g in groups:
        if g.id not in total_groups:
            continue
        results = [_total(g, cells, i, b, bool(is_base.iloc[i])) for i, b in enumerate(base_pos)]
        totals[g.id] = pd.Series([r[0] for r in results], index=index, dtype=float)
        total_status[g.id] = pd.Series([r[1] for r in results], index=index, dtype=object)

    best = _best(values, status, groups, index)
    p_cols = {}
    for key, cell in cells.items():
        st, ps = cell["status"], cell["per_seed"]
        p_cols[key] = [paired_t_test(ps[i], ps[b])
                       if b is not None and not is_base.iloc[i] and st[i] in NUMBER_STATUSES
                       and st[b] in NUMBER_STATUSES else float("nan") for i, b in enumerate(base_pos)]
    p_values = pd.DataFrame(p_cols, index=index, columns=cols).astype(float)
    significant = p_values.lt(alpha)
    sources = sorted({str(x) for x in f.get("source", pd.Series(dtype=object)).dropna()
                      if x is not None}) if "source" in f else []
    row_sources = [""] * len(keys)
    benches = {c.benchmark for g in groups for c in g.metrics}
    imp = f[(f["status"] == "imported") & f["benchmark"].isin(benches)] if len(f) else f
    for rid, sub in (imp.groupby("_rid") if len(imp) else []):
        row_sources[rid] = "; ".join(sorted(set(sub["source"].dropna())))
    return ReportTable(table=table, row_axes=rows, keys=key_frame, values=values, std=std, seeds=seeds,
                       status=status, best=best, totals=totals, total_status=total_status,
                       is_baseline=is_base, groups=groups, total_groups=total_groups, per_seed=per_seed,
                       significant=significant, p_values=p_values, sources=sources, alpha=alpha,
                       row_sources=row_sources)


NUMBER_STATUSES = ("ok", "imported")


def paired_t_test(a: dict, b: dict) -> float:
    """Two-sided p-value of a paired t-test of `a` against `b` over their shared seeds
    (`scipy.stats.ttest_rel`); NaN with fewer than two shared seeds or no difference at all; 0 when every
    seed differs by the same non-zero amount. The two degenerate cases are decided here, with a tolerance
    for float noise (0.3 - 0.1 - 0.2 is not 0), where scipy would warn and divide by a near-zero spread."""
    from scipy.stats import ttest_rel

    shared = sorted(set(a) & set(b))
    if len(shared) < 2:
        return float("nan")
    d = [a[s] - b[s] for s in shared]
    mean = sum(d) / len(d)
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (len(d) - 1))
    if sd <= 1e-12 * max(1.0, abs(mean)):
        return float("nan") if abs(mean) <= 1e-12 else 0.0
    return float(ttest_rel([a[s] for s in shared], [b[s] for s in shared]).pvalue)


# ---- steps ---------------------------------------------------------------------------------------
def _none(v: Any) -> bool:
    return v is None or (not isinstance(v, (str, tuple)) and pd.isna(v))


def _normalise(frame: pd.DataFrame) -> pd.DataFrame:
    """Plain Python values in object columns: None for no dataset / scale, scales as ints."""
    f = pd.DataFrame(index=range(len(frame)))
    for a in ("base_model", "dataset", "method", "benchmark", "metric", "status"):
        f[a] = pd.Series([None if _none(v) else str(v) for v in frame[a]], dtype=object)
    f["scale"] = pd.Series([None if _none(v) else int(v) for v in frame["scale"]], dtype=object)
    f["seed"] = pd.Series([None if _none(v) else int(v) for v in frame["seed"]], dtype=object)
    f["value"] = pd.to_numeric(pd.Series(list(frame["value"]), dtype=object), errors="coerce").astype(float)
    src = frame["source"] if "source" in frame else [None] * len(frame)
    f["source"] = pd.Series([None if _none(v) else str(v) for v in src], dtype=object)
    return f


def _filter(f: pd.DataFrame, table: TableSpec, where: str) -> pd.DataFrame:
    for axis, wanted in table.where.items():
        if axis not in AXES:
            raise UserError(f"{where}: where: unknown axis {axis!r}; axes are {', '.join(AXES)}")
        try:
            values = [parse_scale(v) if axis == "scale" else int(v) if axis == "seed" else str(v)
                      for v in (wanted if isinstance(wanted, list) else [wanted])]
        except ValueError as e:
            raise UserError(f"{where}: where.{axis}: {e}") from None
        keep = f[axis].isin(values)
        if axis in BROADCAST_AXES:
            keep |= f[axis].isna()
        f = f[keep]
    return f.reset_index(drop=True)


def _axis_values(axis: str, f: pd.DataFrame, spec: Spec, baseline: str) -> list[Any]:
    """Axis values present, in spec order (scales ascending), the baseline method first; [None] if none."""
    present = {v for v in f[axis] if v is not None}
    if not present:
        return [None]
    if axis == "scale":
        return sorted(present)
    declared = {"dataset": list(spec.datasets), "base_model": list(spec.base_models),
                "method": spec.method_ids()}[axis]
    out = [v for v in declared if v in present] + sorted(present - set(declared))
    if axis == "method" and baseline in out:
        out.remove(baseline)
        out.insert(0, baseline)
    return out


def _broadcast(f: pd.DataFrame, rows: list[str], order: dict[str, list[Any]]) -> pd.DataFrame:
    """Cells without a dataset / scale (the baseline) are repeated under every dataset / scale row."""
    for axis in rows:
        if axis not in BROADCAST_AXES or order[axis] == [None]:
            continue
        na = f[axis].isna()
        if na.any():
            every = pd.DataFrame({axis: pd.Series(order[axis], dtype=object)})
            spread = f[na].drop(columns=axis).merge(every, how="cross")[f.columns]
            f = pd.concat([f[~na], spread], ignore_index=True)
    return f


def _check_unique_cells(f: pd.DataFrame, rows: list[str], where: str) -> None:
    """Only seeds are averaged: the row axes must single out one cell per seed for each benchmark (a
    benchmark asked of one dataset's cells only, e.g. in-domain, may fill a row from another cell)."""
    others = [a for a in ("base_model", "dataset", "scale", "method") if a not in rows]
    if not others or f.empty:
        return
    cells = f[rows + ["benchmark"] + others].drop_duplicates()
    clash = cells[cells.duplicated(subset=rows + ["benchmark"], keep=False)]
    if not clash.empty:
        first = clash.iloc[0]
        same = clash[(clash[rows + ["benchmark"]] == first[rows + ["benchmark"]]).all(axis=1)]
        varying = [a for a in others if same[a].nunique(dropna=False) > 1]
        raise UserError(f"{where}: rows {rows} do not single out one cell: "
                        f"{', '.join(f'{a}={first[a]}' for a in rows)} has results for several "
                        f"{' / '.join(varying)}; add it to 'rows' or filter with 'where'")


def _label(axis: str, value: Any, spec: Spec) -> str:
    if value is None:
        return ""
    if axis == "dataset" and value in spec.datasets:
        return spec.datasets[value].label or value
    if axis == "method":
        return spec.method_label(value) if value in spec.method_ids() else value
    if axis == "scale":
        return scale_label(int(value))
    return str(value)


def _group_label(key: dict[str, Any], axes: list[str], spec: Spec) -> str:
    """'OCRVQA-5k' for [dataset, scale]; other axes are joined with ' / '."""
    parts: list[str] = []
    for a in axes:
        text = _label(a, key[a], spec)
        if a == "scale" and parts and axes[axes.index(a) - 1] == "dataset" and text:
            parts[-1] = f"{parts[-1]}-{text}" if parts[-1] else text
        elif text:
            parts.append(text)
    return " / ".join(parts)


def _column(f: pd.DataFrame, n_rows: int, col: MetricColumn, metric: str, where: str) -> dict[str, list]:
    """One column's mean, std, seed count, per-seed values and status per row. A cell has a number only
    if every seed has one; it is `imported` if any seed's number is."""
    bench = f[f["benchmark"] == col.benchmark]
    done = bench[bench["status"].isin(NUMBER_STATUSES)]
    if not done.empty and not (done["metric"] == metric).any():
        raise UserError(f"{where}: column {col.id!r}: benchmark {col.benchmark!r} reports no metric "
                        f"{metric!r}; it reports: {', '.join(sorted(set(done['metric'].dropna())))}")
    value = done[done["metric"] == metric].groupby(["_rid", "seed"])["value"].first()
    out: dict[str, list] = {"mean": [float("nan")] * n_rows, "std": [float("nan")] * n_rows,
                            "n": [0] * n_rows, "status": ["missing"] * n_rows,
                            "per_seed": [{} for _ in range(n_rows)]}
    for rid, sub in bench.groupby("_rid"):
        nums, states, by_seed = [], [], {}
        for seed, runs in sub.groupby("seed"):
            v, st = value.get((rid, seed), float("nan")), set(runs["status"])
            number = next((s for s in NUMBER_STATUSES if s in st), None)
            if number and not pd.isna(v):
                nums.append(float(v))
                by_seed[seed] = float(v)
                states.append(number)
            else:
                states.append(next((s for s in ("failed", "stale") if s in st), "missing"))
        if nums and len(nums) == len(states):
            s = pd.Series(nums, dtype=float)
            out["mean"][rid], out["n"][rid] = float(s.mean()), len(s)
            out["status"][rid] = "imported" if "imported" in states else "ok"
            out["std"][rid] = float(s.std(ddof=1)) if len(s) > 1 else float("nan")
            out["per_seed"][rid] = by_seed
        else:
            out["status"][rid] = next((s for s in ("failed", "stale") if s in states), "missing")
    return out


def _total(group: ColumnGroup, cells: dict, i: int, b: int | None, is_baseline: bool) -> tuple[float, str]:
    """Σ over the group's in-total columns of (value − baseline) × scale, sign-flipped when lower is
    better; missing (or failed) if any term is — never a partial sum. The baseline's own total is 0 when
    its cells are there (the papers print `(+0.0)` on its row)."""
    if is_baseline:
        b = i
    if b is None:
        return float("nan"), "missing"
    terms, states = [], []
    for c in group.metrics:
        if not c.in_total:
            continue
        cell = cells[(group.id, c.id)]
        st = (cell["status"][i], cell["status"][b])
        states.extend(st)
        if all(x in NUMBER_STATUSES for x in st):
            delta = cell["mean"][i] - cell["mean"][b]
            terms.append(delta * c.scale * (1 if c.higher_is_better else -1))
    if any(s not in NUMBER_STATUSES for s in states):
        return float("nan"), next((s for s in ("failed", "stale") if s in states), "missing")
    return float(sum(terms)), "imported" if "imported" in states else "ok"


def _best(values: pd.DataFrame, status: pd.DataFrame, groups: list[ColumnGroup],
          index: pd.MultiIndex) -> pd.DataFrame:
    """Per column and row group: the rows whose printed value is the best (ties all count); none when the
    group has fewer than two printed values or they are all equal."""
    flags = {}
    row_group = list(index.get_level_values("group"))
    for g in groups:
        for c in g.metrics:
            key = (g.id, c.id)
            st, vals = list(status[key]), list(values[key])
            flag = [False] * len(index)
            for label in dict.fromkeys(row_group):
                rows = [i for i in range(len(index)) if row_group[i] == label and st[i] in NUMBER_STATUSES]
                if len(rows) < 2:
                    continue
                printed = {i: round_half_up(vals[i], c.decimals) for i in rows}
                top = max(printed.values()) if c.higher_is_better else min(printed.values())
                if all(v == top for v in printed.values()):
                    continue  # all equal: nothing stands out
                for i in rows:
                    flag[i] = printed[i] == top
            flags[key] = flag
    return pd.DataFrame(flags, index=index, columns=values.columns).astype(bool)
