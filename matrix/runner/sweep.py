"""Running a sweep: lock the run directory, bring the store up to date with the plan, connect to Ray,
execute every stage not done, and record the run with its provenance.

`run(spec, ...)` is what `matrix run` calls (through `matrix.api`); it is safe to stop at any moment
and call again: finished stages are kept, damaged artifacts are computed again, and the stages of a
run that was killed are recovered or redone.
"""
from __future__ import annotations

import platform
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Callable

from matrix.errors import RunError
from matrix.rundir import SPEC_SNAPSHOT, snapshot_spec
from matrix.spec import Spec
from matrix.store import StageRecord, Store
from matrix.runner.plan import Planned, plan


def running_lines(store: Store, now: float | None = None) -> list[str]:
    """`running: LABEL [KEY] for 5m 03s: LAST LOG LINE` per stage the store has as running (the time
    counts from its submission; a stage still waiting for resources has written no log yet)."""
    import time

    from matrix.runner.deadline import format_duration
    from matrix.runner.executor import stage_log

    now = time.time() if now is None else now
    lines = []
    for rec in sorted(store.stages().values(), key=lambda r: r.started or 0):
        if rec.status != "running":
            continue
        log = stage_log(store.tmp, rec.key)
        last = _last_line(log) if log else "(no log yet: waiting for a worker)"
        lines.append(f"running: {rec.label} [{rec.key[:12]}] for {format_duration(max(0.0, now - (rec.started or now)))}"
                     f": {last or '(nothing logged yet)'}")
    return lines


def _last_line(path: Path, tail_bytes: int = 8192, width: int = 200) -> str:
    """The last non-blank line of a log (progress bars redraw with carriage returns: their last state)."""
    import re

    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, 2) - tail_bytes))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)
    lines = [ln.strip() for ln in re.split(r"[\r\n]+", text) if ln.strip()]
    return lines[-1][:width] if lines else ""


