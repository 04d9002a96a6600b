"""Runs a stage graph on Ray and records every outcome in the store.

The driver submits a stage as a Ray task once all its upstream stages are done, with the resources
the spec gives its kind, in the order and at the moment matrix/runner/priority.py decides (critical work
first, GPUs reserved for a big stage and filled around it); Ray places it. Results come back small
(the artifact stays on disk) and the driver records each in one transaction. A stage that raises is
recorded as failed with its traceback and everything not downstream of it keeps going. A request no
node could ever satisfy fails the stage at once instead of waiting forever in Ray's queue.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sqlite3
import sys
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from matrix import memory
from matrix.spec import ResourceSpec, ResourcesSpec
from matrix.store import Store
from matrix.runner.graph import StageGraph
from matrix.runner.interrupt import StopRequests
from matrix.runner.priority import Admission
from matrix.runner.stage import KINDS, Stage, StageContext, StageInput


@dataclass
class RunSummary:
    ran: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (label, first line of the error)
    blocked: list[str] = field(default_factory=list)  # not run because something upstream failed
    retried: list[str] = field(default_factory=list)  # a label per retry after a worker/node failure
    interrupted: bool = False
    signal: int | None = None  # the stop signal, when one interrupted the run
    store_error: str | None = None  # why the store could not be written (the sweep stopped there)
    # A stop signal cut Ray's start-up short (its handlers caught it): Ray's native state is half made and
    # crashes the interpreter's final clean-up, so the process ends without it (`matrix run` does).
    ray_start_cut: bool = False

    @property
    def ok(self) -> bool:
        return not self.failed and not self.blocked and not self.interrupted and not self.store_error


class StoreWriteError(Exception):
    """The run's store (or the disk under the run directory) could not be written: the sweep stops."""

    def __init__(self, store: Store, what: str):
        usage = ""
        try:
            free = shutil.disk_usage(store.run_dir).free
            usage = f"; {free / 2**20:.1f} MiB free on the filesystem of {store.run_dir}"
        except OSError:
            pass
        super().__init__(f"cannot write the run's store {store.db_path}: {what}{usage}. Free space (or fix the "
                         f"filesystem) and run `matrix run` again: finished stages are kept")


DISK_FULL = re.compile(r"No space left on device|database or disk is full|\[Errno 28\]")


def disk_full(error_text: str) -> bool:
    return bool(DISK_FULL.search(error_text))


class StageError(Exception):
    """A stage raised: carries the worker-side traceback text, which is what the store records."""

    def __init__(self, traceback_text: str):
        super().__init__(traceback_text)
        self.traceback_text = traceback_text


