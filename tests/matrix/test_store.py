"""The store and the run lock: atomic records, recovery of what a dead driver left behind."""
import multiprocessing
import os
import signal
import time

import pytest

from matrix.errors import UserError
from matrix.lock import RunLock
from matrix.store import Store


def test_done_stage_and_metrics_recorded_together(tmp_path):
    store = Store(tmp_path)
    store.mark_running("k1", "evaluate", "evaluate pope x", {"a": 1}, {}, "host")
    store.mark_done("k1", {"metrics": {"f1": 80.5}}, 1.5, 100.0, metrics={"f1": 80.5, "accuracy": 81.0}, benchmark="pope")
    rec = store.stage("k1")
    assert rec.status == "done" and rec.attempts == 1 and rec.wall_s == 1.5
    assert sorted(m[2:] for m in store.metrics()) == [("accuracy", 81.0), ("f1", 80.5)]


def test_failed_stage_keeps_traceback_and_retry_counts_attempts(tmp_path):
    store = Store(tmp_path)
    store.mark_running("k", "train", "train x", {}, {}, "h")
    store.mark_failed("k", "Traceback (most recent call last):\n  ...\nValueError: boom\n")
    assert store.stage("k").error_line == "ValueError: boom"
    store.mark_running("k", "train", "train x", {}, {}, "h")
    assert store.stage("k").attempts == 2 and store.stage("k").error is None


def test_forget_running_and_clear_tmp(tmp_path):
    store = Store(tmp_path)
    store.mark_running("k", "train", "t", {}, {}, "h")
    (store.tmp / "abc-123").mkdir(parents=True)
    assert store.forget_running() == 1 and store.stage("k").status == "interrupted"
    store.mark_running("k", "train", "t", {}, {}, "h")  # resumed: the second start of the same stage
    assert store.stage("k").attempts == 2
    assert store.clear_tmp() == 1 and not any(store.tmp.iterdir())


def test_stale_runs_rows_are_marked_killed(tmp_path):
    store = Store(tmp_path)
    dead = store.start_run("matrix run a.yaml", "sha", {})  # a driver killed before it could finish the row
    finished = store.start_run("matrix run a.yaml", "sha", {})
    store.finish_run(finished, "interrupted")
    assert store.close_stale_runs() == 1
    assert {r["id"]: r["status"] for r in store.runs()} == {dead: "killed", finished: "interrupted"}


def test_ensure_adds_a_row_once_and_keeps_an_existing_count(tmp_path):
    store = Store(tmp_path)
    store.mark_running("k", "train", "t", {}, {}, "h")
    store.mark_running("k", "train", "t", {}, {}, "h")
    store.ensure("k", "train", "t", {}, {}, 1)
    store.ensure("new", "train", "n", {}, {}, 0)
    assert store.stage("k").attempts == 2 and store.stage("k").status == "running"
    assert store.stage("new").attempts == 0


def _hold_lock(run_dir, ready):
    RunLock(run_dir).acquire()
    ready.set()
    time.sleep(60)


def test_lock_refuses_a_live_holder_and_takes_over_from_a_dead_one(tmp_path):
    ready = multiprocessing.Event()
    holder = multiprocessing.Process(target=_hold_lock, args=(tmp_path, ready))
    holder.start()
    assert ready.wait(10)
    with pytest.raises(UserError, match=f"pid {holder.pid}"):
        RunLock(tmp_path).acquire()
    os.kill(holder.pid, signal.SIGKILL)
    holder.join()
    lock = RunLock(tmp_path).acquire()
    assert lock.previous["pid"] == holder.pid  # the dead holder is known, and its lock was taken over
    lock.release()


def test_stores_opened_at_once_on_a_new_run_directory_all_open(tmp_path):
    """`matrix status` opening the store while `matrix run` creates it: setting WAL mode on a new file
    needs the whole database, and SQLite answers "database is locked" at once (no busy wait) to the
    connection that loses; seen in a fresh clone's `make test`. Every opener must get a working store."""
    import threading

    for attempt in range(40):
        run_dir = tmp_path / f"run{attempt}"
        gate = threading.Barrier(4)
        errors: list[BaseException] = []

        def open_store() -> None:
            gate.wait()
            try:
                store = Store(run_dir)
                store.stages()
                store.close()
            except BaseException as e:  # noqa: BLE001 - collected and asserted below
                errors.append(e)

        threads = [threading.Thread(target=open_store) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == [], f"attempt {attempt}: {errors}"
