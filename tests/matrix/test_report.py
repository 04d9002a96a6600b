"""Report tables on hand-built results frames (no runs): totals, statuses, order, seeds, formats.

The numbers are the OCRVQA block of the nSFT paper's Table 1, so the expected totals are the paper's.
"""
from __future__ import annotations

import io
import json
import re

import pandas as pd
import pytest
from markdown_it import MarkdownIt

from matrix import report
from matrix.errors import UserError
from matrix.report import build_table, render, to_csv, to_json, to_latex, to_markdown
from matrix.results import COLUMNS
from matrix.spec import Spec
from matrix.table import format_number, format_total, headline_metric, round_half_up

# benchmark -> {metric: value} per method, from Table 1 (OCRVQA, 10k).
PAPER = {
    "baseline": {"sqa": 66.8, "gqa": 62.0, "textvqa": 58.0, "mmvet": 30.5, "mme": 1510, "mmb": 64.3,
                 "pope": 85.9, "chair": 32.0, "mmhal": 2.80},
    "gt-dpo": {"sqa": 67.8, "gqa": 61.4, "textvqa": 57.7, "mmvet": 32.5, "mme": 1412, "mmb": 63.9,
               "pope": 84.3, "chair": 31.5, "mmhal": 2.90},
    "seva": {"sqa": 67.6, "gqa": 62.0, "textvqa": 57.5, "mmvet": 32.5, "mme": 1502, "mmb": 64.9,
             "pope": 86.6, "chair": 27.3, "mmhal": 3.00},
    "cont-sft": {"sqa": 67.9, "gqa": 61.7, "textvqa": 56.9, "mmvet": 33.3, "mme": 1490, "mmb": 64.5,
                 "pope": 87.0, "chair": 34.0, "mmhal": 2.76},
    "nsft": {"sqa": 68.1, "gqa": 62.0, "textvqa": 58.1, "mmvet": 34.0, "mme": 1515, "mmb": 64.9,
             "pope": 87.1, "chair": 26.5, "mmhal": 2.93},
}
METRIC = {"sqa": "accuracy", "gqa": "accuracy", "textvqa": "accuracy", "mmvet": "score", "mme": "perception",
          "mmb": "accuracy", "pope": "f1", "chair": "chair_mean", "mmhal": "rating"}

TABLE1 = {
    "id": "table1", "rows": ["dataset", "method"], "baseline": "baseline",
    "groups": [
        {"id": "vqa", "label": "Traditional VQA", "metrics": [
            {"id": "sqa", "benchmark": "sqa", "metric": "accuracy", "label": "SQA"},
            {"id": "gqa", "benchmark": "gqa", "metric": "accuracy", "label": "GQA"},
            {"id": "vqat", "benchmark": "textvqa", "metric": "accuracy", "label": "VQA^T"}]},
        {"id": "mm", "label": "MM Comprehension", "metrics": [
            {"id": "mmvet", "benchmark": "mmvet", "metric": "score", "label": "MMVet"},
            {"id": "mme", "benchmark": "mme", "metric": "perception", "label": "MME", "in_total": False,
             "decimals": 0},
            {"id": "mmb", "benchmark": "mmb", "metric": "accuracy", "label": "MMB"}]},
        {"id": "hal", "label": "Hallucinations", "metrics": [
            {"id": "pope", "benchmark": "pope", "metric": "f1", "label": "POPE"},
            {"id": "chair", "benchmark": "chair", "metric": "chair_mean", "label": "CHAIR",
             "higher_is_better": False},
            {"id": "mmhal", "benchmark": "mmhal", "metric": "rating", "label": "MMHal", "scale": 100 / 6,
             "decimals": 2}]},
    ],
}
LABELS = {"baseline": None, "gt-dpo": "GT-DPO", "seva": "SeVa", "cont-sft": "Cont. SFT", "nsft": "nSFT"}


def make_spec(tables=None, methods=None, datasets=("ocrvqa",), scales=(10000,)) -> Spec:
    labels = {"ocrvqa": "OCRVQA", "textcaps": "TextCaps"}
    return Spec.model_validate({
        "name": "t", "base_models": {"llava": {"family": "llava"}},
        "datasets": {d: {"source": "synthetic", "kind": d, "size": 10, "label": labels[d]} for d in datasets},
        "scales": list(scales),
        "methods": [{"id": m, "label": LABELS.get(m)} for m in (methods or list(PAPER))],
        "benchmarks": [{"id": b, "synthetic": 5} for b in METRIC],
        "tables": tables or [TABLE1],
    })