def provenance(spec_sha: str) -> dict:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], capture_output=True, text=True, timeout=5,
                                  cwd=Path(__file__).parent).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    from importlib.metadata import PackageNotFoundError, version

    packages = {}
    for name in ("torch", "transformers", "peft", "deepspeed", "ray", "openai", "pydantic"):
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = None
    return {
        "git_sha": git("rev-parse", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain")),
        "host": socket.gethostname(),
        "python": platform.python_version(),
        "packages": packages,
        "spec_sha": spec_sha,
        "argv": sys.argv,
    }


def run(spec: Spec, only: str | None = None, fail_fast: bool = False, rerun: list[str] | None = None,
        address: str | None = None, on_event: Callable | None = None, on_start: Callable | None = None,
        on_note: Callable[[str], None] | None = None):
    """Run every stage of the (selected) grid that is not already done; returns a RunSummary.
    `on_note` gets lines about setup done before the first stage (DeepSpeed's op build)."""
    from matrix.lock import RunLock
    from matrix.runner.cluster import connect, kill_orphans, node_capacities
    from matrix.runner.executor import Executor, RunSummary
    from matrix.runner.interrupt import StopRequests, disarm_native_failure_alarm

    planned = plan(spec, only)
    run_dir = spec.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    # Stop signals (Ctrl-C, SIGTERM, SIGHUP) are recorded from here on and acted on by the executor
    # between two steps; before it starts, they end the run before any stage is submitted.
    with StopRequests() as stops, RunLock(run_dir) as lock:
        if lock.previous and lock.previous.get("ray_pids"):
            kill_orphans(lock.previous["ray_pids"])
        store = Store(run_dir)
        try:
            store.clear_tmp()
            store.forget_running()
            store.close_stale_runs()
            if rerun:
                _reset_for_rerun(store, planned, rerun)
            _drop_damaged(store, planned, on_event or (lambda event, stage, detail: None))
            text, sha = snapshot_spec(spec)
            (run_dir / SPEC_SNAPSHOT).write_text(text)
            records = store.stages()
            if all(records.get(s.key) and records[s.key].status == "done" for s in planned.graph.stages.values()):
                return RunSummary(cached=[s.label for s in planned.graph.stages.values()])
            run_id = store.start_run(" ".join(sys.argv), sha, provenance(sha))
            summary = RunSummary()
            conn = None
            cut = False  # a stop signal caught by Ray's handlers while it started
            if not stops.requested:
                try:
                    conn = connect(address or spec.ray.address, spec.ray.num_cpus, spec.ray.num_gpus)
                    stops.install()  # at once: Ray's start-up replaced the SIGTERM handler with its own
                except RunError:
                    store.finish_run(run_id, "failed")
                    raise
                except SystemExit as e:  # Ray's own SIGTERM handler, active while Ray starts: sys.exit(15)
                    if e.code != signal.SIGTERM:
                        raise
                    _shutdown_ray()
                    stops.signum = signal.SIGTERM
                    conn = None
                    cut = True
                stops.install()  # (after Ray's own SIGTERM handler ended its start-up)
                # Ray's native handler may have caught the signal: no abort 3 s later
                cut = disarm_native_failure_alarm() or cut
            if conn is not None:
                lock.note(ray_pids=conn.pids)
                try:
                    from matrix.runner.shared import write_token

                    executor = Executor(store, planned.graph, spec.resources, node_capacities(), fail_fast, on_event,
                                        run_token=write_token(run_dir))  # stages check they see it
                    if on_start:
                        on_start(planned, store)
                    if not stops.requested:
                        _prebuild_ops(planned, records, on_note or (lambda line: None), lambda: stops.requested)
                    summary = executor.run(stops)
                finally:
                    # Ends the workers of stages still running (embedded Ray stops; a cluster ends this
                    # driver's job and, with it, its tasks).
                    conn.shutdown()
                    lock.note(ray_pids=[])
                if conn.embedded and summary.interrupted:
                    store.clear_tmp()  # the embedded workers are gone: their half-written folders can go too
            if stops.requested:
                summary.interrupted, summary.signal = True, stops.signum
            summary.ray_start_cut = cut
            status = "ok" if summary.ok else ("interrupted" if summary.interrupted else "failed")
            try:
                store.finish_run(run_id, status)
            except (sqlite3.Error, OSError):
                if not summary.store_error:
                    raise
            return summary
        finally:
            store.close()


def _shutdown_ray() -> None:
    """Whatever `ray.init` had reached when a signal cut it short: its core worker may exist although Ray
    does not count as initialised yet (left to the interpreter's exit, it crashed the driver with SIGSEGV).
    `ray.shutdown()` is safe on any state, twice included."""
    import ray

    ray.shutdown()


def _prebuild_ops(planned: Planned, records: dict[str, StageRecord], say: Callable[[str], None],
                  stop: Callable[[], bool] = lambda: False) -> None:
    """DeepSpeed's op, built before any stage starts when a train stage to run needs it (matrix.methods.ops)."""
    from matrix.methods.ops import needs_op, prebuild

    todo = [s for s in planned.graph.stages.values() if not (records.get(s.key) and records[s.key].status == "done")]
    if needs_op(todo):
        prebuild(say, stop=stop)


def _drop_damaged(store: Store, planned: Planned, on_event: Callable) -> list[str]:
    """A stored artifact that no longer matches its manifest (a file deleted, truncated or changed) is not
    done: forget it, remove the folder and let this run compute it again; never read it. Returns the
    labels of the stages dropped, each also announced as a `damaged` event naming what is wrong."""
    from matrix.manifest import problems

    records = store.stages()
    dropped = []
    for stage in planned.graph.ordered():
        rec = records.get(stage.key)
        folder = store.artifact_dir(stage.key, stage.kind)
        if not (rec and rec.status == "done") and not folder.exists():
            continue
        found = problems(folder)
        if not found:
            continue
        on_event("damaged", stage, f"{folder}: {'; '.join(found[:3])}"
                                   f"{f' (and {len(found) - 3} more)' if len(found) > 3 else ''}; computing it again")
        store.reset([stage.key])
        store.remove_artifact(stage.key, stage.kind)
        dropped.append(stage.label)
    return dropped


def _reset_for_rerun(store: Store, planned: Planned, rerun: list[str]) -> None:
    """Forget the chosen stages and everything downstream of them, artifacts included."""
    records = store.stages()
    chosen: set[str] = set()
    for stage in planned.graph.ordered():  # upstream first, so downstream sees its deps' verdict
        rec = records.get(stage.key)
        picked = rec is not None and (("failed" in rerun and rec.status == "failed") or stage.kind in rerun)
        if picked or any(d.key in chosen for d in stage.deps.values()):
            chosen.add(stage.key)
    stages = [s for s in planned.graph.stages.values() if s.key in chosen]
    store.reset([s.key for s in stages])
    for s in stages:
        store.remove_artifact(s.key, s.kind)
