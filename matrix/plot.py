"""`matrix plot RUN --kind scaling|cost`: the paper's Fig. 4 and Fig. 2 from a run's store.

- scaling (Fig. 4): per alignment dataset (a row of panels) and column group of the table (a panel),
  the group's total improvement over the baseline (the table's `total`: same columns, scaling and
  direction) against the data scale, one line per method. Imported numbers are drawn with hollow markers
  and named in a note; cells without a number are left out, never drawn as zero.
- cost (Fig. 2a-b): per method, the train stage's wall time (hours; minutes or seconds for short runs) and peak memory (GB), mean over the
  cells done, bars per data scale; the baseline has no train stage.

PNG and PDF side by side (default `RUN/plots/<kind>.png`).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from matrix.errors import UserError
from matrix.spec import Spec, scale_label

KINDS = ("scaling", "cost")


def plot_run(spec: Spec, store, kind: str, output: Path | None = None, table_id: str | None = None) -> list[Path]:
    if kind not in KINDS:
        raise UserError(f"unknown plot kind {kind!r}; known: {', '.join(KINDS)}")
    if kind == "scaling":
        from matrix.report import pick_table
        from matrix.results import collect

        fig = scaling_figure(spec, pick_table(spec, table_id), collect(spec, store))
    else:
        from matrix.results import train_costs

        fig = cost_figure(spec, train_costs(spec, store))
    out = Path(output) if output else spec.run_dir / "plots" / f"{kind}.png"
    if out.suffix.lower() != ".png":
        out = out.with_suffix(".png")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=150, bbox_inches="tight")
    fig.savefig(out.with_suffix(".pdf"), bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return [out, out.with_suffix(".pdf")]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _method_labels(spec: Spec) -> dict[str, str]:
    return {row: spec.method_label(row) for row in spec.method_ids()}


def scaling_points(spec: Spec, table, frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, scale, method, group) with the group's total improvement and whether it
    rests on imported numbers."""
    from matrix.table import build_table

    t = table.model_copy(update={"rows": ["dataset", "scale", "method"],
                                 "where": {k: v for k, v in table.where.items() if k != "scale"}})
    rt = build_table(t, frame, spec)
    rows = []
    for i in range(len(rt.keys)):
        key = rt.keys.iloc[i]
        if rt.is_baseline.iloc[i] or key["scale"] is None:
            continue
        for g in rt.total_groups:
            st = rt.total_status.iloc[i][g]
            if st in ("ok", "imported"):
                rows.append({"dataset": key["dataset"], "scale": int(key["scale"]), "method": key["method"],
                             "group": g, "improvement": float(rt.totals.iloc[i][g]),
                             "imported": st == "imported"})
    return pd.DataFrame(rows, columns=["dataset", "scale", "method", "group", "improvement", "imported"])


def scaling_figure(spec: Spec, table, frame: pd.DataFrame):
    points = scaling_points(spec, table, frame)
    if points.empty:
        raise UserError("nothing to plot: no method has a complete group total at any data scale yet "
                        "(run the sweep, or `matrix import` published numbers)")
    plt = _pyplot()
    groups = [g for g in table.groups if g.id in set(points["group"])]
    datasets = [d for d in spec.datasets if d in set(points["dataset"])] + \
        sorted(set(points["dataset"]) - set(spec.datasets))
    labels = _method_labels(spec)
    methods = [m for m in labels if m in set(points["method"])] + sorted(set(points["method"]) - set(labels))
    colors = {m: plt.get_cmap("tab10")(k % 10) for k, m in enumerate(methods)}
    markers = "osD^vP*X"
    fig, axes = plt.subplots(len(datasets), len(groups), squeeze=False, sharex=True,
                             figsize=(4.2 * len(groups), 3.2 * len(datasets) + 0.8))
    scales = sorted(set(points["scale"]))
    for r, d in enumerate(datasets):
        ds_label = spec.datasets[d].label or d if d in spec.datasets else d
        for c, g in enumerate(groups):
            ax = axes[r][c]
            sub = points[(points["dataset"] == d) & (points["group"] == g.id)]
            for k, m in enumerate(methods):
                line = sub[sub["method"] == m].sort_values("scale")
                if line.empty:
                    continue
                hollow = bool(line["imported"].all())
                ax.plot(line["scale"], line["improvement"], color=colors[m], lw=2 if m.startswith("nsft") else 1.4,
                        marker=markers[k % len(markers)], ms=6, mfc="white" if hollow else colors[m],
                        label=labels.get(m, m))
                if not hollow and line["imported"].any():  # mixed: hollow markers on the imported points
                    part = line[line["imported"]]
                    ax.scatter(part["scale"], part["improvement"], s=36, marker=markers[k % len(markers)],
                               color=colors[m], facecolors="white", zorder=3)
            ax.axhline(0, color="0.5", lw=0.8, ls="--")
            ax.set_title(f"{ds_label}: {g.label or g.id}", fontsize=11)
            ax.set_xticks(scales, [scale_label(s) for s in scales])
            ax.grid(alpha=0.3)
            if c == 0:
                ax.set_ylabel("improvement over baseline\n(group total)")
            if r == len(datasets) - 1:
                ax.set_xlabel("alignment data scale")
    handles, names = axes[0][0].get_legend_handles_labels()
    for ax in axes.flat:
        for h, n in zip(*ax.get_legend_handles_labels()):
            if n not in names:
                handles.append(h)
                names.append(n)
    fig.legend(handles, names, loc="upper center", ncol=min(len(names), 6), frameon=False,
               bbox_to_anchor=(0.5, 1.0), fontsize=10)
    notes = []
    if points["imported"].any():
        notes.append("hollow markers: imported numbers (matrix import), not computed by this run")
    if notes:
        fig.text(0.5, -0.01, "; ".join(notes), ha="center", va="top", fontsize=9, color="0.3")
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / (3.2 * len(datasets) + 0.8)))
    return fig