def make_frame(data=PAPER, datasets=("ocrvqa",), scales=(10000,), seed=0, shift=0.0) -> pd.DataFrame:
    """Long results like collect(): the baseline once (dataset/scale None), trained methods per cell."""
    rows = []
    for method, values in data.items():
        cells = [(None, None)] if method == "baseline" else [(d, s) for d in datasets for s in scales]
        for d, s in cells:
            for bench, value in values.items():
                base = {"base_model": "llava", "dataset": d, "scale": s, "method": method, "seed": seed,
                        "benchmark": bench, "stage": f"k-{method}-{d}-{s}-{bench}-{seed}"}
                if value in ("failed", "missing"):
                    rows.append({**base, "metric": None, "value": None, "status": value})
                else:
                    rows.append({**base, "metric": METRIC[bench], "value": value + shift, "status": "ok"})
                    rows.append({**base, "metric": "other", "value": -1.0, "status": "ok"})
    return pd.DataFrame(rows, columns=COLUMNS)


def build(frame: pd.DataFrame, spec: Spec):
    return build_table(spec.tables[0], frame, spec)


def with_cell(method, bench, value):
    data = {m: dict(v) for m, v in PAPER.items()}
    data[method][bench] = value
    return data


def cells(line: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]


def md_row(md: str, label: str) -> list[str]:
    return next(cells(line) for line in md.splitlines() if label in cells(line)[:2])


# ---- totals --------------------------------------------------------------------------------------
def test_totals_reproduce_paper_table1():
    rt = build(make_frame(), make_spec())
    t = rt.totals.droplevel("group")
    # GT-DPO  VQA: (67.8-66.8) + (61.4-62.0) + (57.7-58.0) = 1.0 - 0.6 - 0.3 = +0.1
    #         MM:  (32.5-30.5) + (63.9-64.3) = 2.0 - 0.4 = +1.6     (MME 1412-1510 = -98 is not summed)
    #         Hal: (84.3-85.9) - (31.5-32.0) + (2.90-2.80)*100/6 = -1.6 + 0.5 + 1.667 = +0.567
    assert t.loc["GT-DPO", "vqa"] == pytest.approx(0.1)
    assert t.loc["GT-DPO", "mm"] == pytest.approx(1.6)
    assert t.loc["GT-DPO", "hal"] == pytest.approx(-1.6 + 0.5 + 10 / 6)
    # SeVa    Hal: (86.6-85.9) - (27.3-32.0) + (3.00-2.80)*100/6 = 0.7 + 4.7 + 3.333 = +8.733
    assert t.loc["SeVa", "hal"] == pytest.approx(0.7 + 4.7 + 20 / 6)
    # Cont. SFT VQA: 1.1 - 0.3 - 1.1 = -0.3
    #           Hal: 1.1 - (34.0-32.0) + (-0.04)*100/6 = 1.1 - 2.0 - 0.667 = -1.567
    assert t.loc["Cont. SFT", "vqa"] == pytest.approx(-0.3)
    assert t.loc["Cont. SFT", "hal"] == pytest.approx(1.1 - 2.0 - 4 / 6)
    # nSFT    MM: 3.5 + 0.6 = 4.1;  Hal: 1.2 + 5.5 + 0.13*100/6 = 1.2 + 5.5 + 2.167 = +8.867
    assert t.loc["nSFT", "mm"] == pytest.approx(4.1)
    assert t.loc["nSFT", "hal"] == pytest.approx(1.2 + 5.5 + 13 / 6)
    assert (t.loc["baseline"] == 0.0).all()  # the paper prints (+0.0) on the baseline's row
    assert (rt.total_status.droplevel("group").loc["baseline"] == "ok").all()

    md = to_markdown(rt)
    # The printed totals are the paper's.
    assert md_row(md, "GT-DPO")[5::4] == ["(+0.1)", "(+1.6)", "(+0.6)"]
    assert md_row(md, "SeVa")[5::4] == ["(+0.3)", "(+2.6)", "(+8.7)"]
    assert md_row(md, "Cont. SFT")[5::4] == ["(-0.3)", "(+3.0)", "(-1.6)"]
    assert md_row(md, "nSFT")[5::4] == ["(+1.4)", "(+4.1)", "(+8.9)"]
    assert md_row(md, "baseline")[5::4] == ["(+0.0)", "(+0.0)", "(+0.0)"]


