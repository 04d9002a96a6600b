"""Damage end to end through the CLI on a small tiny-model sweep: a train stage's deleted adapter is seen
(`matrix verify`), named and trained again by `matrix run` (nothing else recomputed); a truncated
scores.jsonl is left out of `report --details` with a warning instead of a traceback; a truncated
matrix.db stops commands with exit 2 and `matrix repair` gives back the same report."""
import json
import textwrap
from pathlib import Path

import pytest

from tests.runner.sweeps import done_records, done_stages, matrix

pytestmark = pytest.mark.slow

SPEC = """\
name: damage
output_dir: {out}
base_models:
  tiny: {{family: tiny}}
datasets:
  shapes: {{source: synthetic, kind: ocrvqa, size: 40, label: Shapes}}
scales: [16]
methods: [baseline, cont-sft]
benchmarks:
  - {{id: pope, synthetic: 6}}
generation: {{force: true, max_new_tokens: 8}}
training: {{force: true, lr: 1.0e-3, batch_size: 8, micro_batch_size: 8, max_length: 128, bf16: false, lora: {{r: 4, alpha: 8}},
           deepspeed: null}}  # DeepSpeed is not the point here (test_sweep trains under it)
ray: {{num_cpus: 2}}
tables:
  - id: main
    rows: [dataset, scale, method]
    groups:
      - id: all
        metrics:
          - {{id: pope, benchmark: pope, metric: f1}}
"""


def test_damaged_artifacts_and_store_end_to_end(tmp_path):
    spec = tmp_path / "damage.yaml"
    run_dir = tmp_path / "damage"
    spec.write_text(textwrap.dedent(SPEC.format(out=run_dir)))
    matrix("run", spec)
    expected = matrix("report", spec, "--format", "csv").stdout
    records = done_records(run_dir)
    train_label = "train cont-sft/tiny/shapes-16"
    key, kind, _, _ = records[train_label]
    train_dir = run_dir / "artifacts" / kind / key[:16]
    adapters = [p for p in train_dir.rglob("*.safetensors")]
    assert adapters, sorted(p.name for p in train_dir.rglob("*"))
    adapters[0].unlink()

    verify = matrix("verify", run_dir, check=False)
    assert verify.returncode == 1
    assert f"damaged: train {train_label} [{key[:12]}]" in verify.stdout and "is missing" in verify.stdout

    before = done_stages(run_dir)
    again = matrix("run", spec)
    assert "damaged" in again.stderr and train_label in again.stderr and "is missing" in again.stderr
    after = done_stages(run_dir)
    changed = {k for k in after if after[k] != before.get(k)}
    assert changed == {key}  # only the damaged train stage ran again; its evaluation was whole and kept
    assert matrix("verify", run_dir).returncode == 0
    assert matrix("report", spec, "--format", "csv").stdout == expected

    # A truncated scores.jsonl: left out of --details with a warning, never a traceback.
    eval_key = records["evaluate pope cont-sft/tiny/shapes-16"][0]
    scores = run_dir / "artifacts" / "evaluate" / eval_key[:16] / "scores.jsonl"
    scores.write_bytes(scores.read_bytes()[:-7])
    details = matrix("report", spec, "--details", "pope", "--format", "json")
    assert "Traceback" not in details.stderr
    assert "damaged artifact left out" in details.stderr and "scores.jsonl has" in details.stderr
    assert {r["method"] for r in json.loads(details.stdout)} == {"baseline"}

    # A truncated matrix.db: exit 2 naming it; repair gives the same report without recomputing.
    db = run_dir / "matrix.db"
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 3])
    for side in ("-wal", "-shm"):
        Path(f"{db}{side}").unlink(missing_ok=True)
    broken = matrix("report", spec, check=False)
    assert broken.returncode == 2 and f"{db}: the run's store is damaged" in broken.stderr
    assert "Traceback" not in broken.stderr
    repaired = matrix("repair", run_dir)
    assert "damaged artifact not used" in repaired.stderr  # the truncated scores: left for `matrix run`
    assert matrix("report", spec, "--format", "csv").stdout != expected  # that evaluation is now to do
    final = matrix("run", spec)
    assert "ran 1," in final.stdout  # only the evaluation whose scores were truncated
    assert matrix("report", spec, "--format", "csv").stdout == expected
