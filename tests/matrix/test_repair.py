"""A damaged run store: named with exit 2 by every command, never read; `matrix repair` rebuilds it from
the artifacts' result.json files (the damaged file kept aside) and the report is the same table again.

The artifacts are written by hand here, as `execute_stage` leaves them (result.json with result, timings
and manifest), for the plan of a small spec: no stage runs.
"""
from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from matrix import api, manifest
from matrix.cli import app
from matrix.store import Store
from matrix.runner.executor import Executor

runner = CliRunner()

SPEC = """\
name: rep
output_dir: {out}
base_models:
  tiny: {{family: tiny}}
datasets:
  d: {{source: synthetic, kind: ocrvqa, size: 50, label: D}}
scales: [20]
methods: [baseline, cont-sft, gt-dpo]
benchmarks:
  - {{id: pope, synthetic: 5}}
  - {{id: mme, synthetic: 5}}
tables:
  - id: main
    groups:
      - id: all
        metrics:
          - {{id: pope, benchmark: pope, metric: f1}}
          - {{id: mme, benchmark: mme, metric: perception, in_total: false}}
"""


def finished_run(tmp_path: Path, skip: str | None = None) -> Path:
    """A run whose every stage finished (but `skip`'s label), artifacts and store both written."""
    run_dir = tmp_path / "run"
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(SPEC.format(out=run_dir))
    spec = api.load(spec_file)
    run_dir.mkdir()
    (run_dir / "spec.yaml").write_text(spec_file.read_text())
    store = Store(run_dir)
    planned = api.plan(spec)
    recorder = Executor(store, planned.graph, spec.resources, [])
    for n, stage in enumerate(planned.graph.ordered()):
        if stage.label == skip:
            continue
        folder = store.artifact_dir(stage.key, stage.kind)
        folder.mkdir(parents=True)
        (folder / "out.txt").write_text(stage.label)
        result = {"n": n}
        if stage.kind == "evaluate":
            result["metrics"] = {"f1": 80 + n / 7, "perception": 1400 + n} if "pope" in stage.label or "mme" in \
                stage.label else {}
        payload = {"result": result, "wall_s": 1.5 * n, "peak_mem_mb": 100.0 + n, "host": "h",
                   "manifest": manifest.build(folder)}
        (folder / "result.json").write_text(json.dumps(payload))
        recorder._record(stage, payload)
    store.close()
    return run_dir


def report(run_dir: Path, *extra: str) -> str:
    result = runner.invoke(app, ["report", str(run_dir), "--format", "csv", "--cost", *extra])
    assert result.exit_code == 0, result.output
    return result.output


def damage(db: Path, how: str) -> None:
    data = db.read_bytes()
    if how == "truncated":
        db.write_bytes(data[: len(data) // 2])
    elif how == "garbage":
        db.write_bytes(b"\x8f\x01garbage" * 512)
    elif how == "emptied":
        db.write_bytes(b"")
    for side in ("-wal", "-shm"):
        Path(f"{db}{side}").unlink(missing_ok=True)


@pytest.mark.parametrize("how", ["truncated", "garbage", "emptied"])
def test_a_damaged_store_is_named_and_repair_gives_the_same_table(tmp_path, how):
    run_dir = finished_run(tmp_path)
    expected = report(run_dir)
    assert "80." in expected and "1400" not in expected  # numbers are there (mme prints as 14xx)
    db = run_dir / "matrix.db"
    damage(db, how)
    damaged_bytes = db.read_bytes()
    for command in (["report", str(run_dir)], ["status", str(run_dir)], ["verify", str(run_dir)],
                    ["plan", str(tmp_path / "spec.yaml"), "--no-check-files"], ["run", str(tmp_path / "spec.yaml")]):
        result = runner.invoke(app, command)
        assert result.exit_code == 2, (command, result.output)
        assert f"{db}: the run's store is damaged" in result.output and "matrix repair" in result.output
        assert "Traceback" not in result.output
    assert db.read_bytes() == damaged_bytes  # nothing written to it

    repaired = runner.invoke(app, ["repair", str(run_dir)])
    assert repaired.exit_code == 0, repaired.output
    kept = [p for p in run_dir.iterdir() if p.name.startswith("matrix.db.damaged-") and not p.name.endswith(
        ("-wal", "-shm"))]  # its WAL files, when sqlite made some, are kept beside it
    assert len(kept) == 1 and kept[0].read_bytes() == damaged_bytes
    assert "16 finished stages recorded" in repaired.output and "0 stages never finished" in repaired.output
    assert report(run_dir) == expected
    assert runner.invoke(app, ["verify", str(run_dir)]).exit_code == 0


def test_repair_of_a_healthy_store_needs_force_and_keeps_imported_numbers(tmp_path):
    run_dir = finished_run(tmp_path, skip="evaluate mme gt-dpo/tiny/d-20")
    csv = tmp_path / "paper.csv"
    csv.write_text("base_model,dataset,scale,method,benchmark,value,metric\ntiny,d,20,gt-dpo,mme,1234.5,perception\n")
    assert runner.invoke(app, ["import", str(run_dir), str(csv)]).exit_code == 0
    expected = report(run_dir)
    assert "1234.5" in expected or "1235" in expected
    again = runner.invoke(app, ["repair", str(run_dir)])
    assert again.exit_code == 0 and "nothing to repair" in again.output
    forced = runner.invoke(app, ["repair", str(run_dir), "--force"])
    assert forced.exit_code == 0, forced.output
    assert "15 finished stages recorded" in forced.output and "1 stages never finished" in forced.output
    assert "salvaged 1 imported numbers" in forced.output
    assert report(run_dir) == expected


def test_repair_leaves_damaged_artifacts_out(tmp_path):
    run_dir = finished_run(tmp_path)
    store = Store(run_dir)
    rec = next(r for r in store.stages().values() if r.label == "evaluate pope cont-sft/tiny/d-20")
    store.close()
    folder = Store(run_dir).artifact_dir(rec.key, rec.kind)
    (folder / "out.txt").write_text("changed")
    os.remove(run_dir / "matrix.db")
    result = runner.invoke(app, ["repair", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert "15 finished stages recorded" in result.output
    assert "damaged artifact not used" in result.output and "evaluate pope cont-sft/tiny/d-20: out.txt" in result.output
    with sqlite3.connect(run_dir / "matrix.db") as con:
        labels = {label for (label,) in con.execute("SELECT label FROM stages WHERE status='done'")}
    assert "evaluate pope cont-sft/tiny/d-20" not in labels and len(labels) == 15
