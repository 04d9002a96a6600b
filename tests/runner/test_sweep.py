"""End-to-end sweeps through the CLI in subprocesses: resume after kill -9, failures that do not stop the rest."""
import json
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from tests.runner.sweeps import REPO, done_stages, matrix, running

pytestmark = pytest.mark.slow

SPEC = """\
name: small
output_dir: {out}
base_models:
  tiny: {base}
datasets:
  shapes: {{source: synthetic, kind: ocrvqa, size: 80, label: Shapes}}
scales: {scales}
methods: [baseline, cont-sft, gt-dpo]
benchmarks:
  - {{id: pope, synthetic: 12}}
  - {{id: mme, synthetic: 8}}
generation: {{force: true, max_new_tokens: 8}}
training: {{force: true, lr: 1.0e-3, batch_size: 8, micro_batch_size: 8, max_length: 128, bf16: false, lora: {{r: 4, alpha: 8}}}}
ray: {{num_cpus: 2}}
tables:
  - id: main
    rows: [dataset, scale, method]
    groups:
      - id: all
        metrics:
          - {{id: pope, benchmark: pope, metric: f1}}
          - {{id: mme, benchmark: mme, metric: perception}}
"""


# The shipped tiny base model (its model stage links the asset); one sweep below bootstraps a short
# recipe instead, so that a model stage that trains also runs through the CLI once.
SHIPPED = "{family: tiny}"
BOOTSTRAP = "{family: tiny, recipe: {steps: 30, vision_pretrain_steps: 3, train_scenes: 200, eval_scenes: 10, phases: []}}"


def write_spec(tmp_path: Path, name: str, scales="[40]", base=SHIPPED) -> Path:
    p = tmp_path / f"{name}.yaml"
    p.write_text(textwrap.dedent(SPEC.format(out=tmp_path / name, scales=scales, base=base)))
    return p


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, str]:
    """The small sweep run once, uninterrupted, in this module: (its spec, its table as CSV). The tests
    that stop a sweep compare their resumed run's table with it; one reads a checkpoint from it."""
    tmp = tmp_path_factory.mktemp("finished")
    spec = write_spec(tmp, "ref")
    matrix("run", spec)
    return spec, matrix("report", spec, "--format", "csv").stdout


def test_kill_9_then_resume_redoes_nothing_and_matches_uninterrupted(tmp_path, finished):
    _, expected = finished
    spec = write_spec(tmp_path, "killed")
    run_dir = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "matrix", "run", str(spec)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if len(done_stages(run_dir)) >= 7:  # mid-sweep: data and generation done, training under way
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the sweep finished before it could be killed; make it longer"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = done_stages(run_dir)
    assert before, "nothing had finished before the kill"

    second = matrix("run", spec)
    after = done_stages(run_dir)
    # Every stage finished before the kill kept its record: it was not executed again.
    assert {k: after[k] for k in before} == before
    assert len(after) > len(before)
    assert "ran" in second.stdout
    assert matrix("report", spec, "--format", "csv").stdout == expected
    # A third run has nothing to do and says so.
    third = matrix("run", spec)
    assert "nothing to do" in third.stdout


