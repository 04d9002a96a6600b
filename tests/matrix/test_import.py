"""`matrix import` and the paper's own Table 9 through the real specs.

The paper's raw Table 9 values (tests/data/nsft_table9.csv) go through `matrix import` into a run of
specs/table9.yaml; the report's totals must be the paper's printed totals, except where the paper's own
numbers do not add up (listed in INCONSISTENT, and checked to be exactly those).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from matrix.cli import app
from matrix.store import Store

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "nsft_table9.csv"
runner = CliRunner()

# The totals printed in the paper's Table 9: (dataset, scale) -> method -> (VQA, MM, hallucination).
PRINTED = {
    ("ocrvqa", 5000): {"gt-dpo": (0.5, 1.3, 0.3), "seva": (0.8, 2.0, 6.1), "sima": (0.9, 2.5, 3.1),
                       "cont-sft": (0.0, -0.1, 0.7), "nsft": (1.3, 2.6, 6.8)},
    ("ocrvqa", 10000): {"gt-dpo": (0.1, 1.6, 0.6), "seva": (0.3, 2.6, 8.7), "sima": (1.3, 2.5, 5.1),
                        "cont-sft": (-0.3, 3.0, -1.6), "nsft": (1.4, 4.1, 8.9)},
    ("textcaps", 5000): {"gt-dpo": (0.6, 2.2, 3.3), "seva": (0.5, 3.0, 6.0), "sima": (1.3, 3.0, 4.4),
                         "cont-sft": (-1.4, 1.3, 2.7), "nsft": (1.4, 3.0, 7.2)},
    ("textcaps", 10000): {"gt-dpo": (0.4, 3.6, 3.9), "seva": (0.8, 4.8, 7.8), "sima": (1.3, 2.3, 5.6),
                          "cont-sft": (-2.0, 0.6, 2.4), "nsft": (2.1, 4.2, 9.9)},
    ("llava150k", 5000): {"gt-dpo": (1.0, 1.9, 6.0), "seva": (0.7, 2.5, 6.0), "sima": (1.4, 1.8, 6.8),
                          "cont-sft": (-1.6, -0.3, 2.5), "nsft": (1.5, 3.2, 8.6)},
    ("llava150k", 10000): {"gt-dpo": (0.5, 3.0, 1.3), "seva": (0.1, 2.4, 5.8), "sima": (1.5, 2.2, 9.6),
                           "cont-sft": (-1.8, 0.4, 5.1), "nsft": (2.3, 4.6, 11.8)},
}
# Where the paper's printed total disagrees with its own columns: (32.3 - 30.5) + (63.9 - 64.3) = +1.4.
INCONSISTENT = {("ocrvqa", 5000, "gt-dpo", "mm_total"): (1.3, 1.4)}


def make_run(tmp_path: Path, spec_file: str = "table9.yaml", **changes) -> Path:
    """A run directory for a repository spec (its snapshot, output_dir pointed at the directory)."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    data = yaml.safe_load((ROOT / "specs" / spec_file).read_text())
    data["output_dir"] = str(run_dir)
    data.update(changes)
    (run_dir / "spec.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return run_dir


def cli(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def table9_run(tmp_path_factory) -> Path:
    run_dir = make_run(tmp_path_factory.mktemp("t9"))
    res = cli("import", str(run_dir), str(DATA))
    assert res.exit_code == 0, res.output
    assert "imported 279 numbers" in res.output
    return run_dir


def test_table9_import_reproduces_the_papers_totals(table9_run):
    res = cli("report", str(table9_run), "--format", "csv")
    assert res.exit_code == 0, res.output
    import io

    frame = pd.read_csv(io.StringIO(res.output))
    assert len(frame) == 36  # 6 dataset-scale groups x (baseline + 5 methods)
    mismatches, checked = {}, 0
    for (dataset, scale), methods in PRINTED.items():
        block = frame[(frame["dataset"] == dataset) & (frame["scale"] == scale)]
        assert list(block["method"]) == ["baseline", "gt-dpo", "seva", "sima", "cont-sft", "nsft"]
        for method, totals in methods.items():
            row = block[block["method"] == method].iloc[0]
            for col, printed in zip(("vqa_total", "mm_total", "hal_total"), totals):
                assert row[f"{col}_status"] == "imported"
                checked += 1
                if row[col] != printed:
                    mismatches[(dataset, scale, method, col)] = (printed, row[col])
    assert checked == 90
    assert mismatches == INCONSISTENT


def test_table9_settings_are_needed(tmp_path):
    """The encoded settings matter: summing MME, or MMHal unscaled, breaks the paper's totals."""
    data = yaml.safe_load((ROOT / "specs" / "table9.yaml").read_text())
    groups = data["tables"][0]["groups"]
    groups[1]["metrics"][1]["in_total"] = True           # MME summed
    groups[2]["metrics"][2]["scale"] = 1.0                # MMHal on 0-6
    run_dir = make_run(tmp_path, tables=data["tables"])
    assert cli("import", str(run_dir), str(DATA)).exit_code == 0
    import io

    frame = pd.read_csv(io.StringIO(cli("report", str(run_dir), "--format", "csv").output))
    nsft = frame[(frame["dataset"] == "ocrvqa") & (frame["scale"] == 10000) & (frame["method"] == "nsft")].iloc[0]
    assert nsft["mm_total"] != 4.1 and nsft["hal_total"] != 8.9


def test_imported_numbers_are_marked_in_every_format(table9_run):
    md = cli("report", str(table9_run), "--format", "markdown").output
    assert "| 68.1† |" in md.replace("**", "") or "68.1**†" in md
    assert "† imported from nsft_table9.csv" in md
    from markdown_it import MarkdownIt

    html = MarkdownIt("commonmark").enable("table").render(md)
    assert html.count("<table>") == 1 and html.count("<tr>") == 1 + 1 + 36  # header, metric labels, rows
    assert "<strong>68.1</strong>†</td>" in html
    latex = cli("report", str(table9_run), "--format", "latex").output
    assert r"$^\dagger$" in latex and r"imported from nsft\_table9.csv" in latex
    assert "OCRVQA-5k" in latex and r"\cmidrule(lr)" in latex and r"CHAIR $\downarrow$" in latex
    records = json.loads(cli("report", str(table9_run), "--format", "json").output)
    assert {r["sqa_status"] for r in records} == {"imported"}
    assert {r["imported_from"] for r in records} == {"nsft_table9.csv"}
    # the paper's Table 1 is Table 9's 10k blocks: the table1 spec picks them with `where: {scale: 10k}`


def test_table1_spec_shows_the_10k_blocks(tmp_path):
    run_dir = make_run(tmp_path, "table1.yaml")
    assert cli("import", str(run_dir), str(DATA)).exit_code == 0
    md = cli("report", str(run_dir), "--format", "markdown").output
    lines = [ln for ln in md.splitlines() if ln.startswith("|")]
    assert len(lines) == 2 + 1 + 18
    assert re.search(r"\| LLaVA-150k +\| baseline", md)
    nsft = [ln for ln in lines if "nSFT" in ln]
    assert [re.findall(r"\([+-][\d.]+\)", ln)[-1] for ln in nsft] == ["(+8.9)†", "(+9.9)†", "(+11.8)†"] or \
        [re.findall(r"\([+-][\d.]+\)", ln)[-1] for ln in nsft] == ["(+8.9)", "(+9.9)", "(+11.8)"]


def write(tmp_path: Path, text: str, name: str = "ext.csv") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_bad_rows_are_reported_by_line_and_nothing_is_imported(tmp_path):
    run_dir = make_run(tmp_path)
    bad = write(tmp_path, "base_model,dataset,scale,method,benchmark,value\n"
                          "llava-1.5-7b,ocrvqa,5k,nsft,sqa,68.0\n"
                          "llava-1.5-7b,ocrvqa,5k,nsft,gqa,sixty\n"
                          "llava-1.5-7b,ocrvqa,,nsft,pope,86.7\n"
                          "llava-1.5-7b,ocrvqa,5k,nsft,nosuchbench,1\n"
                          "llava-1.5-7b,ocrvqa,5k,nsft,sqa,68.1\n")
    res = runner.invoke(app, ["import", str(run_dir), str(bad)])
    assert res.exit_code == 2
    err = res.output
    assert "ext.csv:3: value 'sixty' is not a number" in err
    assert "ext.csv:4: dataset and scale go together" in err
    assert "ext.csv:5: unknown benchmark 'nosuchbench'" in err
    assert "ext.csv:6: same cell, seed, benchmark and metric as line 2" in err
    assert "nothing imported" in err and "Traceback" not in err
    assert Store(run_dir).imported() == []


def test_bad_header_is_a_user_error(tmp_path):
    run_dir = make_run(tmp_path)
    res = runner.invoke(app, ["import", str(run_dir), str(write(tmp_path, "model,value\nx,1\n"))])
    assert res.exit_code == 2 and "ext.csv:1: missing column(s)" in res.output


def test_seed_and_metric_columns_and_reimport_replaces(tmp_path):
    run_dir = make_run(tmp_path)
    f = write(tmp_path, "base_model,dataset,scale,method,benchmark,value,seed,metric\n"
                        "llava-1.5-7b,ocrvqa,5000,nsft,chair,27.0,1,chair_i\n")
    assert cli("import", str(run_dir), str(f)).exit_code == 0
    write(tmp_path, "base_model,dataset,scale,method,benchmark,value,seed,metric\n"
                    "llava-1.5-7b,ocrvqa,5000,nsft,chair,26.0,1,chair_i\n")
    assert cli("import", str(run_dir), str(f)).exit_code == 0
    rows = Store(run_dir).imported()
    assert len(rows) == 1 and rows[0]["value"] == 26.0 and rows[0]["seed"] == 1
    assert rows[0]["metric"] == "chair_i" and rows[0]["scale"] == 5000 and rows[0]["line"] == 2


def test_values_outside_the_spec_are_imported_with_a_note(tmp_path):
    run_dir = make_run(tmp_path)
    f = write(tmp_path, "base_model,dataset,scale,method,benchmark,value\n"
                        "llava-1.5-7b,ocrvqa,5k,csr,sqa,68.3\n")
    res = runner.invoke(app, ["import", str(run_dir), str(f)])
    assert res.exit_code == 0 and "imported 1 numbers" in res.output
    assert "note: method not in spec 'table9': csr" in res.output
    frame = pd.read_csv(__import__("io").StringIO(cli("report", str(run_dir), "--format", "csv").output))
    csr = frame[frame["method"] == "csr"].iloc[0]
    assert csr["sqa"] == 68.3 and csr["sqa_status"] == "imported" and csr["gqa_status"] == "missing"


def test_import_into_a_spec_whose_run_has_not_started(tmp_path):
    """Importing published rows is what a user does first: `matrix import SPEC FILE` before any `matrix run`."""
    data = yaml.safe_load((ROOT / "specs" / "table9.yaml").read_text())
    data["output_dir"] = str(tmp_path / "not-yet")
    spec = tmp_path / "table9.yaml"
    spec.write_text(yaml.safe_dump(data, sort_keys=False))
    res = cli("import", str(spec), str(DATA))
    assert res.exit_code == 0, res.output
    assert "imported 279 numbers" in res.output
    md = cli("report", str(spec), "--format", "markdown").output
    # The paper's Table 9 prints (+0.0) as the baseline's totals; imported numbers carry a †.
    baseline = next(line for line in md.splitlines() if "OCRVQA-5k" in line and "baseline" in line)
    assert baseline.count("(+0.0)†") == 3, baseline
    # The run then starts from this directory as usual: nothing of it is marked done.
    plan = cli("plan", str(spec), "--no-check-files")
    assert plan.exit_code == 0, plan.output
    assert Store(tmp_path / "not-yet").stages() == {}
