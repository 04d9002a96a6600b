"""The executor on embedded Ray with diagnostic `sleep` stages: worker deaths retried with backoff,
stage exceptions final, independent stages in parallel, --fail-fast, an unsatisfiable request."""
from __future__ import annotations

import sqlite3

import pytest

from matrix.spec import ResourcesSpec
from matrix.store import Store
from matrix.runner import executor as executor_mod
from matrix.runner.executor import Executor, backoff_s, retryable
from matrix.runner.graph import StageGraph
from matrix.runner.stage import Stage
from tests.runner.conftest import sleep_stage as sleep

pytestmark = pytest.mark.slow


def run(tmp_path, nodes, stages, **kw):
    store = Store(tmp_path / "run")
    graph = StageGraph(stages={s.key: s for s in stages}, cells=[])
    events: list[tuple[str, str, str]] = []
    summary = Executor(store, graph, ResourcesSpec(), nodes, on_event=lambda e, s, d: events.append((e, s.label, d)),
                       **kw).run()
    return summary, store, events


def test_backoff_doubles_up_to_a_cap():
    assert [backoff_s(a) for a in (1, 2, 3, 4)] == [2.0, 4.0, 8.0, 16.0]
    assert backoff_s(30) == 60.0


def test_a_killed_worker_is_retried_after_a_backoff_and_the_sweep_completes(ray_local, tmp_path, monkeypatch):
    monkeypatch.setattr(executor_mod, "BACKOFF_BASE_S", 0.5)
    marker = tmp_path / "died-once"
    victim = sleep("victim", 0.1, die_once=str(marker), resources={"cpus": 1, "max_retries": 2})
    after = sleep("after", 0.0, deps={"up": victim})
    summary, store, events = run(tmp_path, ray_local, [victim, after])
    assert summary.ok and summary.retried == ["victim"] and set(summary.ran) == {"victim", "after"}
    assert marker.exists()  # the first attempt really died
    retry = [e for e in events if e[0] == "retrying"]
    assert len(retry) == 1 and "attempt 2 in" in retry[0][2]
    records = {r.label: r for r in store.stages().values()}
    assert records["victim"].status == "done" and records["after"].status == "done"
    assert records["victim"].result["pid"] != int(marker.read_text())  # a new worker did it
    assert records["victim"].attempts == 2 and records["after"].attempts == 1  # how often each started


def test_without_retries_a_dead_worker_is_a_recorded_failure(ray_local, tmp_path):
    victim = sleep("victim", die_once=str(tmp_path / "m"), resources={"cpus": 1, "max_retries": 0})
    after = sleep("after", deps={"up": victim})
    summary, store, _ = run(tmp_path, ray_local, [victim, after])
    assert [label for label, _ in summary.failed] == ["victim"] and summary.blocked == ["after"]
    rec = {r.label: r for r in store.stages().values()}["victim"]
    assert rec.status == "failed" and ("died" in rec.error.lower() or "crash" in rec.error.lower())
    store.close()
    # The store is consistent: running the same graph again (the worker no longer dies) completes it.
    again, store, _ = run(tmp_path, ray_local, [victim, after])
    assert again.ok and set(again.ran) == {"victim", "after"}
    assert {r.status for r in store.stages().values()} == {"done"}


def test_an_exception_in_the_stage_is_final_even_with_retries(ray_local, tmp_path):
    bad = sleep("bad", fail="missing file /nowhere.json", resources={"cpus": 1, "max_retries": 3})
    summary, store, events = run(tmp_path, ray_local, [bad])
    assert not [e for e in events if e[0] == "retrying"]  # no backoff waited: not retried
    assert summary.retried == [] and summary.failed[0][0] == "bad" and store.stages()[bad.key].attempts == 1
    rec = next(iter(store.stages().values()))
    assert "RuntimeError: missing file /nowhere.json" in rec.error and "Traceback" in rec.error


