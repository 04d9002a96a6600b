r"""Reports: a table declared in the spec, rendered as Markdown, LaTeX, CSV or JSON.

`render(spec, store, fmt, table_id)` collects the run's results, builds the table (`matrix.table`) and
formats it. The formatters only print what `build_table` computed:

- markdown: a pipe table; the header row holds the row-axis titles and column-group labels, the first
  body row the metric labels (↓ marks lower-is-better), then one line per row with the row-group label
  on its group's first line; best values in **bold**; totals `(+1.4)` (`(+0.0)` on the baseline, as the
  papers print it); `—` missing, `failed` failed.
- latex: a booktabs `tabular` fragment built by hand (grouped header with \\multicolumn + \\cmidrule,
  \\midrule between row groups, \\textbf best values, `$\\downarrow$` on lower-is-better labels, labels
  escaped); `---` (an em dash) missing, `failed` failed.
- csv / json: one record per row: the row axes (ids, scale as an int), a number per metric column
  (rounded to its decimals), `<group id>_total`, then `<column>_status` per cell and total; missing,
  failed and stale numbers are empty / null; `imported_from` (the files) when the table has imports.

Never a number that is not what it seems: `stale` cells (computed under settings the spec no longer has)
print `stale`; imported numbers (`matrix import`) carry a † (`$^\dagger$`) and a note naming the file
under the table, and status `imported` in csv / json. With several seeds a cell prints `mean ± std`
(csv / json add `<column>_std` and `<column>_seeds`). `significance=True` puts a `*` on cells whose delta
to the baseline a paired t-test over seeds supports (csv / json: `<column>_p`). `cost=True` appends the
train stage's wall time (h), GPU-hours (wall time × the spec's `resources.train.gpus`) and peak memory
(GB), mean over seeds.
"""
from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd

from matrix.errors import UserError
from matrix.spec import Spec, TableSpec
from matrix.table import (TOTAL_DECIMALS, ReportTable, build_table, format_number, format_total,
                          headline_metric, round_half_up)

__all__ = ["FORMATS", "ReportTable", "build_table", "headline_metric", "pick_table", "render",
           "to_csv", "to_frame", "to_json", "to_latex", "to_markdown"]


def pick_table(spec: Spec, table_id: str | None) -> TableSpec:
    if not spec.tables:
        raise UserError(f"spec {spec.name!r} declares no tables; add one under 'tables:'")
    if table_id is None:
        return spec.tables[0]
    for t in spec.tables:
        if t.id == table_id:
            return t
    raise UserError(f"unknown table {table_id!r}; known: {', '.join(t.id for t in spec.tables)}")


def render(spec: Spec, store, fmt: str, table_id: str | None = None, cost: bool = False,
           significance: bool = False) -> str:
    """Collect the run's metrics and print table `table_id` (default: the spec's first) in `fmt`."""
    if fmt not in FORMATS:
        raise UserError(f"unknown report format {fmt!r}; known: {', '.join(FORMATS)}")
    table = pick_table(spec, table_id)
    from matrix.results import collect, train_costs

    rt = build_table(table, collect(spec, store), spec)
    rt.show_significance = significance
    rt.own_templates = own_templates(spec, [c.benchmark for g in rt.groups for c in g.metrics])
    if cost:
        rt.cost = cost_frame(rt, train_costs(spec, store), spec.resources.train.gpus)
    return FORMATS[fmt](rt)


COST_COLUMNS = [("train_h", "time (h)", 2), ("gpu_h", "GPU-h", 2), ("peak_gb", "peak mem (GB)", 1)]


def cost_frame(rt: ReportTable, costs: pd.DataFrame, gpus: float) -> pd.DataFrame:
    """Per table row: train wall time (h), GPU-hours and peak memory (GB), mean over the row's cells'
    seeds, and `cost_status`: ok, missing (some train stage not done) or none (no train stage: the
    baseline)."""
    out = pd.DataFrame(index=rt.values.index, columns=[c for c, _, _ in COST_COLUMNS] + ["cost_status"],
                       dtype=object)
    for i in range(len(rt.keys)):
        sub = costs
        for axis in rt.row_axes:
            if sub.empty:
                break
            sub = sub[[_same(v, rt.keys.iloc[i][axis]) for v in sub[axis]]]
        if sub.empty:
            out.iloc[i] = [None, None, None, "none"]
            continue
        wall = pd.to_numeric(sub["wall_s"], errors="coerce")
        peak = pd.to_numeric(sub["peak_mem_mb"], errors="coerce")
        if wall.isna().any():
            out.iloc[i] = [None, None, None, "missing"]
            continue
        out.iloc[i] = [wall.mean() / 3600, wall.mean() / 3600 * gpus,
                       None if peak.isna().any() else peak.mean() / 1024, "ok"]
    return out


