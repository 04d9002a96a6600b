"""What the executor tests on embedded Ray share: one local Ray instance per test module, and `sleep`
stages (the diagnostic kind, matrix/runner/kinds/sleep.py) asking for one CPU unless told otherwise."""
from __future__ import annotations

import pytest

from matrix.runner.stage import Stage


@pytest.fixture(scope="module")
def ray_local():
    """Embedded Ray with 2 CPUs and no GPU; yields its nodes' capacities."""
    from matrix.runner.cluster import connect, node_capacities

    conn = connect(None, num_cpus=2, num_gpus=0)
    yield node_capacities()
    conn.shutdown()


def sleep_stage(label: str, seconds: float = 0.0, deps: dict | None = None, **params) -> Stage:
    params.setdefault("resources", {"cpus": 1})
    return Stage("sleep", {"seconds": seconds, "label": label, **params}, deps or {}, label=label)