def test_in_total_false_metric_is_shown_but_not_summed():
    # Only MME changes (1510 -> 2000): shown, but the MM total stays MMVet + MMB = 0 + 0.
    data = {"baseline": PAPER["baseline"], "nsft": dict(PAPER["baseline"], mme=2000)}
    rt = build(make_frame(data), make_spec())
    assert rt.totals.droplevel("group").loc["nSFT", "mm"] == 0.0
    assert md_row(to_markdown(rt), "nSFT")[6:10] == ["30.5", "**2000**", "64.3", "(+0.0)"]


def test_missing_metric_gives_missing_total_and_dash():
    rt = build(make_frame(with_cell("nsft", "mmhal", "missing")), make_spec())
    st = rt.total_status.droplevel("group")
    assert st.loc["nSFT", "hal"] == "missing" and pd.isna(rt.totals.droplevel("group").loc["nSFT", "hal"])
    assert st.loc["nSFT", "vqa"] == "ok"  # other groups keep their totals
    row = md_row(to_markdown(rt), "nSFT")
    assert row[-2:] == ["—", "—"]  # the MMHal cell and the total: no partial sum 1.2 + 5.5
    assert "0.00" not in row


def test_missing_baseline_makes_every_total_missing():
    rt = build(make_frame(with_cell("baseline", "pope", "missing")), make_spec())
    st = rt.total_status.droplevel("group")
    assert (st.drop("baseline")["hal"] == "missing").all()
    assert st.loc["baseline", "hal"] == "missing" and st.loc["baseline", "vqa"] == "ok"  # (+0.0) only when whole
    assert (st.drop("baseline")["vqa"] == "ok").all()


def test_failed_cell_shows_failed_everywhere():
    rt = build(make_frame(with_cell("seva", "pope", "failed")), make_spec())
    assert rt.status.droplevel("group").loc["SeVa", ("hal", "pope")] == "failed"
    assert rt.total_status.droplevel("group").loc["SeVa", "hal"] == "failed"
    row = md_row(to_markdown(rt), "SeVa")
    assert row[10] == "failed" and row[13] == "failed"
    assert re.search(r" & SeVa & .* & failed & 27\.3 & \\textbf\{3\.00\} & failed \\\\", to_latex(rt))
    csv = pd.read_csv(io.StringIO(to_csv(rt)))
    seva = csv[csv["method"] == "seva"].iloc[0]
    assert pd.isna(seva["pope"]) and seva["pope_status"] == "failed" and pd.isna(seva["hal_total"])
    record = next(r for r in json.loads(to_json(rt)) if r["method"] == "seva")
    assert record["pope"] is None and record["pope_status"] == "failed"
    assert record["hal_total"] is None and record["hal_total_status"] == "failed"


# ---- rows ----------------------------------------------------------------------------------------
def test_row_order_and_grouping_baseline_first_in_each_group():
    spec = make_spec(methods=["nsft", "gt-dpo", "baseline"], datasets=("textcaps", "ocrvqa"))
    data = {m: PAPER[m] for m in ("nsft", "baseline", "gt-dpo")}
    frame = make_frame(data, datasets=("ocrvqa", "textcaps")).sample(frac=1, random_state=0)
    rt = build(frame, spec)
    assert list(rt.values.index) == [("TextCaps", "baseline"), ("TextCaps", "nSFT"), ("TextCaps", "GT-DPO"),
                                     ("OCRVQA", "baseline"), ("OCRVQA", "nSFT"), ("OCRVQA", "GT-DPO")]
    assert list(rt.keys["dataset"]) == ["textcaps"] * 3 + ["ocrvqa"] * 3
    # The one baseline cell appears in both groups with the same numbers.
    assert rt.values.loc[("TextCaps", "baseline")].equals(rt.values.loc[("OCRVQA", "baseline")])
    md = to_markdown(rt).splitlines()
    assert [cells(line)[0] for line in md[3:]] == ["TextCaps", "", "", "OCRVQA", "", ""]
    assert cells(md[0])[:2] == ["Data", "Method"]


