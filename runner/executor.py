"""Runs a stage graph on Ray and records every outcome in the store.

The driver submits a stage as a Ray task once all its upstream stages are done, with the resources
the spec gives its kind; Ray places it. Results come back small (the artifact stays on disk) and the
driver records each in one transaction. A stage that raises is recorded as failed with its traceback
and everything not downstream of it keeps going. A request no node could ever satisfy fails the stage
at once instead of waiting forever in Ray's queue.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from matrix.spec import ResourceSpec, ResourcesSpec
from matrix.store import Store
from runner.graph import StageGraph
from runner.stage import KINDS, Stage, StageContext, StageInput


@dataclass
class RunSummary:
    ran: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (label, first line of the error)
    blocked: list[str] = field(default_factory=list)  # not run because something upstream failed
    retried: list[str] = field(default_factory=list)  # a label per retry after a worker/node failure
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return not self.failed and not self.blocked and not self.interrupted


class StageError(Exception):
    """A stage raised: carries the worker-side traceback text, which is what the store records."""

    def __init__(self, traceback_text: str):
        super().__init__(traceback_text)
        self.traceback_text = traceback_text


def _peak_memory_mb() -> float:
    try:
        import torch

        if torch.cuda.is_available() and torch.cuda.max_memory_allocated() > 0:
            return torch.cuda.max_memory_allocated() / 2**20
    except ImportError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def execute_stage(kind: str, key: str, label: str, params: dict, inputs: dict[str, tuple[str, dict]],
                  final_dir: str, tmp_root: str, run_dir: str, num_cpus: float, num_gpus: float) -> dict[str, Any]:
    """Body of the Ray task: compute into a private temporary folder, then rename it into place. `params`
    are the stage's, run-time settings included (its kind's Params; `StageKind.execute` types them)."""
    import contextlib

    threads = max(1, int(num_cpus))
    os.environ["OMP_NUM_THREADS"] = str(threads)
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        pass
    final = Path(final_dir)
    tmp = Path(tmp_root) / f"{key[:16]}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    ctx = StageContext(Path(run_dir), num_cpus, num_gpus, key, label)
    start = time.time()
    with open(tmp / "stage.log", "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        try:
            result = KINDS.get(kind)().execute(params, {n: StageInput(Path(d), r) for n, (d, r) in inputs.items()},
                                               tmp, ctx)
        except Exception:  # noqa: BLE001 - re-raised with the traceback as text (picklable, recordable)
            text = traceback.format_exc()
            log.write(text)
            raise StageError(text) from None
    wall = time.time() - start
    payload = {"result": result, "wall_s": wall, "peak_mem_mb": _peak_memory_mb(), "host": socket.gethostname()}
    (tmp / "result.json").write_text(json.dumps(payload, default=str))
    final.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(tmp, final)
    except OSError:
        # Another worker finished the same stage first (a driver died and its orphan completed it).
        shutil.rmtree(tmp, ignore_errors=True)
        payload = json.loads((final / "result.json").read_text())
    return payload


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
                 fail_fast: bool = False, on_event: Callable[[str, Stage, str], None] | None = None):
        self.store = store
        self.graph = graph
        self.resources = resources
        self.nodes = nodes
        self.fail_fast = fail_fast
        self.on_event = on_event or (lambda event, stage, detail: None)

    def _request(self, stage: Stage) -> ResourceSpec:
        if "resources" in stage.params:  # diagnostic stages (kind `sleep`) carry their own request
            return ResourceSpec(**stage.params["resources"])
        request = self.resources.for_kind(stage.kind)
        if stage.kind == "evaluate" and stage.params.get("shards"):  # scores shards' answers: no model, no GPU
            return ResourceSpec(cpus=min(1.0, request.cpus), max_retries=request.max_retries)
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

    def _record(self, stage: Stage, payload: dict[str, Any]) -> None:
        result = payload.get("result", {})
        self.store.mark_running(stage.key, stage.kind, stage.label, stage.params,
                                {n: d.key for n, d in stage.deps.items()}, payload.get("host", ""))
        self.store.mark_done(stage.key, result, payload.get("wall_s"), payload.get("peak_mem_mb"),
                             metrics=result.get("metrics") if stage.kind == "evaluate" else None,
                             benchmark=stage.params.get("benchmark"))

    def run(self) -> RunSummary:
        import ray

        summary = RunSummary()
        remote = ray.remote(execute_stage)
        # A fresh worker process per run for kinds that hold process-wide state (max_calls is not an .options()).
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
        attempts: dict[str, int] = {}  # key -> submissions so far
        retry_at: dict[str, tuple[float, Stage]] = {}  # key -> (monotonic time to resubmit, stage)

        def submit(stage: Stage, records) -> Any:
            req = self._request(stage)
            # Retries are the driver's (with backoff), not Ray's: Ray would resubmit at once.
            options: dict[str, Any] = {"num_cpus": req.cpus, "num_gpus": req.gpus, "max_retries": 0}
            if req.memory_gb:
                options["memory"] = int(req.memory_gb * 2**30)
            attempts[stage.key] = attempts.get(stage.key, 0) + 1
            fn = remote_fresh if KINDS.get(stage.kind).FRESH_PROCESS else remote
            return fn.options(**options).remote(
                stage.kind, stage.key, stage.label, stage.params, self._inputs(stage, records),
                str(self._final_dir(stage)), str(self.store.tmp), str(self.store.run_dir), req.cpus, req.gpus)

        try:
            while pending or running or retry_at:
                if stop and retry_at:  # --fail-fast: retries not yet due are not run either
                    self.store.reset(list(retry_at))
                    summary.blocked += [stage.label for _, stage in retry_at.values()]
                    retry_at.clear()
                records = self.store.stages()
                for key in list(pending):
                    stage = pending[key]
                    deps = [d.key for d in stage.deps.values()]
                    if any(d in failed_keys for d in deps):
                        failed_keys.add(key)
                        summary.blocked.append(stage.label)
                        del pending[key]
                        self.on_event("blocked", stage, "")
                        continue
                    if stop or not all(records.get(d) and records[d].status == "done" for d in deps):
                        continue
                    del pending[key]
                    req = self._request(stage)
                    self.store.mark_running(stage.key, stage.kind, stage.label, stage.params,
                                            {n: d.key for n, d in stage.deps.items()}, "")
                    if not fits(req, self.nodes):
                        msg = (f"ResourceError: stage '{stage.label}' asks for {req.cpus:g} CPU, {req.gpus:g} GPU"
                               f"{f', {req.memory_gb:g} GiB' if req.memory_gb else ''} on one node, but the cluster "
                               f"has: {describe_nodes(self.nodes)}. Lower resources.{stage.kind} in the spec "
                               f"or run on a cluster that has them.")
                        self._fail(stage, msg, summary, failed_keys)
                        stop = stop or self.fail_fast
                        continue
                    running[submit(stage, records)] = stage
                    self.on_event("started", stage, "")
                now = time.monotonic()
                for key, (when, stage) in list(retry_at.items()):
                    if when <= now and not stop:
                        del retry_at[key]
                        running[submit(stage, self.store.stages())] = stage
                        self.on_event("started", stage, f"attempt {attempts[key] + 1}")
                if not running and retry_at and not stop:
                    time.sleep(max(0.0, min(w for w, _ in retry_at.values()) - time.monotonic()))
                    continue
                if not running:
                    if pending and (stop or not any(self._ready(s, records) for s in pending.values())):
                        for stage in pending.values():
                            summary.blocked.append(stage.label)
                        break
                    continue
                wait_s = 1.0 if not retry_at else max(0.01, min(1.0, min(w for w, _ in retry_at.values()) - time.monotonic()))
                done, _ = ray.wait(list(running), num_returns=1, timeout=wait_s)
                for ref in done:
                    stage = running.pop(ref)
                    try:
                        payload = ray.get(ref)
                    except Exception as e:  # noqa: BLE001 - any stage failure is recorded, not raised
                        allowed = self._request(stage).max_retries
                        if retryable(e) and attempts[stage.key] <= allowed and not stop:
                            delay = backoff_s(attempts[stage.key])
                            retry_at[stage.key] = (time.monotonic() + delay, stage)
                            summary.retried.append(stage.label)
                            self.on_event("retrying", stage, f"{_error_text(e).splitlines()[0][:120]}; "
                                                             f"attempt {attempts[stage.key] + 1} in {delay:.0f}s")
                            continue
                        self._fail(stage, _error_text(e), summary, failed_keys)
                        stop = stop or self.fail_fast
                        continue
                    self._record(stage, payload)
                    summary.ran.append(stage.label)
                    self.on_event("done", stage, f"{payload.get('wall_s', 0):.1f}s")
        except KeyboardInterrupt:
            summary.interrupted = True
            for ref in running:
                ray.cancel(ref, force=True)
            # Cancelled stages were never recorded done: drop every 'running' row so the store stays true.
            # All of them, not only the submitted ones: Ctrl-C can land between marking a stage running and
            # submitting it, or between a result's two writes (the run lock makes every such row ours).
            self.store.forget_running()
        return summary

    @staticmethod
    def _ready(stage: Stage, records) -> bool:
        return all(records.get(d.key) and records[d.key].status == "done" for d in stage.deps.values())

    def _fail(self, stage: Stage, error: str, summary: RunSummary, failed_keys: set[str]) -> None:
        self.store.mark_failed(stage.key, error)
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
