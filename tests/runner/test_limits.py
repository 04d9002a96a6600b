"""No stage runs without a bound (issue 19): a stage past its kind's wall-clock limit fails with
'timed out after ...' and the sweep goes on; one deaf to the signal is killed by the watchdog and
recorded as timed out, not retried; `matrix status` shows a running stage's time and last log line."""
from __future__ import annotations

import re
import threading
import time

import pytest

from matrix.spec import DEFAULT_TIMEOUTS_S, ResourceSpec, ResourcesSpec
from matrix.store import Store
from matrix.runner.deadline import format_duration, grace_s
from matrix.runner.executor import Executor
from matrix.runner.graph import StageGraph
from matrix.runner.stage import Stage
from tests.runner.conftest import sleep_stage as sleep

def run(tmp_path, nodes, stages):
    store = Store(tmp_path / "run")
    graph = StageGraph(stages={s.key: s for s in stages}, cells=[])
    summary = Executor(store, graph, ResourcesSpec(), nodes).run()
    return summary, store


def test_durations_parse_and_print():
    assert [ResourceSpec(timeout=t).timeout for t in (90, "90s", "30m", "2h", "1.5d")] == [90, 90, 1800, 7200, 129600]
    with pytest.raises(ValueError, match="expected a duration like"):
        ResourceSpec(timeout="soon")
    assert ResourceSpec().limit_s("train") == 3 * 86400 and ResourceSpec().limit_s("merge") == 6 * 3600
    assert ResourceSpec(timeout="2h").limit_s("train") == 7200
    assert [format_duration(s) for s in (5, 2.5, 90, 7260, 90000)] == ["5s", "2.5s", "1m 30s", "2h 01m", "1d 01h"]


def test_a_bad_timeout_in_a_spec_names_its_line_and_key(tmp_path):
    from typer.testing import CliRunner

    from matrix.cli import app

    spec = tmp_path / "spec.yaml"
    spec.write_text("name: t\nbase_models: {tiny: {family: tiny}}\nmethods: [baseline]\n"
                    "benchmarks: [{id: pope, synthetic: 4}]\nresources:\n  train: {gpus: 1, timeout: soon}\n")
    result = CliRunner().invoke(app, ["validate", str(spec), "--no-check-files"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"{spec}:6: resources.train.timeout" in result.output and "expected a duration like" in result.output


@pytest.mark.slow
def test_a_stage_past_its_kinds_timeout_fails_the_sweep_goes_on_and_a_longer_limit_finishes_it(
        ray_local, tmp_path, monkeypatch):
    monkeypatch.setitem(DEFAULT_TIMEOUTS_S, "sleep", 2.0)  # the `sleep` kind's limit: 2 s
    slow = sleep("slow", 6.0)
    after = sleep("after", deps={"up": slow})
    other = sleep("other", 0.1)
    summary, store = run(tmp_path, ray_local, [slow, after, other])
    message = "stage 'slow' timed out after 2s (resources.sleep.timeout)"
    assert summary.failed == [("slow", f"matrix.runner.deadline.StageTimeout: {message}")]
    assert summary.blocked == ["after"] and summary.ran == ["other"] and summary.retried == []
    rec = {r.label: r for r in store.stages().values()}["slow"]
    assert rec.status == "failed" and "time.sleep(seconds)" in rec.error  # where it was when stopped
    store.close()

    monkeypatch.setitem(DEFAULT_TIMEOUTS_S, "sleep", 60.0)  # the same stages (same keys), a larger limit
    again, store = run(tmp_path, ray_local, [slow, after, other])
    assert again.ok and sorted(again.ran) == ["after", "slow"] and again.cached == ["other"]
    assert {r.status for r in store.stages().values()} == {"done"}
    assert store.stage(slow.key).result["slept_s"] >= 6.0


@pytest.mark.slow
def test_a_stage_deaf_to_the_signal_is_killed_and_recorded_as_timed_out_not_retried(ray_local, tmp_path):
    deaf = sleep("deaf", 60.0, deaf=True, resources={"cpus": 1, "timeout": 1, "max_retries": 2})
    t = time.monotonic()
    summary, store = run(tmp_path, ray_local, [deaf])
    assert time.monotonic() - t < 60.0  # it did not sleep its 60 s
    (label, line), = summary.failed
    assert label == "deaf" and summary.retried == []
    assert line.startswith("StageTimeout: stage 'deaf' timed out after 1s (resources.sleep.timeout)")
    assert f"did not stop within {format_duration(grace_s(1))} of the limit" in line and "killed" in line
    assert not list((tmp_path / "run" / "artifacts" / ".tmp").glob("*.timed-out"))  # the note was consumed


@pytest.mark.slow
def test_status_shows_a_running_stage_with_its_elapsed_time_and_last_log_line(ray_local, tmp_path):
    from typer.testing import CliRunner

    from matrix.cli import app

    release = tmp_path / "release"
    held = sleep("held", 300.0, until=str(release))
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "spec.yaml").write_text(
        "name: probe\noutput_dir: %s\nbase_models: {tiny: {family: tiny}}\nmethods: [baseline]\n"
        "benchmarks: [{id: pope, synthetic: 4}]\n" % (tmp_path / "run"))
    box = {}

    def drive():  # the driver in a thread (its store connection is its own), `matrix status` here
        store = Store(tmp_path / "run")
        graph = StageGraph(stages={held.key: held}, cells=[])
        box["summary"] = Executor(store, graph, ResourcesSpec(), ray_local).run()
        store.close()

    worker = threading.Thread(target=drive)
    worker.start()
    try:
        probe = Store(tmp_path / "run")
        from matrix.runner.executor import stage_log

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and worker.is_alive():  # until the stage is running and has logged its first line
            rec = probe.stage(held.key)
            log = stage_log(probe.tmp, held.key)
            if rec and rec.status == "running" and log and "sleeping" in log.read_text():
                break
            time.sleep(0.2)
        else:
            pytest.fail("the stage never started")
        before = time.time() - rec.started
        result = CliRunner().invoke(app, ["status", str(tmp_path / "run")])
        after = time.time() - rec.started
    finally:
        release.write_text("go")
        worker.join(timeout=120)
    assert result.exit_code == 0, result.output
    m = re.search(rf"running: held \[{held.key[:12]}\] for (\d+(?:\.\d+)?)s: sleeping 300s or until",
                  result.output.replace("\n", ""))
    assert m, result.output
    assert before - 0.1 <= float(m.group(1)) <= after + 0.1  # printed to 3 digits
    assert box["summary"].ok and box["summary"].ran == ["held"]
    probe.close()