def test_table9_row_groups_scale_ascending_and_where_filter():
    t9 = dict(TABLE1, id="t9", rows=["dataset", "scale", "method"])
    spec = make_spec(tables=[t9], methods=["baseline", "nsft"], scales=(10000, 5000))
    frame = make_frame({m: PAPER[m] for m in ("baseline", "nsft")}, scales=(10000, 5000))
    rt = build_table(spec.tables[0], frame, spec)
    assert list(rt.values.index) == [("OCRVQA-5k", "baseline"), ("OCRVQA-5k", "nSFT"),
                                     ("OCRVQA-10k", "baseline"), ("OCRVQA-10k", "nSFT")]
    t9_10k = spec.tables[0].model_copy(update={"where": {"scale": "10k"}})
    rt = build_table(t9_10k, frame, spec)
    assert list(rt.values.index) == [("OCRVQA-10k", "baseline"), ("OCRVQA-10k", "nSFT")]
    csv = pd.read_csv(io.StringIO(to_csv(rt)))
    assert list(csv["scale"]) == [10000, 10000] and csv["scale"].dtype.kind == "i"


def test_rows_that_do_not_single_out_a_cell_are_an_error():
    spec = make_spec(methods=["baseline", "nsft"], datasets=("ocrvqa", "textcaps"))
    frame = make_frame({m: PAPER[m] for m in ("baseline", "nsft")}, datasets=("ocrvqa", "textcaps"))
    table = spec.tables[0].model_copy(update={"rows": ["method"]})
    with pytest.raises(UserError, match="several dataset"):
        build_table(table, frame, spec)


def test_seeds_are_averaged_and_a_failed_seed_fails_the_cell():
    data = {m: PAPER[m] for m in ("baseline", "nsft")}
    frame = pd.concat([make_frame(data, seed=0), make_frame(data, seed=1, shift=0.1)], ignore_index=True)
    rt = build(frame, make_spec(methods=["baseline", "nsft"]))
    v = rt.values.droplevel("group")
    # SQA baseline: (66.8 + 66.9) / 2 = 66.85, printed half-up as 66.9 (f"{66.85:.1f}" gives 66.8).
    assert v.loc["baseline", ("vqa", "sqa")] == pytest.approx(66.85)
    assert rt.seeds.droplevel("group").loc["baseline", ("vqa", "sqa")] == 2
    assert rt.std.droplevel("group").loc["baseline", ("vqa", "sqa")] == pytest.approx(0.1 / 2 ** 0.5)
    assert md_row(to_markdown(rt), "baseline")[2] == "66.9 ± 0.1"  # mean ± sample std over seeds

    bad = make_frame({"baseline": PAPER["baseline"], "nsft": dict(PAPER["nsft"], sqa="failed")}, seed=1)
    rt = build(pd.concat([make_frame(data, seed=0), bad], ignore_index=True),
                     make_spec(methods=["baseline", "nsft"]))
    assert rt.status.droplevel("group").loc["nSFT", ("vqa", "sqa")] == "failed"  # not seed 0 alone


def test_headline_metric_resolves_a_column_without_metric():
    table = {"id": "h", "groups": [{"id": "g", "metrics": [{"id": "pope", "benchmark": "pope"}]}]}
    spec = make_spec(tables=[table])
    rt = build_table(spec.tables[0], make_frame(), spec, headline={"pope": "f1"}.__getitem__)
    assert rt.values.droplevel("group").loc["nSFT", ("g", "pope")] == 87.1


def test_default_headline_comes_from_the_benchmark_registry():
    assert headline_metric("pope") == "f1" and headline_metric("mme") == "perception"
    with pytest.raises(UserError, match="unknown benchmark 'nope'"):
        headline_metric("nope")


def test_unknown_metric_name_is_an_error_listing_known_ones():
    column = {"id": "pope", "benchmark": "pope", "metric": "F1"}
    table = {"id": "h", "groups": [{"id": "g", "metrics": [column]}]}
    spec = make_spec(tables=[table])
    with pytest.raises(UserError, match="no metric 'F1'; it reports: f1, other"):
        build_table(spec.tables[0], make_frame(), spec)