def test_failing_stage_is_recorded_and_the_rest_completes(tmp_path):
    spec = write_spec(tmp_path, "failing", scales="[40, 500]", base=BOOTSTRAP)  # the dataset has 80 records: 500 cannot be drawn
    proc = matrix("run", spec, check=False)
    assert proc.returncode == 1
    assert "failed: subset shapes-500" in proc.stderr
    with sqlite3.connect(tmp_path / "failing" / "matrix.db") as con:
        (error,) = con.execute("SELECT error FROM stages WHERE label='subset shapes-500'").fetchone()
        statuses = dict(con.execute("SELECT label, status FROM stages").fetchall())
    assert "Traceback" in error and "asks for 500" in error
    # cont-sft at scale 40 does not need the failed subset: it trained and was evaluated.
    assert statuses["train cont-sft/tiny/shapes-40"] == "done"
    assert statuses["evaluate pope cont-sft/tiny/shapes-40"] == "done"
    report = matrix("report", spec, "--format", "json").stdout
    rows = json.loads(report)
    failed = [r for r in rows if r["method"] == "gt-dpo"]
    assert failed and all(r["pope_status"] == "failed" and r["pope"] is None for r in failed)
    status = matrix("status", tmp_path / "failing")
    assert "asks for 500" in status.stdout
    # Every number traces back to its answers: per-sample rows of each evaluated cell, whose mean
    # correctness is the stored accuracy.
    details = matrix("report", spec, "--details", "pope", "--format", "json").stdout
    samples = json.loads(details)
    correct: dict[tuple[str, str], list[bool]] = {}
    for sample in samples:
        correct.setdefault((sample["method"], sample["category"]), []).append(sample["correct"])
    assert {m for m, _ in correct} == {"baseline", "cont-sft"}  # gt-dpo's evaluations never ran
    with sqlite3.connect(tmp_path / "failing" / "matrix.db") as con:
        stored = {(label, metric): value for label, metric, value in con.execute(
            "SELECT s.label, m.metric, m.value FROM metrics m JOIN stages s ON s.key = m.stage_key "
            "WHERE m.benchmark = 'pope'").fetchall()}
    labels = {"baseline": "evaluate pope tiny (base)", "cont-sft": "evaluate pope cont-sft/tiny/shapes-40"}
    for (method, split), flags in correct.items():
        assert 100 * sum(flags) / len(flags) == pytest.approx(stored[(labels[method], f"{split}_accuracy")])


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["ctrl_c", "sigterm"])
def test_a_stop_signal_cancels_running_stages_and_the_next_run_continues(tmp_path, signum, code, finished):
    """Ctrl-C, and SIGTERM (what SLURM and Kubernetes send on preemption): a summary and exit 128+N,
    no `running` row, the run row `interrupted`, no temporary folder left, and the next run resumes to
    the table an uninterrupted run gives."""
    spec = write_spec(tmp_path, "interrupted")
    run_dir = tmp_path / "interrupted"
    # SIGINT at its default in the child: a test suite started in the background of a non-interactive
    # shell (`make test &`) inherits SIGINT ignored, and Python then installs no KeyboardInterrupt handler.
    proc = subprocess.Popen([sys.executable, "-m", "matrix", "run", str(spec)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 300
    # Interrupt while a train stage runs, with seconds of work left downstream of it.
    while time.time() < deadline and proc.poll() is None and not running(run_dir, "train"):
        time.sleep(0.1)
    assert proc.poll() is None, "the sweep finished before it could be interrupted"
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, (out, err)
    assert f"interrupted ({signal.Signals(signum).name})" in err and "Traceback" not in err
    before = done_stages(run_dir)
    with sqlite3.connect(run_dir / "matrix.db") as con:
        statuses = dict(con.execute("SELECT label, status FROM stages").fetchall())
        attempts = dict(con.execute("SELECT label, attempts FROM stages").fetchall())
        (run_status,) = con.execute("SELECT status FROM runs ORDER BY id DESC LIMIT 1").fetchone()
    assert "running" not in statuses.values() and run_status == "interrupted"  # the store says what is true
    assert statuses["train cont-sft/tiny/shapes-40"] == "interrupted"
    tmp = run_dir / "artifacts" / ".tmp"
    assert not tmp.exists() or not any(tmp.iterdir())  # the stopped stages' half-written folders are gone
    matrix("run", spec)
    after = done_stages(run_dir)
    assert {k: after[k] for k in before} == before  # nothing finished before the signal ran again
    with sqlite3.connect(run_dir / "matrix.db") as con:
        (resumed,) = con.execute("SELECT attempts FROM stages WHERE label='train cont-sft/tiny/shapes-40'").fetchone()
    assert resumed == attempts["train cont-sft/tiny/shapes-40"] + 1  # started once more, and counted
    assert all(a == 1 for label, a in attempts.items() if statuses[label] == "done")
    assert "nothing to do" in matrix("run", spec).stdout
    assert matrix("report", spec, "--format", "csv").stdout == finished[1]


def test_an_external_row_from_a_finished_checkpoint_matches_its_source(tmp_path, finished):
    """Another run's train output as an `external` row: no training, and the same numbers as its source."""
    spec, _ = finished
    source_dir = spec.parent / "ref"
    with sqlite3.connect(source_dir / "matrix.db") as con:
        (key,) = con.execute("SELECT key FROM stages WHERE label = 'train cont-sft/tiny/shapes-40'").fetchone()
    ckpt = source_dir / "artifacts" / "train" / key[:16]
    text = spec.read_text().replace(
        "methods: [baseline, cont-sft, gt-dpo]",
        f"methods: [baseline, {{id: copy, method: external, params: {{checkpoint: {ckpt}}}}}]")
    assert text != spec.read_text()
    other = tmp_path / "other.yaml"
    other.write_text(text.replace(f"output_dir: {source_dir}", f"output_dir: {tmp_path / 'other'}"))
    assert f"output_dir: {tmp_path / 'other'}" in other.read_text()
    matrix("run", other)
    with sqlite3.connect(tmp_path / "other" / "matrix.db") as con:
        kinds = [k for (k,) in con.execute("SELECT kind FROM stages")]
    assert "train" not in kinds and kinds.count("checkpoint") == 1
    rows = {r["method"]: r for r in json.loads(matrix("report", other, "--format", "json").stdout)}
    source = {r["method"]: r for r in json.loads(matrix("report", spec, "--format", "json").stdout)}
    assert rows["copy"]["pope"] == source["cont-sft"]["pope"] and rows["copy"]["mme"] == source["cont-sft"]["mme"]


JUDGES_SPEC = """\
name: judges
output_dir: {out}
base_models:
  tiny: {{family: tiny}}
methods: [baseline]
benchmarks:
{benchmarks}
ray: {{num_cpus: 2}}
tables:
  - id: t
    rows: [method]
    groups:
      - id: mmhal
        total: false
        metrics:
{columns}
"""


def test_a_second_judge_scores_the_stored_answers(tmp_path):
    """Table 8's situation: MMHal scored by a second judge runs scoring stages only, no generation."""
    def spec(entries: list[str]) -> Path:
        p = tmp_path / "judges.yaml"
        p.write_text(JUDGES_SPEC.format(
            out=tmp_path / "run",
            benchmarks="\n".join(f"  - {{id: {e}, benchmark: mmhal, synthetic: 4, "
                                 f"judge: {{provider: reference, model: {e}}}}}" for e in entries),
            columns="\n".join(f"          - {{id: {e}, benchmark: {e}}}" for e in entries)))
        return p

    matrix("run", spec(["first"]))
    before = set(done_stages(tmp_path / "run"))
    matrix("run", spec(["first", "second"]))
    with sqlite3.connect(tmp_path / "run" / "matrix.db") as con:
        new = [(label, params) for key, label, params in
               con.execute("SELECT key, label, params FROM stages WHERE status = 'done'") if key not in before]
    assert [label for label, _ in new] == ["evaluate second tiny (base)"]
    assert '"shards": 1' in new[0][1] and '"judge": "reference:second"' in new[0][1]
    (row,) = json.loads(matrix("report", spec(["first", "second"]), "--format", "json").stdout)
    assert row["second"] == row["first"] and row["first"] is not None  # same answers, same rules