def test_independent_stages_run_in_parallel(ray_local, tmp_path):
    stages = [sleep(f"s{i}", 0.5) for i in range(4)]  # 2 CPUs, one each
    summary, store, events = run(tmp_path, ray_local, stages)
    assert summary.ok and len(summary.ran) == 4
    # The executor's part, judged by its own events rather than the clock (a loaded machine starts Ray's
    # workers late): every ready stage is submitted before it waits for any result.
    kinds = [e[0] for e in events]
    assert kinds.index("done") == 4 and kinds[:4] == ["started"] * 4
    # Ray's part: never more at once than the 2 CPUs allow (the stages' own clocks).
    spans = [(r.result["started"], r.result["ended"]) for r in store.stages().values()]
    assert max(sum(a <= t < b for a, b in spans) for t, _ in spans) <= 2, spans


def test_fail_fast_stops_scheduling_and_leaves_the_rest_pending(ray_local, tmp_path):
    bad = sleep("bad", fail="boom")
    later = [sleep(f"later{i}", deps={"up": sleep(f"gate{i}", 0.5)}) for i in range(2)]
    summary, store, _ = run(tmp_path, ray_local, [bad, *later], fail_fast=True)
    assert summary.failed[0][0] == "bad" and not summary.ok
    statuses = {r.label: r.status for r in store.stages().values()}
    assert "running" not in statuses.values()  # nothing left half-recorded: a re-run continues


def test_an_unsatisfiable_request_fails_at_once_naming_what_is_missing(ray_local, tmp_path):
    greedy = sleep("greedy", resources={"cpus": 1, "gpus": 8})
    summary, store, _ = run(tmp_path, ray_local, [greedy])
    (label, error), = summary.failed
    assert store.stages()[greedy.key].attempts == 0  # at once: refused before it was ever submitted
    assert label == "greedy" and "asks for 1 CPU, 8 GPU" in error and "0 GPU" in error


def test_a_store_that_cannot_be_written_stops_the_sweep_with_a_clear_error(ray_local, tmp_path, monkeypatch):
    """A full disk under the store: no traceback, scheduling stops, no stage is left `running`."""
    first = sleep("first")
    later = sleep("later", deps={"up": first})
    real_done = Store.mark_done

    def full(self, key, *a, **kw):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(Store, "mark_done", full)
    summary, store, events = run(tmp_path, ray_local, [first, later])
    assert not summary.ok and "database or disk is full" in summary.store_error
    assert str(store.db_path) in summary.store_error and "MiB free" in summary.store_error
    assert [e[1] for e in events if e[0] == "started"] == ["first"]  # nothing scheduled after it
    assert {r.label: r.status for r in store.stages().values()} == {"first": "interrupted"}
    store.close()
    monkeypatch.setattr(Store, "mark_done", real_done)
    again, store, _ = run(tmp_path, ray_local, [first, later])  # space freed: the next run completes
    assert again.ok and {r.status for r in store.stages().values()} == {"done"}


def test_a_stage_that_runs_out_of_disk_stops_scheduling(ray_local, tmp_path):
    # Estimated longer than the gates, so it is submitted first (matrix/runner/priority.py orders by estimates).
    full = sleep("full", fail="[Errno 28] No space left on device: '/run/artifacts/.tmp/x'", estimate=1.0)
    later = [sleep(f"later{i}", deps={"up": sleep(f"gate{i}", 0.5)}) for i in range(2)]
    summary, store, events = run(tmp_path, ray_local, [full, *later])
    assert "ran out of space" in summary.store_error and summary.failed[0][0] == "full"
    assert not any(e[1].startswith("later") for e in events if e[0] == "started")
    assert "running" not in {r.status for r in store.stages().values()}


def test_retryable_classifies_machinery_failures_only():
    import ray.exceptions as rex

    assert retryable(rex.WorkerCrashedError())
    assert not retryable(ValueError("bad value"))