# ---- numbers -------------------------------------------------------------------------------------
def test_rounding_is_half_up_on_decimal_digits():
    assert format_number(62.0 - 61.95, 1) == "0.1"  # float gives 0.04999999999999716
    assert format_number(2.675, 2) == "2.68"  # f"{2.675:.2f}" gives 2.67
    assert format_number(1510.4, 0) == "1510"
    assert format_number(-0.04, 1) == "0.0"
    assert format_total(-0.04) == "(+0.0)"  # rounds to zero: no "-0.0"
    assert format_total(-1.25) == "(-1.3)" and format_total(8.8667) == "(+8.9)"
    assert round_half_up(0.25, 1) == round_half_up(0.3, 1)


def test_best_per_column_in_bold_ties_included_lower_is_better_takes_min():
    rt = build(make_frame(), make_spec())
    best = rt.best.droplevel("group")
    assert list(best.index[best[("hal", "chair")]]) == ["nSFT"]  # 26.5 is the lowest CHAIR
    assert sorted(best.index[best[("mm", "mmb")]]) == ["SeVa", "nSFT"]  # 64.9 twice
    assert sorted(best.index[best[("vqa", "gqa")]]) == ["SeVa", "baseline", "nSFT"]  # 62.0 three times
    assert md_row(to_markdown(rt), "nSFT")[11] == "**26.5**"


# ---- formats -------------------------------------------------------------------------------------
def test_markdown_is_a_valid_pipe_table():
    table = dict(TABLE1, groups=[dict(TABLE1["groups"][0], label="VQA | classic")] + TABLE1["groups"][1:])
    spec = make_spec(tables=[table])
    md = to_markdown(build_table(spec.tables[0], make_frame(), spec))
    lines = md.splitlines()
    counts = {len(re.findall(r"(?<!\\)\|", line)) for line in lines}
    assert counts == {2 + 12 + 1}  # 2 row columns + 12 value columns = 14 cells between 15 pipes
    assert re.fullmatch(r"\|(:-{3,}\|){2}(-{3,}:\|){12}", lines[1])
    assert cells(lines[0])[2] == r"VQA \| classic"
    assert cells(lines[2])[2:] == ["SQA", "GQA", "VQA^T", "total", "MMVet", "MME", "MMB", "total", "POPE",
                                   "CHAIR ↓", "MMHal", "total"]
    assert len({len(line) for line in lines}) == 1  # padded: columns line up in plain text


def test_latex_booktabs_grouped_header_bold_and_escaping():
    spec = make_spec()
    rt = build_table(spec.tables[0], make_frame(with_cell("gt-dpo", "mmvet", "missing")), spec)
    tex = to_latex(rt)
    lines = tex.splitlines()
    assert lines[0] == r"\begin{tabular}{llrrrrrrrrrrrr}" and lines[-1] == r"\end{tabular}"
    assert lines[1] == r"\toprule" and lines[-2] == r"\bottomrule" and r"\midrule" in lines
    assert lines[2] == (r" &  & \multicolumn{4}{c}{Traditional VQA} & \multicolumn{4}{c}{MM Comprehension}"
                        r" & \multicolumn{4}{c}{Hallucinations} \\")
    assert lines[3] == r"\cmidrule(lr){3-6} \cmidrule(lr){7-10} \cmidrule(lr){11-14}"
    assert r"VQA$^{T}$" in lines[4] and r"CHAIR $\downarrow$" in lines[4]  # VQA^T as the paper prints it
    nsft = next(line for line in lines if line.startswith(" & nSFT"))
    assert nsft == (r" & nSFT & \textbf{68.1} & \textbf{62.0} & \textbf{58.1} & (+1.4) & \textbf{34.0} & "
                    r"\textbf{1515} & \textbf{64.9} & (+4.1) & \textbf{87.1} & \textbf{26.5} & 2.93 & "
                    r"(+8.9) \\")
    # GT-DPO's MMVet is missing: the cell and the MM total print as --- (an em dash).
    gt_dpo = " & GT-DPO & 67.8 & 61.4 & 57.7 & (+0.1) & --- & 1412 & 63.9 & --- & "
    assert gt_dpo in tex
    assert lines[6].startswith(r"OCRVQA & baseline & 66.8")
    assert r"\textbf{3.00}" in tex  # SeVa's MMHal beats nSFT's 2.93

    special = dict(TABLE1, groups=[dict(TABLE1["groups"][0], label="50% & $x_1$ #1")])
    spec = make_spec(tables=[special])
    tex = to_latex(build_table(spec.tables[0], make_frame(), spec))
    assert r"\multicolumn{4}{c}{50\% \& \$x\_1\$ \#1}" in tex


