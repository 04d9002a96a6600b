"""Connecting to Ray: embedded on this machine (loopback only) by default, or an existing cluster.

Embedded Ray binds the machine's external address unless RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, so that
variable is always set here, before Ray is imported by anything. A driver killed with SIGKILL takes
its GCS and raylet with it, but Ray's agent processes survive as orphans; the pids are recorded in
the run lock and the next driver removes them.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from matrix.errors import RunError

RAY_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # bind 127.0.0.1, never the external interface
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "disabled",
}
WORKER_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def prepare_environment() -> None:
    """Environment for the driver and (inherited) its embedded Ray workers."""
    for k, v in {**RAY_ENV, **WORKER_ENV}.items():
        os.environ.setdefault(k, v)
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(Path.home() / ".cache" / "matrix" / "torch_extensions"))
    if not _has_cuda_devices():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")


def _has_cuda_devices() -> bool:
    return Path("/dev/nvidia0").exists() or bool(os.environ.get("CUDA_VISIBLE_DEVICES"))


@dataclass
class Connection:
    address: str | None
    embedded: bool
    pids: list[tuple[int, float]]  # (pid, create_time) of processes an embedded Ray started

    def shutdown(self) -> None:
        """Disconnect; an embedded instance stops, and every process it started (workers, and what a
        stage started, such as DeepSpeed ranks) is ended and waited for, so no stage writes after this."""
        import psutil
        import ray

        descendants = psutil.Process().children(recursive=True) if self.embedded else []
        if ray.is_initialized():
            ray.shutdown()
        alive = []
        for proc in descendants:
            try:
                proc.terminate()
                alive.append(proc)
            except psutil.Error:
                continue
        _, still = psutil.wait_procs(alive, timeout=5)
        for proc in still:
            try:
                proc.kill()
            except psutil.Error:
                continue
        psutil.wait_procs(still, timeout=5)


def connect(address: str | None, num_cpus: int | None, num_gpus: int | None) -> Connection:
    prepare_environment()
    import ray

    if address:
        try:
            ray.init(address=address, log_to_driver=False, logging_level="ERROR")
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise RunError(f"cannot join the Ray cluster at {address}: {e}") from None
        return Connection(address, False, [])
    try:
        _start_embedded(num_cpus, num_gpus)
    except Exception as e:  # noqa: BLE001 - Ray raises a bare Exception when its node does not come up
        try:
            Connection(None, True, []).shutdown()  # and end what it had started
        except Exception:  # noqa: BLE001 - best effort after a failed start
            pass
        raise RunError(f"embedded Ray did not start on this machine: {str(e).strip()} (a machine too loaded to "
                       f"start Ray's processes in time, or a full /tmp; finished stages are kept: run again)") from None
    return Connection(None, True, _embedded_pids())


def _start_embedded(num_cpus: int | None, num_gpus: int | None) -> None:
    import ray

    ray.init(
        # "local": always a fresh instance of our own, never a cluster some `ray start` (or a test)
        # left running on this machine, which plain ray.init() would try to join.
        address="local",
        num_cpus=num_cpus or os.cpu_count(),
        num_gpus=num_gpus,
        include_dashboard=False,
        log_to_driver=False,
        logging_level="ERROR",
        object_store_memory=256 * 1024 * 1024,
    )


def _embedded_pids() -> list[tuple[int, float]]:
    """Pids of the processes embedded Ray started (and their children), to clean up after a SIGKILL."""
    import psutil

    me = psutil.Process()
    out = []
    for child in me.children(recursive=True):
        try:
            out.append((child.pid, child.create_time()))
        except psutil.Error:
            continue
    return out


def kill_orphans(pids: list) -> int:
    """Kill processes recorded by a dead driver, if they are still the same processes (pid + start time)."""
    import psutil

    killed = 0
    for pid, created in pids:
        try:
            proc = psutil.Process(pid)
            if abs(proc.create_time() - created) < 1e-3:
                for child in proc.children(recursive=True):
                    child.kill()
                proc.kill()
                killed += 1
        except psutil.Error:
            continue
    return killed


def node_capacities() -> list[dict[str, float]]:
    """Resources of each alive node (CPU, GPU, memory in bytes, and custom resources)."""
    import ray

    return [dict(n["Resources"]) for n in ray.nodes() if n.get("Alive")]