def _same(a, b) -> bool:
    na, nb = a is None or (isinstance(a, float) and a != a), b is None or (isinstance(b, float) and b != b)
    if na or nb:
        return na and nb
    return a == b if not isinstance(b, (int, np.integer)) else int(a) == int(b)


# ---- cell text -----------------------------------------------------------------------------------
MARKS = {"markdown": {"imported": "†", "pm": " ± ", "sig": "*"},
         "latex": {"imported": r"$^\dagger$", "pm": r" $\pm$ ", "sig": r"$^{*}$"}}


def _cell(rt: ReportTable, i: int, key: tuple[str, str], missing: str, marks: dict) -> tuple[str, bool]:
    """(text, is best) of one metric cell; the † / * marks go outside the bold."""
    status = rt.status.iloc[i][key]
    if status in ("ok", "imported"):
        decimals = rt.column(*key).decimals
        text = format_number(rt.values.iloc[i][key], decimals)
        if rt.seeds.iloc[i][key] > 1:
            text += marks["pm"] + format_number(rt.std.iloc[i][key], decimals)
        return text, bool(rt.best.iloc[i][key])
    return (status if status in ("failed", "stale") else missing), False


def _suffix(rt: ReportTable, i: int, key: tuple[str, str], marks: dict) -> str:
    out = marks["imported"] if rt.status.iloc[i][key] == "imported" else ""
    if getattr(rt, "show_significance", False) and bool(rt.significant.iloc[i][key]):
        out += marks["sig"]
    return out


def _total_cell(rt: ReportTable, i: int, group_id: str, missing: str, marks: dict | None = None) -> str:
    status = rt.total_status.iloc[i][group_id]
    if status in ("ok", "imported"):
        mark = marks["imported"] if marks and status == "imported" else ""
        return format_total(rt.totals.iloc[i][group_id]) + mark
    return {"failed": "failed", "stale": "stale"}.get(status, missing)


def _cost_cells(rt: ReportTable, i: int, missing: str) -> list[str]:
    row = rt.cost.iloc[i]
    if row["cost_status"] == "none":
        return [""] * len(COST_COLUMNS)
    return [missing if row[c] is None or row[c] != row[c] else format_number(float(row[c]), d)
            for c, _, d in COST_COLUMNS]


def own_templates(spec: Spec, bench_ids: list[str]) -> list[str]:
    """The judged benchmarks among `bench_ids` graded with this project's own template (no `template`
    file): their numbers are not comparable with published ones."""
    from matrix.benchmarks.base import BENCHMARKS

    out = []
    for bench_id in dict.fromkeys(bench_ids):
        try:
            b = spec.benchmark(bench_id)
        except StopIteration:  # a column of a benchmark the spec no longer lists
            continue
        if b.plugin in BENCHMARKS and BENCHMARKS.get(b.plugin).needs_judge and b.template is None:
            out.append(bench_id)
    return out


def _notes(rt: ReportTable, marks: dict) -> list[str]:
    notes = []
    if getattr(rt, "own_templates", None):
        notes.append(f"{', '.join(rt.own_templates)}: graded with this project's own judge template, not "
                     "comparable with published numbers (give the official one as the benchmark's `template`)")
    if (rt.status == "imported").any().any():
        notes.append(f"{marks['imported']} imported from {', '.join(rt.sources) or 'an external file'}, "
                     "not computed by this run")
    if getattr(rt, "show_significance", False):
        notes.append(f"{marks['sig']} delta vs. the baseline supported by a paired t-test over seeds "
                     f"(p < {rt.alpha:g})")
    if (rt.status == "stale").any().any():
        notes.append("stale: computed under settings the spec no longer has; re-run to refresh")
    return notes


def _row_groups(rt: ReportTable) -> list[tuple[str, list[int]]]:
    """(row group label, row positions) in display order."""
    out: dict[str, list[int]] = {}
    for i, label in enumerate(rt.values.index.get_level_values("group")):
        out.setdefault(label, []).append(i)
    return list(out.items())