def cost_points(spec: Spec, costs: pd.DataFrame) -> pd.DataFrame:
    """Mean train wall time (h) and peak memory (GB) per (method, scale) over the cells done."""
    if costs.empty:
        return pd.DataFrame(columns=["method", "scale", "hours", "peak_gb", "cells"])
    done = costs.dropna(subset=["wall_s"]).copy()
    if done.empty:
        return pd.DataFrame(columns=["method", "scale", "hours", "peak_gb", "cells"])
    done["scale"] = [int(s) if s is not None and s == s else 0 for s in done["scale"]]
    done["hours"] = done["wall_s"].astype(float) / 3600
    done["peak_gb"] = pd.to_numeric(done["peak_mem_mb"], errors="coerce") / 1024
    out = done.groupby(["method", "scale"]).agg(hours=("hours", "mean"), peak_gb=("peak_gb", "mean"),
                                                 cells=("hours", "size")).reset_index()
    return out


def _on_gpu(spec: Spec) -> bool:
    """Whether train stages asked for GPUs (peak memory is then the GPU's, else the process's RSS)."""
    return spec.resources.for_kind("train").gpus > 0


def cost_figure(spec: Spec, costs: pd.DataFrame):
    points = cost_points(spec, costs)
    if points.empty:
        raise UserError("nothing to plot: no train stage of this run is done yet")
    plt = _pyplot()
    labels = _method_labels(spec)
    methods = [m for m in labels if m in set(points["method"])] + sorted(set(points["method"]) - set(labels))
    scales = sorted(set(points["scale"]))
    fig, axes = plt.subplots(1, 2, figsize=(max(8.0, 1.3 * len(methods) * 2 + 2), 3.8))
    width = 0.8 / len(scales)
    cmap = plt.get_cmap("Blues")
    # Hours as the paper plots them; short (CPU, tiny-model) runs in minutes or seconds so bars read.
    longest = float(points["hours"].max())
    factor, time_unit = (1, "h") if longest >= 0.1 else (60, "min") if longest * 60 >= 1 else (3600, "s")
    memory = "GPU memory" if _on_gpu(spec) else "memory"
    for ax, col, title, unit, mult in ((axes[0], "hours", "(a) training time", f"wall time ({time_unit})", factor),
                                       (axes[1], "peak_gb", f"(b) peak {memory}", "peak memory (GB)", 1)):
        for k, s in enumerate(scales):
            sub = points[points["scale"] == s].set_index("method")
            xs = [j - 0.4 + width * (k + 0.5) for j in range(len(methods))]
            ys = [sub[col].get(m, float("nan")) * mult for m in methods]
            bars = ax.bar(xs, ys, width * 0.95, color=cmap(0.45 + 0.5 * k / max(1, len(scales) - 1)),
                          label=f"{scale_label(s)} examples" if s else "no data")
            ax.bar_label(bars, fmt="%.2f" if col == "hours" and factor == 1 else "%.1f", fontsize=8, padding=2)
        ax.set_xticks(range(len(methods)), [labels.get(m, m) for m in methods], rotation=20, ha="right")
        ax.set_ylabel(unit)
        ax.set_title(title, fontsize=11)
        ax.grid(axis="y", alpha=0.3)
        ax.margins(y=0.15)
    axes[1].legend(title="data scale", fontsize=9, frameon=False)
    fig.tight_layout()
    return fig