def test_csv_columns_numeric_types_and_empty_missing():
    rt = build(make_frame(with_cell("nsft", "mmhal", "missing")), make_spec())
    text = to_csv(rt)
    csv = pd.read_csv(io.StringIO(text))
    values = ["sqa", "gqa", "vqat", "vqa_total", "mmvet", "mme", "mmb", "mm_total", "pope", "chair", "mmhal",
              "hal_total"]
    statuses = [f"{c}_status" for c in values]
    assert list(csv.columns) == ["dataset", "method"] + values + statuses
    assert all(csv[c].dtype.kind == "f" for c in values if c != "mme") and csv["mme"].dtype.kind == "i"
    assert list(csv["method"]) == ["baseline", "gt-dpo", "seva", "cont-sft", "nsft"]
    nsft = csv.iloc[4]
    assert nsft["sqa"] == 68.1 and pd.isna(nsft["hal_total"]) and nsft["mmhal_status"] == "missing"
    assert nsft["vqa_total"] == 1.4 and csv.iloc[2]["hal_total"] == 8.7  # rounded as printed
    assert text.splitlines()[5].startswith("ocrvqa,nsft,68.1,62.0,58.1,1.4,34.0,1515,64.9,4.1,87.1,26.5,,,")
    assert list(csv["vqa_total_status"]) == ["ok", "ok", "ok", "ok", "ok"] and csv.iloc[0]["vqa_total"] == 0.0


def test_json_records_carry_status_per_cell():
    records = json.loads(to_json(build(make_frame(), make_spec())))
    assert len(records) == 5 and records[0]["method"] == "baseline" and records[0]["vqa_total"] == 0.0
    assert records[1]["mmhal"] == 2.9 and records[1]["mme"] == 1412 and records[1]["hal_total"] == 0.6
    assert records[1]["mmhal_status"] == "ok" and records[0]["hal_total_status"] == "ok"


# ---- render --------------------------------------------------------------------------------------
def test_render_picks_table_and_rejects_unknown_ids_and_formats(monkeypatch):
    import matrix.results

    second = dict(TABLE1, id="second")
    spec = make_spec(tables=[TABLE1, second])
    monkeypatch.setattr(matrix.results, "collect", lambda s, store: make_frame())
    assert render(spec, None, "markdown", None) == render(spec, None, "markdown", "second")
    assert render(spec, None, "csv", "table1").startswith("dataset,method,sqa")
    with pytest.raises(UserError, match=r"unknown table 'nope'; known: table1, second"):
        render(spec, None, "markdown", "nope")
    with pytest.raises(UserError, match=r"unknown report format 'html'; known: markdown, latex, csv, json"):
        render(spec, None, "html", None)
    assert set(report.FORMATS) == {"markdown", "latex", "csv", "json"}


# ---- seeds: mean ± std, significance --------------------------------------------------------------
def test_paired_t_test_matches_students_t():
    from matrix.table import paired_t_test

    # differences 1, 2, 3: t = 2 / (1 / sqrt 3) = 3.464, df 2 -> p = 0.0742 (scipy.stats.ttest_rel)
    assert paired_t_test({0: 1, 1: 2, 2: 3}, {0: 0, 1: 0, 2: 0}) == pytest.approx(0.07418, abs=1e-4)
    assert paired_t_test({0: 1.0, 1: 1.1, 2: 0.9}, {0: 0, 1: 0, 2: 0}) == pytest.approx(0.003317, abs=1e-5)
    assert pd.isna(paired_t_test({0: 1.0}, {0: 0.0}))                # one shared seed: not testable
    assert pd.isna(paired_t_test({0: 1.0, 1: 2.0}, {2: 0.0, 3: 0.0}))  # no shared seed
    assert paired_t_test({0: 1.0, 1: 1.0}, {0: 0.0, 1: 0.0}) == 0.0  # the same gain on every seed


