"""`sleep`: a diagnostic stage for the scheduler's tests and `scripts/bench_scheduling.py`.

No spec produces it. It sleeps `seconds` (less if the file `until` appears first; with `deaf`, blocking
SIGALRM as a stage stuck inside a C call would not see it), can raise (`fail`: a message) or kill its
own worker process once (`die_once`: a marker file; the first attempt creates it and sends itself
SIGKILL, as an out-of-memory kill would), writes `files` ({name: text}) into its artifact, and reports
where it ran: node, GPU ids Ray gave it, pid. Its worker process may be reused although it holds
fake GPUs, since it makes no CUDA context (`cuda: true` makes it ask for a fresh one as a real GPU stage
does: `StageKind.fresh_worker`). `resources` in its params (cpus, gpus, memory_gb,
max_retries, timeout) is its request, in place of the spec's per-kind one.
"""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from pydantic import ConfigDict

from matrix.runner.stage import KINDS, StageKind, StageParams


@KINDS.register("sleep")
class SleepStage(StageKind):
    VERSION = 1

    class Params(StageParams):
        model_config = ConfigDict(extra="allow")  # tests and the benchmark script tag their stages freely
        seconds: float = 0
        fail: str | None = None
        die_once: str | None = None
        files: dict[str, str] | None = None
        until: str | None = None
        deaf: bool = False
        cuda: bool = False  # stand in for a stage that makes a CUDA context on the GPUs it holds
        resources: dict[str, Any] | None = None  # read by the executor

    @classmethod
    def fresh_worker(cls, params: dict[str, Any], gpus: float) -> bool:
        # A sleep touches no GPU, so its worker may be reused, unless it stands in for one that does.
        return bool(params.get("cuda")) and gpus > 0

    def run(self, params: Params, inputs, out: Path, ctx):
        import ray

        marker = params.die_once
        if marker and not Path(marker).exists():
            Path(marker).write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        if params.fail:
            raise RuntimeError(params.fail)
        for name, text in (params.files or {}).items():  # an artifact to damage in integrity tests
            (out / name).write_text(text)
        started = time.time()
        seconds = params.seconds
        print(f"sleeping {seconds:g}s" + (f" or until {params.until} exists" if params.until else ""))
        if params.deaf:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        try:
            if params.until:
                while not Path(params.until).exists() and time.time() - started < seconds:
                    time.sleep(0.05)
            else:
                time.sleep(seconds)
        finally:
            if params.deaf:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGALRM})
        context = ray.get_runtime_context()
        return {"node_id": context.get_node_id(), "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
                "pid": os.getpid(), "slept_s": time.time() - started, "started": started, "ended": time.time(),
                "inputs": sorted(inputs)}