def execute_stage(kind: str, key: str, label: str, params: dict, inputs: dict[str, tuple[str, dict]],
                  final_dir: str, tmp_root: str, run_dir: str, num_cpus: float, num_gpus: float,
                  run_token: str | None = None, timeout_s: float | None = None) -> dict[str, Any]:
    """Body of the Ray task: compute into a private temporary folder, then rename it into place. `params`
    are the stage's, run-time settings included (its kind's Params; `StageKind.execute` types them).
    `run_token` is what the driver wrote into the run directory (matrix.runner.shared: a node that cannot see it
    fails at once). Past `timeout_s` the stage raises StageError 'timed out after ...' (matrix.runner.deadline)."""
    import contextlib

    from matrix.runner.deadline import StageTimeout, deadline, timeout_message, timeout_note
    from matrix.runner.shared import run_dir_problem

    problem = run_dir_problem(run_dir, run_token)
    if problem:  # before anything is written: on a node without the shared run directory, fail at once
        raise StageError(problem)
    threads = max(1, int(num_cpus))
    # torch sizes its thread pool from OMP_NUM_THREADS when it is first imported; a worker that imported
    # it for an earlier stage is told directly. Not importing it here spares stages that never use it
    # (data, scoring) its ~2.5 s import in every fresh worker process.
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    final = Path(final_dir)
    tmp = Path(tmp_root) / f"{key[:16]}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    ctx = StageContext(Path(run_dir), num_cpus, num_gpus, key, label)
    memory.reset()  # this stage's peak, not that of a stage this worker ran before
    start = time.time()
    # Line-buffered: `matrix status` shows a running stage's last line (stage_log).
    with open(tmp / "stage.log", "w", buffering=1) as log, contextlib.redirect_stdout(log), \
            contextlib.redirect_stderr(log):
        try:
            with deadline(timeout_s, timeout_message(label, kind, timeout_s or 0), timeout_note(tmp_root, key)):
                result = KINDS.get(kind)().execute(params, {n: StageInput(Path(d), r) for n, (d, r) in inputs.items()},
                                                   tmp, ctx)
        except (Exception, StageTimeout):  # noqa: BLE001 - re-raised with the traceback as text (picklable)
            text = traceback.format_exc()
            log.write(text)
            raise StageError(text) from None
    wall = time.time() - start
    from matrix.manifest import build

    payload = {"result": result, "wall_s": wall, "peak_mem_mb": memory.peak_mb(), "host": socket.gethostname(),
               "manifest": build(tmp)}  # what the folder holds: checked before the artifact is used again
    (tmp / "result.json").write_text(json.dumps(payload, default=str))
    final.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(tmp, final)
    except OSError:
        # Another worker finished the same stage first (a driver died and its orphan completed it).
        shutil.rmtree(tmp, ignore_errors=True)
        payload = json.loads((final / "result.json").read_text())
    return payload


def stage_log(tmp_root: Path, key: str) -> Path | None:
    """The log of a stage's attempt under way (in its temporary folder), the newest if several."""
    logs = [p for p in Path(tmp_root).glob(f"{key[:16]}-*/stage.log") if p.is_file()]
    return max(logs, key=lambda p: p.stat().st_mtime) if logs else None


def fits(request: ResourceSpec, nodes: list[dict[str, float]]) -> bool:
    for node in nodes:
        if node.get("CPU", 0) + 1e-9 >= request.cpus and node.get("GPU", 0) + 1e-9 >= request.gpus:
            if request.memory_gb is None or node.get("memory", 0) >= request.memory_gb * 2**30:
                return True
    return False


def describe_nodes(nodes: list[dict[str, float]]) -> str:
    if not nodes:
        return "no alive nodes"
    parts = []
    for n in nodes:
        parts.append(f"{n.get('CPU', 0):g} CPU, {n.get('GPU', 0):g} GPU, {n.get('memory', 0) / 2**30:.1f} GiB")
    return "; ".join(parts)


