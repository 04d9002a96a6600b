"""Table 2's data: a mixture of several datasets' subsets as one dataset, and an SFT mix trained
together with a method's constructed examples (run end to end on the shapes world)."""
import json
import textwrap
from pathlib import Path

import pytest
from tests.runner.sweeps import done_records, matrix

pytestmark = pytest.mark.slow

SPEC = """\
name: mix
output_dir: {out}
base_models:
  tiny: {{family: tiny}}
datasets:
  vqa: {{source: synthetic, kind: ocrvqa, size: 30}}
  caps: {{source: synthetic, kind: textcaps, size: 30}}
  mix: {{source: mixture, parts: [{{dataset: vqa, size: 10}}, {{dataset: caps, size: 12}}], label: Mix}}
  base-sft: {{source: synthetic, kind: detail, size: 7}}
scales: [22]
methods:
  - baseline
  - {{id: cont-sft, sft_mix: base-sft}}
grid: {{exclude: [{{dataset: vqa}}, {{dataset: caps}}, {{dataset: base-sft}}]}}
benchmarks: [{{id: pope, synthetic: 10}}]
generation: {{force: true, max_new_tokens: 8}}
training: {{force: true, lr: 1.0e-3, batch_size: 8, micro_batch_size: 8, max_length: 160, bf16: false, lora: {{r: 4, alpha: 8}},
           deepspeed: null}}  # DeepSpeed is not the point here (test_sweep trains under it)
ray: {{num_cpus: 2}}
"""


def test_a_mixture_and_an_sft_mix_train_together(tmp_path):
    spec = tmp_path / "mix.yaml"
    spec.write_text(textwrap.dedent(SPEC.format(out=tmp_path / "run")))
    matrix("run", spec)
    rows = {label: (key, res) for label, (key, _, _, res) in done_records(tmp_path / "run").items()}
    art = tmp_path / "run" / "artifacts"
    mixed = json.loads((art / "data" / rows["data mix"][0][:16] / "data.json").read_text())
    assert rows["data mix"][1]["parts"] == {"vqa": 10, "caps": 12} and len(mixed) == 22
    for part, n in (("vqa", 10), ("caps", 12)):
        subset = json.loads((art / "subset" / rows[f"subset {part}-{n}"][0][:16] / "ids.json").read_text())
        assert [r["id"] for r in mixed if r["id"].startswith(f"{part}:")] == [f"{part}:{i}" for i in subset]
    assert all(Path(r["image"]).is_absolute() and Path(r["image"]).exists() for r in mixed)
    construct = rows["construct cont-sft/tiny/mix-22"][1]
    assert construct["sft_mix"] == 7 and construct["examples"] == 22 + 7
    assert rows["train cont-sft/tiny/mix-22"][1]["examples"] == 22 + 7


def test_an_sft_mix_on_a_dpo_method_is_refused(tmp_path):
    spec = tmp_path / "bad.yaml"
    text = textwrap.dedent(SPEC.format(out=tmp_path / "run"))
    spec.write_text(text.replace("{id: cont-sft,", "{id: gt-dpo,"))
    proc = matrix("validate", "--no-check-files", spec, check=False)
    assert proc.returncode == 2
    assert "methods[1].sft_mix" in proc.stdout + proc.stderr and "does not train with SFT" in proc.stdout + proc.stderr
