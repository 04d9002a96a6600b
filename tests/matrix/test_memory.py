"""A stage's peak memory counts from the stage's start, also in a worker process that ran a bigger stage
before it (matrix.memory)."""
import json
import subprocess
import sys

import pytest

from matrix import memory
from tests.runner.sweeps import REPO

PROBE = """
import json
from matrix import memory
memory.reset()
big = b"x" * (300 * 2**20)  # written, so resident: 300 MiB
during = memory.peak_mb()
del big                      # an allocation this size is unmapped when freed
kept = memory.peak_mb()      # without a reset: the earlier peak, what a reused worker reported before
done = memory.reset()
print(json.dumps({"during": during, "kept": kept, "reset": done, "after_reset": memory.peak_mb()}))
"""


@pytest.mark.skipif(not memory.reset(), reason="/proc/self/clear_refs cannot be written here (not Linux): "
                                                "the peak counts from the process's start")
def test_the_peak_is_reset_at_a_stage_start():
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, check=True)
    r = json.loads(out.stdout)
    assert r["reset"] and r["during"] >= 300 and r["kept"] >= 300
    assert r["after_reset"] < r["during"] - 250  # after the reset: what the process holds now


def test_where_the_peak_cannot_be_reset_reset_says_so(monkeypatch, tmp_path):
    monkeypatch.setattr(memory, "CLEAR_REFS", str(tmp_path / "absent" / "clear_refs"))
    assert not memory.reset()
    assert memory.peak_mb() > 0