class Executor:
    def __init__(self, store: Store, graph: StageGraph, resources: ResourcesSpec, nodes: list[dict[str, float]],
                 fail_fast: bool = False, on_event: Callable[[str, Stage, str], None] | None = None,
                 run_token: str | None = None, admission: Callable[..., Any] = Admission):
        self.store = store
        self.run_token = run_token  # every stage checks it sees this token in the run directory
        self.graph = graph
        self.resources = resources
        self.nodes = nodes
        self.fail_fast = fail_fast
        self.on_event = on_event or (lambda event, stage, detail: None)
        # What to submit of the ready stages, in what order, and on several GPU nodes where (its `where`)
        # (matrix/runner/priority.py); a factory of (graph, the cluster's GPUs, GPUs per GPU node),
        # replaceable to measure another policy (scripts/bench_scheduling.py).
        self.admission = admission

    def _request(self, stage: Stage) -> ResourceSpec:
        if "resources" in stage.params:  # diagnostic stages (kind `sleep`) carry their own request
            return ResourceSpec(**stage.params["resources"])
        request = self.resources.for_kind(stage.kind)
        if stage.kind == "evaluate" and stage.params.get("shards"):  # scores shards' answers: no model, no GPU
            return ResourceSpec(cpus=min(1.0, request.cpus), max_retries=request.max_retries,
                                timeout=request.timeout)
        return request

    def _final_dir(self, stage: Stage) -> Path:
        return self.store.artifact_dir(stage.key, stage.kind)

    def _inputs(self, stage: Stage, records) -> dict[str, tuple[str, dict]]:
        return {name: (str(self._final_dir(dep)), records[dep.key].result) for name, dep in stage.deps.items()}

    def _adopt(self, stage: Stage) -> bool:
        """A stage whose artifact is complete but unrecorded (driver killed in between) is done."""
        result_file = self._final_dir(stage) / "result.json"
        if not result_file.exists():
            return False
        payload = json.loads(result_file.read_text())
        self._record(stage, payload)
        return True

    def _write(self, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        """A store write; a failure (disk full, read-only, I/O error) stops the sweep with a clear message."""
        try:
            return fn(*args, **kwargs)
        except (sqlite3.Error, OSError) as e:
            raise StoreWriteError(self.store, f"{type(e).__name__}: {e}") from None

    def _ensure_row(self, stage: Stage, attempts: int) -> None:
        self._write(self.store.ensure, stage.key, stage.kind, stage.label, stage.params,
                    {n: d.key for n, d in stage.deps.items()}, attempts)

    def _record(self, stage: Stage, payload: dict[str, Any]) -> None:
        result = payload.get("result", {})
        self._ensure_row(stage, 1)  # adopted: it ran (at least once) under a driver that died before recording
        self._write(self.store.mark_done, stage.key, result, payload.get("wall_s"), payload.get("peak_mem_mb"),
                    metrics=result.get("metrics") if stage.kind == "evaluate" else None,
                    benchmark=stage.params.get("benchmark"), host=payload.get("host"))

    def run(self, stops: StopRequests | None = None) -> RunSummary:
        """Run what is pending until everything is done, failed or blocked, or until `stops` records a
        stop signal (or the store cannot be written): then stop scheduling, mark the stages still running
        `interrupted` and return. Running Ray tasks are left to the caller's `ray.shutdown()`, which
        ends their workers: cancelling them here raced their replies inside Ray (matrix/runner/interrupt.py)."""
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        stops = stops or StopRequests()  # not installed: never requested
        summary = RunSummary()
        remote = ray.remote(execute_stage)
        # A fresh worker process per run (max_calls is not an .options()) for kinds that hold process-wide
        # state, and for every stage that holds a GPU (StageKind.fresh_worker): Ray gives a GPU task a fresh
        # worker only when the decorator itself asks for GPUs (ray/remote_function.py, ray-project/ray#30061),
        # not when `.options(num_gpus=...)` does, as here.
        remote_fresh = ray.remote(max_calls=1)(execute_stage)
        order = self.graph.ordered()
        records = self.store.stages()
        pending: dict[str, Stage] = {}
        for stage in order:
            rec = records.get(stage.key)
            if rec and rec.status == "done":
                summary.cached.append(stage.label)
            elif self._adopt(stage):
                summary.adopted.append(stage.label)
                self.on_event("adopted", stage, "")
            else:
                pending[stage.key] = stage
        running: dict[Any, Stage] = {}
        failed_keys: set[str] = set()
        stop = False
        attempts: dict[str, int] = {}  # key -> submissions in this run (retries count here)
        retry_at: dict[str, tuple[float, Stage]] = {}  # key -> (monotonic time to resubmit, stage)
        # GPUs of each GPU node by Ray's id for it: with several, the policy places GPU stages per node.
        gpu_nodes = {n["NodeID"]: n["Resources"]["GPU"] for n in ray.nodes()
                     if n.get("Alive") and n.get("Resources", {}).get("GPU")}
        policy = self.admission(self.graph, sum(n.get("GPU", 0) for n in self.nodes), gpu_nodes)
        where: dict[str, str] = policy.where  # stage key -> the node the policy gave it (several GPU nodes)
        submitted_at: dict[str, float] = {}

        def submit(stage: Stage) -> Any:
            req = self._request(stage)
            # Retries are the driver's (with backoff), not Ray's: Ray would resubmit at once.
            options: dict[str, Any] = {"num_cpus": req.cpus, "num_gpus": req.gpus, "max_retries": 0}
            if req.memory_gb:
                options["memory"] = int(req.memory_gb * 2**30)
            if stage.key in where:  # soft: elsewhere if that node is gone
                options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(where[stage.key], soft=True)
            attempts[stage.key] = attempts.get(stage.key, 0) + 1
            submitted_at[stage.key] = time.monotonic()
            # One store attempt per start, retries and resumed runs included (the row's count survives them).
            self._write(self.store.mark_running, stage.key, stage.kind, stage.label, stage.params,
                        {n: d.key for n, d in stage.deps.items()}, "")
            fn = remote_fresh if KINDS.get(stage.kind).fresh_worker(stage.params, req.gpus) else remote
            return fn.options(**options).remote(
                stage.kind, stage.key, stage.label, stage.params, self._inputs(stage, records),
                str(self._final_dir(stage)), str(self.store.tmp), str(self.store.run_dir), req.cpus, req.gpus,
                self.run_token, req.limit_s(stage.kind))

        try:
            while (pending or running or retry_at) and not stops.requested:
                if stop and retry_at:  # --fail-fast: retries not yet due are not run either
                    self._write(self.store.reset, list(retry_at))
                    summary.blocked += [stage.label for _, stage in retry_at.values()]
                    retry_at.clear()
                records = self.store.stages()
                ready: list[tuple[Stage, float]] = []
                for key in list(pending):
                    stage = pending[key]
                    deps = [d.key for d in stage.deps.values()]
                    if any(d in failed_keys for d in deps):
                        failed_keys.add(key)
                        summary.blocked.append(stage.label)
                        del pending[key]
                        self.on_event("blocked", stage, "")
                        continue
                    if stop or stops.requested or not all(records.get(d) and records[d].status == "done" for d in deps):
                        continue
                    req = self._request(stage)
                    if not fits(req, self.nodes):
                        del pending[key]
                        msg = (f"ResourceError: stage '{stage.label}' asks for {req.cpus:g} CPU, {req.gpus:g} GPU"
                               f"{f', {req.memory_gb:g} GiB' if req.memory_gb else ''} on one node, but the cluster "
                               f"has: {describe_nodes(self.nodes)}. Lower resources.{stage.kind} in the spec "
                               f"or run on a cluster that has them.")
                        self._fail(stage, msg, summary, failed_keys)
                        stop = stop or self.fail_fast
                        continue
                    ready.append((stage, req.gpus))
                busy = [(s, self._request(s).gpus, submitted_at[s.key]) for s in running.values()]
                admitted = [] if stop or stops.requested or not ready else policy.admit(ready, busy, time.monotonic())
                for stage in admitted:
                    del pending[stage.key]
                    running[submit(stage)] = stage
                    self.on_event("started", stage, "")
                now = time.monotonic()
                for key, (when, stage) in list(retry_at.items()):
                    if when <= now and not stop and not stops.requested:
                        del retry_at[key]
                        running[submit(stage)] = stage
                        self.on_event("started", stage, f"attempt {attempts[key]}")
                if not running and retry_at and not stop:
                    # In short slices, so that a stop request is seen within one.
                    time.sleep(min(0.5, max(0.0, min(w for w, _ in retry_at.values()) - time.monotonic())))
                    continue
                if not running:
                    if pending and (stop or not any(self._ready(s, records) for s in pending.values())):
                        for stage in pending.values():
                            summary.blocked.append(stage.label)
                        break
                    continue
                wait_s = 1.0 if not retry_at else max(0.01, min(1.0, min(w for w, _ in retry_at.values()) - time.monotonic()))
                done, _ = ray.wait(list(running), num_returns=1, timeout=wait_s)
                if stops.requested:
                    break  # a stage finished meanwhile has its artifact in place: the next run adopts it
                for ref in done:
                    stage = running.pop(ref)
                    try:
                        payload = ray.get(ref)
                    except Exception as e:  # noqa: BLE001 - any stage failure is recorded, not raised
                        timed_out = self._timed_out(stage, e)
                        if timed_out:  # killed at its limit: a timeout, not a dead worker to retry
                            self._fail(stage, timed_out, summary, failed_keys)
                            stop = stop or self.fail_fast
                            continue
                        allowed = self._request(stage).max_retries
                        if retryable(e) and attempts[stage.key] <= allowed and not stop:
                            delay = backoff_s(attempts[stage.key])
                            retry_at[stage.key] = (time.monotonic() + delay, stage)
                            summary.retried.append(stage.label)
                            self.on_event("retrying", stage, f"{_error_text(e).splitlines()[0][:120]}; "
                                                             f"attempt {attempts[stage.key] + 1} in {delay:.0f}s")
                            continue
                        text = _error_text(e)
                        self._fail(stage, text, summary, failed_keys)
                        stop = stop or self.fail_fast
                        if disk_full(text):
                            raise StoreWriteError(self.store, f"stage '{stage.label}' ran out of space") from None
                        continue
                    self._record(stage, payload)
                    summary.ran.append(stage.label)
                    self.on_event("done", stage, f"{payload.get('wall_s', 0):.1f}s")
        except KeyboardInterrupt:  # asked twice, or no handler installed (the API called from a thread)
            summary.interrupted = True
        except StoreWriteError as e:
            summary.store_error = str(e)
        if stops.requested:
            summary.interrupted = True
            summary.signal = stops.signum
        if summary.interrupted or summary.store_error:
            # Stages still running were never recorded done: mark them interrupted (their attempt count is
            # kept). All of them, not only the submitted ones: a result's writes may have been cut short.
            try:
                self.store.forget_running()
            except (sqlite3.Error, OSError):
                pass  # the store is what failed; the next run (holding the run lock) does this first
        return summary

    def _timed_out(self, stage: Stage, exc: BaseException) -> str:
        """The message a worker killed at its time limit left (matrix.runner.deadline), else ''."""
        from matrix.runner.deadline import timeout_note

        note = timeout_note(self.store.tmp, stage.key)
        if not (retryable(exc) and note.exists()):
            return ""
        text = note.read_text().strip()
        note.unlink()  # a later attempt's own death is its own
        return text

    @staticmethod
    def _ready(stage: Stage, records) -> bool:
        return all(records.get(d.key) and records[d.key].status == "done" for d in stage.deps.values())

    def _fail(self, stage: Stage, error: str, summary: RunSummary, failed_keys: set[str]) -> None:
        self._ensure_row(stage, 0)  # refused before it started (no node fits it): no attempt
        self._write(self.store.mark_failed, stage.key, error)
        failed_keys.add(stage.key)
        last = [ln for ln in error.strip().splitlines() if ln.strip()]
        summary.failed.append((stage.label, last[-1] if last else error))
        self.on_event("failed", stage, last[-1] if last else error)


BACKOFF_BASE_S = 2.0
BACKOFF_CAP_S = 60.0


def backoff_s(attempt: int) -> float:
    """Seconds before resubmitting after failed attempt number `attempt` (1-based): 2, 4, 8... up to 60."""
    return min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (attempt - 1))


def retryable(exc: BaseException) -> bool:
    """A failure of the machinery (the worker process died, e.g. killed for memory; its node died) is
    worth another attempt; an exception the stage itself raised (a bad value, a missing file) is final:
    running it again would raise it again."""
    import ray.exceptions as rex

    if isinstance(getattr(exc, "cause", None), StageError) or isinstance(exc, StageError):
        return False
    kinds = tuple(getattr(rex, n) for n in ("WorkerCrashedError", "OutOfMemoryError", "NodeDiedError",
                                            "LocalRayletDiedError", "RaySystemError", "ObjectLostError")
                  if hasattr(rex, n))
    return isinstance(exc, kinds)


def _error_text(exc: BaseException) -> str:
    """The stage's own traceback when it raised; else Ray's description (worker died, cancelled...)."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, StageError):
        return cause.traceback_text
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))  # Ray colours its messages
    return text.strip() or "".join(traceback.format_exception(exc))
