"""A stage's peak memory counts from the stage's start, also in a worker process that ran a bigger stage
before it (matrix.memory)."""
import json
import subprocess
import sys

import pytest

from matrix import memory
from tests.runner.sweeps import REPO

PROBE = """
import json, mmap
from matrix import memory
memory.reset()
big = mmap.mmap(-1, 300 * 2**20)  # mapped by hand, so that unmapping it gives it back whatever the allocator
for i in range(0, len(big), mmap.PAGESIZE):
    big[i] = 1                    # every page written: 300 MiB resident
during = memory.peak_mb()
big.close()
kept = memory.peak_mb()           # without a reset: the earlier peak, what a reused worker reported before
done = memory.reset()
print(json.dumps({"during": during, "kept": kept, "reset": done, "after_reset": memory.peak_mb()}))
"""


@pytest.mark.skipif(not memory.reset(), reason="/proc/self/clear_refs cannot be written here (not Linux): "
                                                "the peak counts from the process's start")
def test_the_peak_is_reset_at_a_stage_start_and_is_not_the_parents():
    import mmap

    # The parent holds 400 MiB when it starts the child, as a raylet or a test process may: exec carries
    # the parent's peak into the child's ru_maxrss, which no reset clears (the first version read it).
    parent = mmap.mmap(-1, 400 * 2**20)
    for i in range(0, len(parent), mmap.PAGESIZE):
        parent[i] = 1
    try:
        out = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, check=True)
    finally:
        parent.close()
    r = json.loads(out.stdout)
    assert r["reset"] and 300 <= r["during"] < 400 and r["kept"] >= 300  # its own 300 MiB, not the parent's
    assert r["after_reset"] < 100  # after the reset: what the process holds now (~11 MiB: Python itself)


def test_where_the_peak_cannot_be_reset_reset_says_so_and_without_proc_the_peak_is_ru_maxrss(monkeypatch, tmp_path):
    import resource

    monkeypatch.setattr(memory, "CLEAR_REFS", str(tmp_path / "absent" / "clear_refs"))
    monkeypatch.setattr(memory, "STATUS", str(tmp_path / "absent" / "status"))
    assert not memory.reset()
    assert memory.peak_mb() == resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
