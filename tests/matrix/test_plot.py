"""Run-store based reports and plots: stale cells, --cost, `matrix plot`, and LaTeX that compiles.

Stages are recorded in a real run store of specs/table1.yaml as the driver would record them (no model
is run); the paper's Table 9 comes in through `matrix import`.
"""
from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from matrix import api
from matrix.cli import app
from matrix.store import Store

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "nsft_table9.csv"
runner = CliRunner()


def make_run(tmp_path: Path, spec_file: str = "table1.yaml", **changes) -> Path:
    run_dir = tmp_path / "run"
    run_dir.mkdir(exist_ok=True)
    data = yaml.safe_load((ROOT / "specs" / spec_file).read_text())
    data["output_dir"] = str(run_dir)
    for dotted, value in changes.items():
        node = data
        *path, last = dotted.split("__")
        for p in path:
            node = node.setdefault(p, {})
        node[last] = value
    (run_dir / "spec.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return run_dir


def cli(*args: str):
    res = runner.invoke(app, list(args), catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.output


def record(store: Store, stage, wall_s=None, peak=None, metrics=None, benchmark=None) -> None:
    store.mark_running(stage.key, stage.kind, stage.label, {}, {}, "test")
    store.mark_done(stage.key, {}, wall_s, peak, metrics, benchmark)


def cells(spec):
    return {(c.cell.method, c.cell.dataset): c for c in api.plan(spec).graph.cells}


def test_stale_result_is_shown_as_stale_after_the_spec_changed(tmp_path):
    run_dir = make_run(tmp_path)
    spec, store = api.open_run(run_dir)
    record(store, cells(spec)[("nsft", "ocrvqa")].evaluate["sqa"], metrics={"img_accuracy": 68.46},
           benchmark="sqa")
    frame = pd.read_csv(io.StringIO(cli("report", str(run_dir), "--format", "csv")))
    row = frame[(frame["method"] == "nsft") & (frame["dataset"] == "ocrvqa")].iloc[0]
    assert row["sqa"] == 68.5 and row["sqa_status"] == "ok" and row["gqa_status"] == "missing"

    make_run(tmp_path, training__lr=1.0e-6, training__force=True)  # the spec changed since: the stored result is stale
    frame = pd.read_csv(io.StringIO(cli("report", str(run_dir), "--format", "csv")))
    row = frame[(frame["method"] == "nsft") & (frame["dataset"] == "ocrvqa")].iloc[0]
    assert pd.isna(row["sqa"]) and row["sqa_status"] == "stale" and row["gqa_status"] == "missing"
    md = cli("report", str(run_dir))
    assert "| stale |" in md.replace("  ", " ").replace("  ", " ") or " stale |" in md
    assert "68.5" not in md and "stale: computed under settings the spec no longer has" in md


def test_cost_columns_and_cost_plot(tmp_path):
    run_dir = make_run(tmp_path)
    spec, store = api.open_run(run_dir)
    hours = {"gt-dpo": 1.5, "seva": 3.0, "sima": 4.5, "cont-sft": 1.0, "nsft": 1.25}
    for (method, dataset), cs in cells(spec).items():
        if cs.train is not None and not (method == "sima" and dataset == "textcaps"):
            record(store, cs.train, wall_s=hours[method] * 3600, peak=(20 + len(method)) * 1024)
    frame = pd.read_csv(io.StringIO(cli("report", str(run_dir), "--format", "csv", "--cost")))
    nsft = frame[(frame["method"] == "nsft") & (frame["dataset"] == "ocrvqa")].iloc[0]
    assert (nsft["train_h"], nsft["gpu_h"], nsft["peak_gb"]) == (1.25, 10.0, 24.0)  # 8 GPUs per train
    base = frame[frame["method"] == "baseline"].iloc[0]
    assert base["cost_status"] == "none" and pd.isna(base["train_h"])
    sima = frame[(frame["method"] == "sima") & (frame["dataset"] == "textcaps")].iloc[0]
    assert sima["cost_status"] == "missing" and pd.isna(sima["gpu_h"])
    md = cli("report", str(run_dir), "--cost")
    assert "Train cost" in md and "time (h)" in md and "GPU-h" in md and "peak mem (GB)" in md

    out = cli("plot", str(run_dir), "--kind", "cost", "-o", str(tmp_path / "fig2.png"))
    png, pdf = tmp_path / "fig2.png", tmp_path / "fig2.pdf"
    assert f"wrote {png}" in out and png.stat().st_size > 10_000 and pdf.exists()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cost_plot_without_train_stages_is_a_user_error(tmp_path):
    run_dir = make_run(tmp_path)
    res = runner.invoke(app, ["plot", str(run_dir), "--kind", "cost"])
    assert res.exit_code == 2 and "no train stage of this run is done" in res.output
    res = runner.invoke(app, ["plot", str(run_dir), "--kind", "bars"])
    assert res.exit_code == 2 and "unknown plot kind 'bars'" in res.output


def test_scaling_plot_from_imported_table9(tmp_path):
    run_dir = make_run(tmp_path, "table9.yaml")
    cli("import", str(run_dir), str(DATA))
    from matrix.plot import scaling_points
    from matrix.results import collect

    spec, store = api.open_run(run_dir)
    points = scaling_points(spec, spec.tables[0], collect(spec, store))
    assert len(points) == 3 * 2 * 5 * 3  # datasets x scales x methods x groups
    nsft = points[(points["method"] == "nsft") & (points["dataset"] == "llava150k") & (points["group"] == "hal")]
    assert list(nsft.sort_values("scale")["improvement"].round(1)) == [8.6, 11.8]
    assert points["imported"].all()
    cli("plot", str(run_dir), "--kind", "scaling")
    png = run_dir / "plots" / "scaling.png"
    assert png.stat().st_size > 50_000 and png.with_suffix(".pdf").exists()


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="no TeX engine installed")
def test_latex_report_compiles(tmp_path):
    run_dir = make_run(tmp_path, "table9.yaml")
    cli("import", str(run_dir), str(DATA))
    fragment = cli("report", str(run_dir), "--format", "latex", "--significance")
    doc = tmp_path / "doc.tex"
    doc.write_text("\\documentclass{article}\n\\usepackage{booktabs}\n\\usepackage{graphicx}\n"
                   "\\usepackage[margin=1cm,landscape]{geometry}\n\\begin{document}\n\\resizebox{\\linewidth}{!}{%\n"
                   + fragment + "}\n\\end{document}\n")
    res = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout[-3000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 1000
