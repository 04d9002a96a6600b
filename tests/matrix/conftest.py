"""The small tracked sweep that the tracking and export tests share (run once per session: minutes on CPU)."""
import subprocess
import sys
import textwrap

import pytest
from tests.runner.sweeps import REPO

SPEC = """\
name: tracked
output_dir: {out}
base_models:
  tiny: {{family: tiny}}  # the shipped model: no bootstrap
datasets:
  shapes: {{source: synthetic, kind: ocrvqa, size: 80, label: Shapes}}
scales: [40]
methods: [baseline, gt-dpo]
benchmarks:
  - {{id: pope, synthetic: 12}}
  - {{id: mme, synthetic: 4}}
generation: {{force: true, max_new_tokens: 8}}
training: {{force: true, lr: 1.0e-3, batch_size: 8, micro_batch_size: 8, max_length: 128, bf16: false, lora: {{r: 4, alpha: 8}}}}
ray: {{num_cpus: 2}}
tracking: {{}}
tables:
  - id: main
    rows: [dataset, scale, method]
    groups:
      - id: all
        metrics:
          - {{id: pope, benchmark: pope, metric: f1}}
          - {{id: mme, benchmark: mme}}
"""


@pytest.fixture(scope="session")
def tracked_sweep(tmp_path_factory):
    """(spec path, run directory, the CLI's CompletedProcess) of one finished sweep logged to the run
    directory's MLflow SQLite store: a baseline cell and a gt-dpo cell, POPE and MME."""
    root = tmp_path_factory.mktemp("tracked")
    spec = root / "tracked.yaml"
    spec.write_text(textwrap.dedent(SPEC.format(out=root / "run")))
    proc = subprocess.run([sys.executable, "-m", "matrix", "run", str(spec)], cwd=REPO, capture_output=True,
                          text=True, timeout=1800)  # minutes on 2 free cores; more on a loaded machine
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    return spec, root / "run", proc