def _grid(rt: ReportTable, missing: str, bold, arrow: str,
          escape, marks: dict) -> tuple[list[str], list[str], list[list[str]]]:
    """Shared layout of markdown and latex: group header cells, metric header cells, body rows."""
    with_group = bool(rt.group_axes)
    group_title, row_title = rt.axis_titles
    lead = [group_title, row_title] if with_group else [row_title]
    heads, subs = [""] * len(lead), [escape(t) for t in lead]
    for g in rt.groups:
        span = len(g.metrics) + (g.id in rt.total_groups)
        heads += [escape(g.label or g.id)] + [""] * (span - 1)
        subs += [escape(c.label or c.id) + ("" if c.higher_is_better else arrow) for c in g.metrics]
        subs += ["total"] if g.id in rt.total_groups else []
    if getattr(rt, "cost", None) is not None:
        heads += ["Train cost"] + [""] * (len(COST_COLUMNS) - 1)
        subs += [escape(label) for _, label, _ in COST_COLUMNS]
    body = []
    for label, positions in _row_groups(rt):
        for n, i in enumerate(positions):
            row = ([escape(label) if n == 0 else ""] if with_group else []) + [escape(rt.values.index[i][1])]
            for g in rt.groups:
                for c in g.metrics:
                    text, is_best = _cell(rt, i, (g.id, c.id), missing, marks)
                    row.append((bold(text) if is_best else text) + _suffix(rt, i, (g.id, c.id), marks))
                if g.id in rt.total_groups:
                    row.append(_total_cell(rt, i, g.id, missing, marks))
            if getattr(rt, "cost", None) is not None:
                row += _cost_cells(rt, i, missing)
            body.append(row)
    return heads, subs, body


# ---- markdown ------------------------------------------------------------------------------------
def _md_escape(text: str) -> str:
    return text.replace("|", r"\|")


def to_markdown(rt: ReportTable) -> str:
    marks = MARKS["markdown"]
    heads, subs, body = _grid(rt, "—", lambda t: f"**{t}**", " ↓", _md_escape, marks)
    n_lead = 2 if rt.group_axes else 1
    heads, subs = subs[:n_lead] + heads[n_lead:], heads[:n_lead] + subs[n_lead:]  # axis titles on top
    lines = [heads, subs] + body
    widths = [max(3, *(len(line[j]) for line in lines)) for j in range(len(heads))]
    rule = [":" + "-" * (w + 1) if j < n_lead else "-" * (w + 1) + ":" for j, w in enumerate(widths)]

    def fmt(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) if j < n_lead else c.rjust(w)
                                 for j, (c, w) in enumerate(zip(cells, widths))) + " |"

    notes = [("\\" + n if n.startswith("*") else n) for n in _notes(rt, marks)]  # not a list item
    return "\n".join([fmt(heads), "|" + "|".join(rule) + "|"] + [fmt(r) for r in [subs] + body]
                     + ([""] + notes if notes else []))


# ---- latex ---------------------------------------------------------------------------------------
_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def _latex_note(note: str) -> str:
    """Escape a note but keep its leading math mark."""
    for mark in (r"$^\dagger$", r"$^{*}$"):
        if note.startswith(mark):
            return mark + latex_escape(note[len(mark):]).replace("<", r"$<$")
    return latex_escape(note)


def _latex_label(text: str) -> str:
    """Escaped text, with `^X` written as a superscript (`VQA^T` -> `VQA$^{T}$`, as the paper prints it)."""
    parts = re.split(r"\^(\w+)", text)
    return "".join(latex_escape(p) if k % 2 == 0 else rf"$^{{{latex_escape(p)}}}$" for k, p in enumerate(parts))


