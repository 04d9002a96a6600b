"""A sweep on the real-architecture LLaVA fixture through the CLI: the `llava` family's llava-hf folder as
the base model (baseline and GT-DPO on synthetic POPE and MME), and the same model saved as an original
LLaVA checkpoint as an external row, converted once by its `model` stage and answering exactly as the
baseline does."""
import json
import textwrap

import pytest
from tests.runner.sweeps import done_records, matrix

pytestmark = pytest.mark.slow

SPEC = """\
name: llava-fixture
output_dir: {out}
base_models:
  llava: {{family: llava, path: {hf}}}
datasets:
  shapes: {{source: synthetic, kind: ocrvqa, size: 4, label: Shapes}}
scales: [4]
methods:
  - baseline
  - gt-dpo
  - {{id: original, method: external, label: Original LLaVA, params: {{model: {{family: llava, path: {original}}}}}}}
benchmarks:
  - {{id: pope, synthetic: 6}}
  - {{id: mme, synthetic: 4}}
generation: {{force: true, max_new_tokens: 6}}
training: {{force: true, lr: 1.0e-3, batch_size: 4, micro_batch_size: 4, max_length: 1024, bf16: false, lora: {{r: 4, alpha: 8}}}}
ray: {{num_cpus: 2}}
tables:
  - id: main
    rows: [method]
    groups:
      - id: all
        metrics:
          - {{id: pope, benchmark: pope, metric: f1}}
          - {{id: mme, benchmark: mme, metric: perception}}
"""


def test_llava_family_sweep_with_an_original_checkpoint_row(tmp_path, llava_hf, llava_original):
    spec = tmp_path / "llava.yaml"
    spec.write_text(textwrap.dedent(SPEC.format(out=tmp_path / "run", hf=llava_hf, original=llava_original)))
    matrix("run", spec)
    records = done_records(tmp_path / "run")
    models = {label: result for label, (_, kind, _, result) in records.items() if kind == "model"}
    assert models["model llava"]["source"] == "external"
    assert models["model original"]["source"] == "converted" and models["model original"]["vision_tower"] == "embedded"
    assert {kind for _, kind, _, _ in records.values()} >= {"generate", "construct", "train", "evaluate"}
    train = next(result for label, (_, kind, _, result) in records.items() if kind == "train")
    assert train["examples"] > 0 and train["dropped_truncated"] == 0 and train["deepspeed_stage"] == 3  # SeVa's

    rows = {r["method"]: r for r in json.loads(matrix("report", spec, "--format", "json").stdout)}
    assert set(rows) == {"baseline", "gt-dpo", "original"}
    assert all(isinstance(rows[m][k], (int, float)) for m in rows for k in ("pope", "mme"))
    # The converted original checkpoint is the base model: the same scores from the same greedy answers.
    assert (rows["original"]["pope"], rows["original"]["mme"]) == (rows["baseline"]["pope"], rows["baseline"]["mme"])
    for bench in ("pope", "mme"):
        samples = json.loads(matrix("report", spec, "--details", bench, "--format", "json").stdout)
        answers: dict[str, list] = {}
        for s in samples:
            answers.setdefault(s["method"], []).append(json.dumps({k: v for k, v in s.items() if k != "method"},
                                                                  sort_keys=True))
        assert answers["original"] and sorted(answers["original"]) == sorted(answers["baseline"])

    # Converted once: the next run finds every stage, the conversion included, in the store.
    assert "nothing to do" in matrix("run", spec).stdout
