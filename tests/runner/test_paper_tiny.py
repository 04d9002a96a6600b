"""The shipped tiny variants of Tables 3 and 5 run end to end through the CLI (shrunk with --set):
CSR's iterations chain through merge stages, an external row read from another run reports its source's
numbers, and in-domain evaluation asks each cell its own source's held-out slice."""
import json
import textwrap

import pytest
from tests.runner.sweeps import REPO, done_records, matrix

pytestmark = pytest.mark.slow

SOURCE = """\
name: source
output_dir: {out}
base_models:
  tiny: {{family: tiny}}
datasets:
  shapes: {{source: synthetic, kind: ocrvqa, size: 60, label: Shapes}}
scales: [40]
methods: [baseline, cont-sft]
benchmarks:
  - {{id: pope, synthetic: 30}}     # as table5-tiny's with the --set below: the same questions
  - {{id: mme, synthetic: 16}}
generation: {{force: true, max_new_tokens: 8}}
training: {{force: true, lr: 1.0e-3, batch_size: 8, micro_batch_size: 8, max_length: 160, bf16: false, lora: {{r: 4, alpha: 8}},
           deepspeed: null}}  # DeepSpeed is not the point here (test_sweep trains under it)
ray: {{num_cpus: 2}}
tables:
  - id: t
    rows: [method]
    groups:
      - id: all
        metrics:
          - {{id: pope, benchmark: pope}}
          - {{id: mme, benchmark: mme, decimals: 0}}  # as Table 5's column: both print the same digits
"""


def test_table5_tiny_csr_iterations_and_an_external_row(tmp_path):
    source = tmp_path / "source.yaml"
    source.write_text(textwrap.dedent(SOURCE.format(out=tmp_path / "source")))
    matrix("run", source)
    out = tmp_path / "t5"
    sets = [f"output_dir={out}", f"methods.1.params.from_run.run={tmp_path / 'source'}",
            "datasets.shapes-detail.size=40", "scales=[30]",
            "methods.2.params.search.max_levels=4", "methods.2.params.search.step_tokens=16",
            # smaller benchmarks than the spec's (mmbench, sqa, mme, pope): the plumbing is the point here
            "benchmarks.0.synthetic=16", "benchmarks.1.synthetic=16", "benchmarks.2.synthetic=16",
            "benchmarks.3.synthetic=30"]
    args = [a for s in sets for a in ("--set", s)]
    first = matrix("run", REPO / "specs" / "table5-tiny.yaml", *args)
    assert "failed 0" in first.stdout
    by_label = done_records(out)
    kinds = [kind for _, kind, _, _ in by_label.values()]
    assert kinds.count("merge") == 1 and kinds.count("checkpoint") == 1
    assert not any(label.startswith("train ppo") for label in by_label)
    # Iteration 2 samples from iteration 1's merged model, which merged iteration 1's checkpoint.
    merge_key, _, merge_deps, _ = by_label["merge csr-iter1/tiny/shapes-detail-30"]
    assert merge_deps["checkpoint"] == by_label["train csr-iter1/tiny/shapes-detail-30"][0]
    gen2 = by_label["generate sentences csr-iter2/tiny/shapes-detail-30"]
    assert gen2[2]["model"] == merge_key
    assert by_label["train csr-iter2/tiny/shapes-detail-30"][2]["model"] == merge_key
    assert by_label["construct csr-iter1/tiny/shapes-detail-30"][3]["pairs"] > 0
    rows = {r["method"]: r for r in json.loads(matrix("report", out, "--format", "json").stdout)}
    assert set(rows) == {"baseline", "ppo", "nsft", "csr-iter1", "csr-iter2"}
    assert all(isinstance(rows[m][c], (int, float)) for m in rows for c in ("mmb", "sqa", "mme", "pope"))
    src = {r["method"]: r for r in json.loads(matrix("report", source, "--format", "json").stdout)}
    # The source's table reads the same headline metrics as Table 5's columns, printed to the same digits
    # (an MME of 337.5 is 337.5 at one decimal and 338 at none).
    assert rows["ppo"]["pope"] == src["cont-sft"]["pope"] and rows["ppo"]["mme"] == src["cont-sft"]["mme"]
    again = matrix("run", REPO / "specs" / "table5-tiny.yaml", *args)
    assert "nothing to do: all 38 stages are done" in again.stdout


def test_table3_tiny_in_domain_on_held_out_slices(tmp_path):
    out = tmp_path / "t3"
    sets = [f"output_dir={out}", "scales=[24]", "datasets.shapes-vqa.size=36", "datasets.shapes-caps.size=36",
            "datasets.shapes-detail.size=36", "benchmarks.0.heldout=12", "benchmarks.1.heldout=12",
            "benchmarks.2.heldout=12",
            # 24 one-word VQA answers: the augmented image changes none of them, so SeVa has no pair there
            "grid={exclude: [{method: seva, dataset: shapes-vqa}]}"]
    args = [a for s in sets for a in ("--set", s)]
    run = matrix("run", REPO / "specs" / "table3-tiny.yaml", *args)
    assert "failed 0" in run.stdout
    stages = [(key, kind, label, deps, res) for label, (key, kind, deps, res) in done_records(out).items()]
    # Each trained cell is asked only its own source's slice; the baseline all three.
    asked = {label for _, kind, label, _, res in stages if kind == "evaluate" and "shards" not in res
             and label.startswith("evaluate ")}
    assert "evaluate indomain-caps seva/tiny/shapes-caps-24" in asked
    assert not any(label.startswith("evaluate indomain-vqa seva/tiny/shapes-caps") for label in asked)
    assert {f"evaluate indomain-{d} tiny (base)" for d in ("vqa", "caps", "detail")} <= asked
    # Held-out records are in no training subset of their dataset.
    for key, kind, label, deps, res in stages:
        if kind == "data" and "held out of" in label:
            slice_ids = {str(r["id"]) for r in json.loads((out / "artifacts" / "data" / key[:16] / "indomain.json")
                                                          .read_text())["records"]}
            assert len(slice_ids) == 12
            subsets = [k for k, kd, lb, dp, _ in stages if kd == "subset" and dp["data"] == deps["data"]]
            assert subsets
            for s in subsets:
                assert not slice_ids & set(json.loads((out / "artifacts" / "subset" / s[:16] / "ids.json").read_text()))
    rows = {r["method"]: r for r in json.loads(matrix("report", out, "--format", "json").stdout)}
    assert set(rows) == {"baseline", "seva", "gt-dpo", "nsft"}
    assert rows["seva"]["vqa-acc"] is None and rows["seva"]["caps-acc"] is not None  # the excluded cell
    for row in rows.values():
        for d in ("vqa", "caps", "detail"):
            if row[f"{d}-acc"] is None:
                continue
            acc, best, worst = row[f"{d}-acc"], row[f"{d}-best"], row[f"{d}-worst"]
            assert 0 <= worst <= acc <= best <= 10 and 0 <= row[f"{d}-if"] <= 10
