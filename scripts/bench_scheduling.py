"""Scheduling overhead of the executor on embedded Ray: a synthetic sweep of sleep stages.

Builds a sweep shaped like a real one (per "cell": generate -> construct -> train -> several evaluates,
plus shared upstream stages) out of `sleep` stages with known, seeded durations, runs it through
`runner.executor.Executor` on embedded Ray with N CPU slots, and prints:

- makespan (wall time of `Executor.run`);
- the lower bound: max(total work / slots, critical path), what a perfect scheduler with zero
  overhead would need;
- makespan / lower bound, and the per-stage overhead (makespan - lower bound) x slots / stages.

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/bench_scheduling.py [--cells 30] [--evals 8] [--slots 2]
"""
from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build(cells: int, evals: int, seed: int):
    from runner.stage import Stage

    rng = random.Random(seed)
    dur = lambda lo, hi: round(rng.uniform(lo, hi), 3)  # noqa: E731
    res = {"cpus": 1}
    stages: list[Stage] = []
    data = Stage("sleep", {"seconds": dur(0.2, 0.4), "n": "data", "resources": res}, label="data")
    gen = Stage("sleep", {"seconds": dur(0.5, 1.0), "n": "gen", "resources": res}, {"data": data}, label="generate")
    stages += [data, gen]
    for c in range(cells):
        con = Stage("sleep", {"seconds": dur(0.05, 0.2), "n": f"c{c}", "resources": res}, {"gen": gen},
                    label=f"construct {c}")
        train = Stage("sleep", {"seconds": dur(0.5, 1.5), "n": f"t{c}", "resources": res}, {"examples": con},
                      label=f"train {c}")
        stages += [con, train]
        stages += [Stage("sleep", {"seconds": dur(0.05, 0.3), "n": f"e{c}.{b}", "resources": res},
                         {"checkpoint": train}, label=f"evaluate {c}.{b}") for b in range(evals)]
    return stages


def critical_path(stages) -> float:
    memo: dict[str, float] = {}

    def finish(s) -> float:
        if s.key not in memo:
            memo[s.key] = s.params["seconds"] + max((finish(d) for d in s.deps.values()), default=0.0)
        return memo[s.key]

    return max(finish(s) for s in stages)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=30)
    parser.add_argument("--evals", type=int, default=8)
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from matrix.spec import ResourcesSpec
    from matrix.store import Store
    from runner.cluster import connect, node_capacities
    from runner.executor import Executor
    from runner.graph import StageGraph

    stages = build(args.cells, args.evals, args.seed)
    work = sum(s.params["seconds"] for s in stages)
    path = critical_path(stages)
    bound = max(work / args.slots, path)
    conn = connect(None, num_cpus=args.slots, num_gpus=0)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            store = Store(Path(tmp) / "run")
            graph = StageGraph(stages={s.key: s for s in stages}, cells=[])
            t = time.monotonic()
            summary = Executor(store, graph, ResourcesSpec(), node_capacities()).run()
            makespan = time.monotonic() - t
            store.close()
    finally:
        conn.shutdown()
    assert summary.ok and len(summary.ran) == len(stages), summary
    overhead = (makespan - bound) * args.slots / len(stages)
    print(f"{len(stages)} sleep stages ({args.cells} cells x (construct, train, {args.evals} evaluates) + 2 shared), "
          f"{args.slots} slots")
    print(f"total work {work:.1f} s, critical path {path:.1f} s, lower bound {bound:.1f} s")
    print(f"makespan {makespan:.1f} s = {makespan / bound:.2f} x the lower bound")
    print(f"scheduling overhead per stage: {overhead * 1000:.0f} ms (slot-time beyond the work)")


if __name__ == "__main__":
    main()
