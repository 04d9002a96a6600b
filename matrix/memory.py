"""A stage's peak memory, measured per stage, also in a worker process that ran other stages before it.

On the CPU the figure is the process's peak resident set, `VmHWM` in /proc/self/status, which only
grows over a process's life: a reused worker would report an earlier stage's peak as this one's. Linux
resets it to the current resident set when "5" is written to /proc/self/clear_refs (proc(5), Linux
4.0+): `reset` does that at a stage's start. Not `getrusage`'s `ru_maxrss`: the reset does not reach the
part of it that exec carries over, the peak of the process that started this one (a Ray worker's is
at least its raylet's; tests/matrix/test_memory.py found it, at the pytest process's 633 MiB). Where the
file cannot be written, `reset` returns False and the figure is the peak since the process started;
without /proc it is `ru_maxrss`. On CUDA the figure is torch's allocator peak, reset the same way.
"""
from __future__ import annotations

import resource
import sys

CLEAR_REFS = "/proc/self/clear_refs"
STATUS = "/proc/self/status"


def _cuda():
    """torch's CUDA module where this process has torch loaded and a GPU in use; None otherwise (never
    imports torch: a data or scoring stage does not pay its import to be measured)."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    return torch.cuda


def reset() -> bool:
    """Start a new peak here; False where the resident-set peak could not be reset (it then counts
    from the process's start)."""
    cuda = _cuda()
    if cuda is not None:
        cuda.reset_peak_memory_stats()
    try:
        with open(CLEAR_REFS, "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_mb(on_cuda: bool | None = None) -> float:
    """The peak since the last `reset` (MiB): torch's allocator peak where a GPU is in use (or `on_cuda`
    says so), the resident set otherwise."""
    cuda = _cuda()
    if cuda is not None and (on_cuda or (on_cuda is None and cuda.max_memory_allocated() > 0)):
        return cuda.max_memory_allocated() / 2**20
    return resident_peak_mb()


def resident_peak_mb() -> float:
    """The process's own peak resident set since the last `reset` (MiB)."""
    try:
        with open(STATUS) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