def to_latex(rt: ReportTable) -> str:
    marks = MARKS["latex"]
    heads, subs, body = _grid(rt, "---", lambda t: rf"\textbf{{{t}}}", r" $\downarrow$", _latex_label, marks)
    n_lead = 2 if rt.group_axes else 1
    spans, start = [], n_lead + 1
    for g in rt.groups:
        width = len(g.metrics) + (g.id in rt.total_groups)
        spans.append((start, start + width - 1, heads[start - 1]))
        start += width
    if getattr(rt, "cost", None) is not None:
        spans.append((start, start + len(COST_COLUMNS) - 1, heads[start - 1]))
    out = [r"\begin{tabular}{" + "l" * n_lead + "r" * (len(heads) - n_lead) + "}", r"\toprule"]
    multi = [rf"\multicolumn{{{b - a + 1}}}{{c}}{{{label}}}" for a, b, label in spans]
    out.append(" & ".join([""] * n_lead + multi) + r" \\")
    out.append(" ".join(rf"\cmidrule(lr){{{a}-{b}}}" for a, b, _ in spans))
    out.append(" & ".join(subs) + r" \\")
    first_rows = {positions[0] for _, positions in _row_groups(rt)}
    for i, row in enumerate(body):
        if i in first_rows:
            out.append(r"\midrule")
        out.append(" & ".join(row) + r" \\")
    out.append(r"\bottomrule")
    for note in _notes(rt, {**marks, "imported": r"$^\dagger$"}):
        out.append(rf"\multicolumn{{{len(heads)}}}{{l}}{{\footnotesize {_latex_note(note)}}} \\")
    out.append(r"\end{tabular}")
    return "\n".join(out)


# ---- csv / json ----------------------------------------------------------------------------------
def to_frame(rt: ReportTable) -> pd.DataFrame:
    """One record per row: row axes, numbers rounded as printed (missing: NA), totals, statuses."""
    out = pd.DataFrame(index=range(len(rt.keys)))
    for axis in rt.row_axes:
        raw = list(rt.keys[axis])
        out[axis] = pd.array(raw, dtype="Int64") if axis == "scale" else pd.Series(raw, dtype=object)
    statuses: dict[str, list[str]] = {}
    multi_seed = bool((rt.seeds > 1).any().any())
    for g in rt.groups:
        for c in g.metrics:
            key = (g.id, c.id)
            out[c.id] = _numbers(rt.values[key], rt.status[key], c.decimals)
            if multi_seed:
                out[f"{c.id}_std"] = _numbers(rt.std[key], rt.status[key], c.decimals)
                out[f"{c.id}_seeds"] = pd.array(list(rt.seeds[key]), dtype="Int64")
            if getattr(rt, "show_significance", False):
                out[f"{c.id}_p"] = pd.Series([None if p != p else float(p) for p in rt.p_values[key]],
                                             dtype=float)
            statuses[f"{c.id}_status"] = list(rt.status[key])
        if g.id in rt.total_groups:
            out[f"{g.id}_total"] = _numbers(rt.totals[g.id], rt.total_status[g.id], TOTAL_DECIMALS)
            statuses[f"{g.id}_total_status"] = list(rt.total_status[g.id])
    if getattr(rt, "cost", None) is not None:
        for c, _, d in COST_COLUMNS:
            out[c] = pd.Series([None if v is None or v != v else float(round_half_up(float(v), d))
                                for v in rt.cost[c]], dtype=float)
        statuses["cost_status"] = list(rt.cost["cost_status"])
    if (rt.status == "imported").any().any() and rt.row_sources is not None:
        statuses["imported_from"] = [src or None for src in rt.row_sources]
    names = list(out.columns) + list(statuses)
    if len(set(names)) != len(names):
        clash = sorted({n for n in names if names.count(n) > 1})
        raise UserError(f"table {rt.table.id!r}: output columns clash: {clash}")
    for name, vals in statuses.items():
        out[name] = pd.Series(vals, dtype=object)
    return out


def _numbers(values: pd.Series, status: pd.Series, decimals: int) -> pd.Series:
    nums = [float(round_half_up(v, decimals)) if s in ("ok", "imported") and v == v else None
            for v, s in zip(values, status)]
    if decimals == 0:
        return pd.Series(pd.array([None if v is None else int(v) for v in nums], dtype="Int64"))
    return pd.Series(nums, dtype=float)


def to_csv(rt: ReportTable) -> str:
    return to_frame(rt).to_csv(index=False, lineterminator="\n").rstrip("\n")


def to_json(rt: ReportTable) -> str:
    """The `to_frame` records, numbers written by Python's shortest repr (66.8, not 66.799999999999997)."""
    def plain(v):
        if v is None or v is pd.NA or (isinstance(v, float) and v != v):
            return None
        if isinstance(v, (int, np.integer)):
            return int(v)
        return float(v) if isinstance(v, (float, np.floating)) else v

    records = [{k: plain(v) for k, v in r.items()} for r in to_frame(rt).astype(object).to_dict("records")]
    return json.dumps(records, indent=2, ensure_ascii=False)


FORMATS = {"markdown": to_markdown, "latex": to_latex, "csv": to_csv, "json": to_json}