def seeded_frame():
    """Three seeds; nSFT's SQA gain is steady (+1.3 +- 0.1), its GQA change is noise (0, +0.4, -0.4)."""
    data = {m: PAPER[m] for m in ("baseline", "nsft")}
    frames = []
    for seed, (sqa, gqa) in enumerate([(0.0, 0.0), (0.1, 0.4), (-0.1, -0.4)]):
        f = make_frame(data, seed=seed)
        is_nsft = f["method"] == "nsft"
        f.loc[is_nsft & (f["benchmark"] == "sqa") & (f["metric"] == "accuracy"), "value"] += sqa
        f.loc[is_nsft & (f["benchmark"] == "gqa") & (f["metric"] == "accuracy"), "value"] += gqa
        frames.append(f)
    return pd.concat(frames, ignore_index=True)


def test_significance_marks_only_supported_deltas():
    rt = build(seeded_frame(), make_spec(methods=["baseline", "nsft"]))
    sig = rt.significant.droplevel("group")
    assert bool(sig.loc["nSFT", ("vqa", "sqa")]) and not bool(sig.loc["nSFT", ("vqa", "gqa")])
    assert not sig.loc["baseline"].any()
    rt.show_significance = True
    row = md_row(to_markdown(rt), "nSFT")
    assert row[2] == "**68.1 ± 0.1***" and row[3] == "62.0 ± 0.4"
    assert "\\* delta vs. the baseline supported by a paired t-test over seeds (p < 0.05)" in to_markdown(rt)
    html = MarkdownIt("commonmark").enable("table").render(to_markdown(rt))
    assert html.count("<tr>") == 1 + 1 + 2 and "<strong>68.1 ± 0.1</strong>*</td>" in html
    assert "<li>" not in html and "<p>* delta vs. the baseline" in html
    assert r"68.1 $\pm$ 0.1}$^{*}$" in to_latex(rt)
    csv = pd.read_csv(io.StringIO(to_csv(rt)))
    assert csv.loc[1, "sqa_std"] == 0.1 and csv.loc[1, "sqa_seeds"] == 3 and csv.loc[1, "sqa_p"] < 0.05
    rt.show_significance = False
    assert "***" not in to_markdown(rt) and "sqa_p" not in to_csv(rt)


def test_imported_and_stale_cells():
    frame = make_frame()
    frame["source"] = None
    nsft = frame["method"] == "nsft"
    frame.loc[nsft & (frame["benchmark"] == "sqa"), ["status", "source"]] = ["imported", "paper.csv"]
    gt = (frame["method"] == "gt-dpo") & (frame["benchmark"] == "pope")
    frame = frame[~gt | (frame["metric"] == "f1")]
    frame.loc[gt, ["status", "metric", "value"]] = ["stale", None, None]
    rt = build(frame, make_spec())
    st, ts = rt.status.droplevel("group"), rt.total_status.droplevel("group")
    assert st.loc["nSFT", ("vqa", "sqa")] == "imported" and ts.loc["nSFT", "vqa"] == "imported"
    assert rt.totals.droplevel("group").loc["nSFT", "vqa"] == pytest.approx(1.4)
    assert st.loc["GT-DPO", ("hal", "pope")] == "stale" and ts.loc["GT-DPO", "hal"] == "stale"
    md = to_markdown(rt)
    assert md_row(md, "nSFT")[2] == "**68.1**†" and md_row(md, "nSFT")[5] == "(+1.4)†"
    assert md_row(md, "GT-DPO")[10] == "stale" and md_row(md, "GT-DPO")[13] == "stale"
    assert "† imported from paper.csv, not computed by this run" in md and "stale: computed under" in md
    records = json.loads(to_json(rt))
    assert records[4]["sqa_status"] == "imported" and records[4]["sqa"] == 68.1
    assert records[1]["pope"] is None and records[1]["pope_status"] == "stale"


def test_judged_columns_graded_with_our_template_are_marked_not_comparable(tmp_path):
    from matrix.report import own_templates

    spec = make_spec()
    assert own_templates(spec, ["sqa", "mmvet", "mme", "mmvet"]) == ["mmvet"]  # judged, no template file
    official = tmp_path / "mmvet-prompt.txt"
    official.write_text("official prompt\n")
    spec.benchmark("mmvet").template = official
    assert own_templates(spec, ["sqa", "mmvet"]) == []
    spec.benchmark("mmvet").template = None
    rt = build(make_frame(), spec)
    rt.own_templates = own_templates(spec, ["mmvet"])
    assert "mmvet: graded with this project's own judge template, not comparable with published numbers" \
        in to_markdown(rt)
