"""MLflow tracking of a sweep: an embedded SQLite store and an `mlflow server` on 127.0.0.1, queried with the
MLflow client; a repeated run adds nothing; a tracker that is down is a warning and the sweep goes on."""
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from tests.runner.sweeps import done_stages, matrix

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def sweep_runs(c, experiment: str = "tracked"):
    exp = c.get_experiment_by_name(experiment)
    runs = c.search_runs([exp.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return parents, children


def expected(run_dir: Path):
    """What the store holds, per cell label: {metric name: value} of its benchmarks, and the train log."""
    from matrix import api
    from matrix.methods.checkpoint import TRAIN_LOG

    spec, store = api.open_run(run_dir)
    try:
        planned = api.plan(spec)
        out = {}
        for cs in planned.graph.cells:
            metrics = {f"{bench}/{m}": v for bench, stage in cs.evaluate.items()
                       for _, _, m, v in store.metrics([stage.key])}
            steps = None
            if cs.train is not None:
                steps = json.loads((store.artifact_dir(cs.train.key, "train") / TRAIN_LOG).read_text())["steps"]
            out[cs.cell.label] = (metrics, steps)
        return out
    finally:
        store.close()


def check_logged(uri: str, run_dir: Path) -> None:
    c = client(uri)
    parents, children = sweep_runs(c)
    assert len(parents) == 1 and parents[0].info.run_name == "tracked"
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    want = expected(run_dir)
    assert sorted(r.info.run_name for r in children) == sorted(want) == ["baseline/tiny", "gt-dpo/tiny/shapes-40"]
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.info.status == "FINISHED"
        metrics, steps = want[child.info.run_name]
        # Every benchmark metric of the store, among them the report table's columns.
        assert "pope/f1" in metrics and "mme/perception" in metrics and len(metrics) > 20
        for name, value in metrics.items():
            assert child.data.metrics[name] == pytest.approx(value), name
        assert child.data.metrics["stage/pope/wall_s"] > 0 and child.data.metrics["stage/mme/peak_mem_mb"] > 0
        params = child.data.params
        assert params["base_model"] == "tiny" and params["seed"] == "0"
        if steps is None:
            assert child.info.run_name == "baseline/tiny" and "train/loss" not in child.data.metrics
            assert "dataset" not in params and "training.lr" not in params
            continue
        assert params["dataset"] == "shapes" and params["scale"] == "40" and params["method"] == "gt-dpo"
        assert params["training.lr"] == "0.001" and params["training.lora.r"] == "4"  # effective settings
        run_id = child.info.run_id
        for key in ("loss", "margin", "lr"):
            history = sorted(c.get_metric_history(run_id, f"train/{key}"), key=lambda m: m.step)
            assert [m.step for m in history] == [s["step"] for s in steps]
            assert [m.value for m in history] == pytest.approx([s[key] for s in steps]), key
        assert len(steps) >= 2
        assert child.data.metrics["stage/train/wall_s"] > 0
    names = {a.path for a in c.list_artifacts(parent.info.run_id)}
    assert {"spec.yaml", "tables", "plots"} <= names
    tables = {a.path for a in c.list_artifacts(parent.info.run_id, "tables")}
    assert {"tables/main.md", "tables/main.csv", "tables/main.tex"} <= tables


def counts(db: Path) -> dict[str, int]:
    """Rows of the MLflow store's tables that a repeated logging would grow."""
    with sqlite3.connect(db) as con:
        return {t: con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                for t in ("runs", "metrics", "params", "tags", "experiments")}


@pytest.mark.slow
def test_sweep_is_logged_to_the_run_directory_sqlite_and_running_again_adds_nothing(tracked_sweep):
    spec, run_dir, proc = tracked_sweep
    assert "warning" not in proc.stderr, proc.stderr
    db = run_dir / "mlflow.db"
    assert db.exists()
    check_logged(f"sqlite:///{db}", run_dir)
    before = counts(db)
    again = matrix("run", spec)
    assert "nothing to do" in again.stdout
    assert counts(db) == before
    check_logged(f"sqlite:///{db}", run_dir)


@pytest.mark.slow
def test_mlflow_server_gets_the_same_and_repeats_add_nothing(tracked_sweep, tmp_path):
    """A sweep first logged elsewhere is caught up by a later `matrix run --tracking-uri` on a server."""
    spec, run_dir, _ = tracked_sweep
    port = free_port()
    backend = tmp_path / "server.db"
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{backend}", "--artifacts-destination", str(tmp_path / "artifacts")],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "server.log", "w"),
        start_new_session=True)  # its own process group: the server's worker processes end with it
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            assert time.time() < deadline, "mlflow server did not come up in 180 s"
            time.sleep(1)
        first = matrix("run", spec, "--tracking-uri", uri)
        assert "nothing to do" in first.stdout and "warning" not in first.stderr, first.stderr
        check_logged(uri, run_dir)
        before = counts(backend)
        matrix("run", spec, "--tracking-uri", uri)
        assert counts(backend) == before
        assert (tmp_path / "artifacts").is_dir()  # artifacts went through the server
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


@pytest.mark.slow
def test_tracker_down_is_a_warning_and_the_sweep_goes_on(tracked_sweep, tmp_path):
    """Stages run while the tracker is unreachable: one warning, exit 0, every stage recorded."""
    spec, run_dir, _ = tracked_sweep
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    (copy / "mlflow.db").unlink()
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    proc = matrix("run", spec, "--set", f"output_dir={copy}", "--rerun", "evaluate", "--only", "method=baseline",
                  "--tracking-uri", dead)
    assert "ran 2" in proc.stdout, proc.stdout
    assert proc.stderr.count("warning: tracking:") == 1, proc.stderr
    assert dead in proc.stderr
    assert len(done_stages(copy)) == len(done_stages(run_dir))
    assert not (copy / "mlflow.db").exists()


SMALL = """\
name: t
output_dir: {out}
base_models:
  tiny: {{family: tiny}}
methods: [baseline]
benchmarks:
  - {{id: pope, synthetic: 5}}
"""


def test_tracking_is_off_unless_asked_and_defaults_to_the_run_directory(tmp_path):
    from matrix.specfile import load_spec
    from matrix.tracking import tracking_uri

    plain = tmp_path / "plain.yaml"
    plain.write_text(SMALL.format(out=tmp_path / "run"))
    assert tracking_uri(load_spec(plain)) is None
    assert tracking_uri(load_spec(plain), "http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    tracked = tmp_path / "tracked.yaml"
    tracked.write_text(SMALL.format(out=tmp_path / "run") + "tracking: {}\n")
    assert tracking_uri(load_spec(tracked)) == f"sqlite:///{tmp_path / 'run' / 'mlflow.db'}"
    tracked.write_text(SMALL.format(out=tmp_path / "run") + "tracking: {uri: 'http://h:5000', experiment: x}\n")
    assert tracking_uri(load_spec(tracked)) == "http://h:5000"


def test_an_unknown_tracking_key_names_file_line_and_key(tmp_path):
    from matrix.errors import SpecError
    from matrix.specfile import load_spec

    p = tmp_path / "bad.yaml"
    p.write_text(SMALL.format(out=tmp_path / "run") + "tracking:\n  url: http://h:5000\n")
    with pytest.raises(SpecError) as e:
        load_spec(p)
    (prob,) = e.value.problems
    assert (prob.file, prob.line, prob.key) == (str(p), 9, "tracking.url") and "unknown key" in prob.message


def test_cell_params_are_the_effective_settings():
    """The method's paper defaults under the spec's training section, as the train stage gets them."""
    from matrix.grid import expand
    from matrix.settings import training_params
    from matrix.specfile import load_spec
    from matrix.tracking import cell_params

    spec = load_spec(Path(__file__).resolve().parents[2] / "specs" / "quickstart.yaml")
    cell = next(c for c in expand(spec) if c.method == "gt-dpo")
    params = cell_params(spec, cell)
    hp = training_params(spec, "gt-dpo")
    assert params["training.lr"] == str(hp["lr"]) == "0.001"  # the spec's lr over the paper's
    assert params["training.beta"] == str(hp["beta"])  # a paper default the spec leaves alone
    assert params["training.lora.r"] == "8" and params["method"] == "gt-dpo" and params["scale"] == "1000"
    assert params["benchmark.pope.synthetic"] == "100"

