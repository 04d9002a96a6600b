"""How well the executor schedules on embedded Ray: sweeps of `sleep` stages.

`--shape table9` (a realistic schedule): plans `specs/table9.yaml` (every kind and dependency as
planned; the data files need not exist), replaces each stage by a `sleep` stage with the same
dependencies and the same resource request as the spec gives its kind (train 8 GPUs, answering 1,
scoring and construction none), sleeping what the cost model of matrix/runner/priority.py estimates (train
proportional to examples x epochs, answering to questions x max_new_tokens, judge-bound stages to
their judge calls, the rest a few seconds), scaled so that the lower bound is `--seconds`. The
cluster has fake GPUs: one embedded Ray instance for `--nodes 1`, else `ray.cluster_utils.Cluster`
(Ray's own multi-node harness: one raylet per node, all on 127.0.0.1), so an 8-GPU stage needs 8 free
GPUs of ONE node, as on a real cluster. Prints makespan (wall time of `Executor.run`), the lower
bound max(critical path, GPU-work / GPUs) (zero overhead, GPUs fungible across nodes), their ratio,
and GPU utilisation (GPU-seconds the stages slept / makespan x GPUs); then where the time beyond the
policy's zero-overhead replay went: each GPU stage's lag from the driver's submit to its start and from
its end to the driver's record, when the stages that waited over 1 s were submitted, and the policy
replayed with each stage holding its GPUs for as long as the driver saw it hold them. `--policy fifo` is the
executor before matrix/runner/priority.py (every ready stage submitted at once, in the graph's order).

    python scripts/bench_scheduling.py --shape table9 --nodes 4 --gpus-per-node 8 [--policy fifo]

The default shape (`--shape synthetic`) measures per-stage overhead. It builds a sweep shaped like a
real one (per "cell": generate -> construct -> train -> several evaluates, plus shared upstream stages) out of `sleep` stages with known, seeded durations, runs it through
`matrix.runner.executor.Executor` on embedded Ray with N CPU slots, and prints:

- makespan (wall time of `Executor.run`);
- the lower bound: max(total work / slots, critical path), what a perfect scheduler with zero
  overhead would need;
- makespan / lower bound, and the per-stage overhead (makespan - lower bound) x slots / stages.

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/bench_scheduling.py [--cells 30] [--evals 8] [--slots 2]
"""
from __future__ import annotations

import argparse
import atexit
import heapq
import itertools
import math
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build(cells: int, evals: int, seed: int):
    from matrix.runner.stage import Stage

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


def table9(spec_path: Path, target_s: float, gpus: float, noise: float, seed: int, fresh_gpu_workers: bool = False):
    """Sleep stages in the shape of the planned spec, scaled so the lower bound on `gpus` GPUs is target_s."""
    from matrix import api
    from matrix.runner.executor import Executor
    from matrix.runner.priority import estimate
    from matrix.runner.stage import Stage

    spec = api.load(spec_path)
    graph = api.plan(spec).graph  # planning reads no data file (fingerprints of missing files are None)
    request = Executor(None, graph, spec.resources, [])._request  # the executor's own request per stage
    order = graph.ordered()
    raw = {s.key: estimate(s) for s in order}
    reqs = {s.key: request(s) for s in order}
    memo: dict[str, float] = {}
    for s in order:
        memo[s.key] = raw[s.key] + max((memo[d.key] for d in s.deps.values()), default=0.0)
    bound = max(max(memo.values()), sum(raw[k] * reqs[k].gpus for k in raw) / gpus)
    scale = target_s / bound
    rng = random.Random(seed)
    sleeps: dict[str, Stage] = {}
    cuda = {"cuda": True} if fresh_gpu_workers else {}
    for s in order:
        est = raw[s.key] * scale
        actual = est * (math.exp(rng.gauss(0.0, noise)) if noise else 1.0)
        r = reqs[s.key]
        # `of`: the planned stage's key, so two planned stages with one label (SIMA's 1024-token greedy
        # generation beside the 512-token one) stay two sleep stages.
        params = {"seconds": round(actual, 4), "estimate": round(est, 4), "kind": s.kind, "label": s.label,
                  "of": s.key[:16], "resources": {"cpus": r.cpus, "gpus": r.gpus, "max_retries": 0}, **cuda}
        sleeps[s.key] = Stage("sleep", params, {n: sleeps[d.key] for n, d in s.deps.items()},
                              label=f"{s.kind}: {s.label}")
    return list(sleeps.values()), graph.counts()


def _spread(values) -> str:
    xs = sorted(values)
    return f"median {xs[len(xs) // 2]:.2f} s, 90% {xs[len(xs) * 9 // 10]:.2f} s, max {xs[-1]:.2f} s"


def critical_path(stages) -> float:
    memo: dict[str, float] = {}

    def finish(s) -> float:
        if s.key not in memo:
            memo[s.key] = s.params["seconds"] + max((finish(d) for d in s.deps.values()), default=0.0)
        return memo[s.key]

    return max(finish(s) for s in stages)


class Fifo:
    """The executor's policy before matrix/runner/priority.py: every ready stage at once, in the graph's order."""

    def __init__(self, graph, gpus, nodes=None):
        self.where: dict[str, str] = {}

    def admit(self, ready, running, now):
        return [s for s, _ in ready]


def replay(stages, policy, nodes: int, gpus_per_node: int, held: dict[str, float] | None = None) -> float:
    """Makespan of the policy with zero overhead, by events: what the schedule itself costs. Stages the
    policy admitted wait in a queue in submission order and start on the node it gave them, or else on
    the first node with room (a simplification of Ray's placement); CPUs are not counted. `held`: how
    long each stage (by key) holds its GPUs instead of its `seconds` (the policy still sees estimates)."""
    from matrix.runner.graph import StageGraph

    held = held or {}
    admission = policy(StageGraph(stages={s.key: s for s in stages}, cells=[]), nodes * gpus_per_node,
                       {str(i): float(gpus_per_node) for i in range(nodes)})
    free = [float(gpus_per_node)] * nodes
    order = itertools.count()  # ties in end time: the stage started first ends first (not by id(), which varies)
    pending, queued, running, done, now = list(stages), [], [], set(), 0.0
    while pending or queued or running:
        ready = [s for s in pending if all(d.key in done for d in s.deps.values())]
        busy = [(s, g, t0) for _, _, s, g, t0, _ in running] + [(s, s.params["resources"]["gpus"], now) for s in queued]
        for s in admission.admit([(s, s.params["resources"]["gpus"]) for s in ready], busy, now):
            pending.remove(s)
            queued.append(s)
        for s in list(queued):
            g = s.params["resources"]["gpus"]
            given = admission.where.get(s.key)  # the node the policy gave it, else the first with room
            node = int(given) if given is not None else next((i for i in range(nodes) if free[i] + 1e-9 >= g), None)
            if node is not None and free[node] + 1e-9 >= g:
                free[node] -= g
                queued.remove(s)
                heapq.heappush(running, (now + held.get(s.key, s.params["seconds"]), next(order), s, g, now, node))
        now, _, s, g, _, node = heapq.heappop(running)
        free[node] += g
        done.add(s.key)
    return now


def start_cluster(nodes: int, gpus_per_node: int, cpus_per_node: int):
    """Embedded Ray with fake GPUs (one node), or Ray's multi-node harness on 127.0.0.1 (several)."""
    os.environ.setdefault("RAY_prestart_worker_first_driver", "0")  # no worker per fake CPU at start
    # The workers run sleep stages only: a stub makes their `import torch` (execute_stage sets torch's
    # threads) fail at once instead of costing ~4 CPU-s per worker, which a scaled-down sweep would
    # count as scheduling time although a real stage pays it once in minutes or hours.
    stub = Path(tempfile.mkdtemp(prefix="bench-no-torch-")) / "torch"
    atexit.register(shutil.rmtree, stub.parent, True)
    stub.mkdir()
    (stub / "__init__.py").write_text('raise ImportError("not in the scheduling benchmark\'s workers")\n')
    os.environ["PYTHONPATH"] = os.pathsep.join([str(stub.parent), os.environ.get("PYTHONPATH", "")])
    from matrix.runner.cluster import connect, node_capacities, prepare_environment

    if nodes == 1:
        return connect(None, num_cpus=cpus_per_node, num_gpus=gpus_per_node), None
    from ray.cluster_utils import Cluster

    prepare_environment()
    # The head runs the driver only (no CPU, no GPU): every stage lands on one of the GPU nodes.
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "num_gpus": 0, "include_dashboard": False,
                                                           "object_store_memory": 128 * 2**20})
    for _ in range(nodes):
        cluster.add_node(num_cpus=cpus_per_node, num_gpus=gpus_per_node, object_store_memory=128 * 2**20)
    conn = connect(cluster.address, None, None)
    deadline = time.time() + 120
    while sum(1 for n in node_capacities() if n.get("GPU")) < nodes and time.time() < deadline:
        time.sleep(0.5)
    return conn, cluster


def _arrive(folder: str, expected: int, limit_s: float) -> int:
    """One warm-up task: wait until `expected` of them run at once, so each holds a worker process."""
    Path(folder, str(os.getpid())).touch()
    deadline = time.time() + limit_s
    while len(os.listdir(folder)) < expected and time.time() < deadline:
        time.sleep(0.05)
    return os.getpid()


def warm_up(per_node: int) -> tuple[int, float]:
    """Start `per_node` idle worker processes on every GPU node before the clock starts, as a cluster that
    has been running for a while has: the compressed sweep would otherwise count Ray's worker start-ups
    (seconds of CPU each on these 2 cores, at most 2 at a time per node) against stages that last seconds
    here and minutes to hours on a real cluster. Workers stay in Ray's pool up to the node's CPU count.
    Each holds a share of its node's GPUs while it waits (1/k of a GPU, as Ray packs a fraction onto one GPU: 16 or 12 on 8 GPUs, half a GPU each), as a worker of a
    running cluster has run GPU tasks before: with CPU-only warm-up tasks, exactly 32 GPU stages waited
    1-17 s from submit to start in every run, in groups at a few moments (stop 31; 535 GPU-s at
    `--seconds 120`); with these, 28 waited 1.0-3.7 s (144 GPU-s)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    gpus = {n["NodeID"]: n["Resources"]["GPU"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("GPU")}
    nodes = list(gpus)
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as folder:
        task = ray.remote(_arrive)
        refs = [task.options(num_cpus=1, num_gpus=1 / math.ceil(per_node / gpus[node]),
                             scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False))
                .remote(folder, per_node * len(nodes), 300.0) for node in nodes for _ in range(per_node)]
        pids = set(ray.get(refs))
    return len(pids), time.monotonic() - start


def run_table9(args) -> None:
    from matrix.spec import ResourcesSpec
    from matrix.store import Store
    from matrix.runner.cluster import node_capacities
    from matrix.runner.executor import Executor
    from matrix.runner.graph import StageGraph
    from matrix.runner.priority import Admission

    gpus = args.nodes * args.gpus_per_node
    stages, counts = table9(args.spec, args.seconds, gpus, args.noise, args.seed, args.fresh_gpu_workers)
    gpu_work = sum(s.params["seconds"] * s.params["resources"]["gpus"] for s in stages)
    path = critical_path(stages)
    bound = max(path, gpu_work / gpus)
    replayed = replay(stages, Fifo if args.policy == "fifo" else Admission, args.nodes, args.gpus_per_node)
    print(f"{len(stages)} sleep stages in the shape of {args.spec.name} ({dict(counts)}); policy {args.policy}; "
          f"{args.nodes} node(s) x {args.gpus_per_node} GPUs, {args.cpus_per_node} CPUs each; noise {args.noise}; "
          f"GPU stages in {'a fresh' if args.fresh_gpu_workers else 'a reusable'} worker process")
    print(f"GPU-work {gpu_work:.1f} GPU-s / {gpus} GPUs = {gpu_work / gpus:.1f} s, critical path {path:.1f} s, "
          f"lower bound {bound:.1f} s")
    print(f"the policy replayed with zero overhead: {replayed:.1f} s = {replayed / bound:.2f} x the lower bound")
    if args.replay_only:
        return
    load_before = os.getloadavg()
    conn, cluster = start_cluster(args.nodes, args.gpus_per_node, args.cpus_per_node)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            store = Store(Path(tmp) / "run")
            graph = StageGraph(stages={s.key: s for s in stages}, cells=[])
            policy = Fifo if args.policy == "fifo" else Admission
            if args.warm_workers:
                started, took = warm_up(args.warm_workers)
                print(f"warm-up: {started} idle worker processes started before timing ({took:.1f} s)")
            t, cpu = time.monotonic(), time.process_time()
            summary = Executor(store, graph, ResourcesSpec(), node_capacities(), admission=policy).run()
            makespan, cpu = time.monotonic() - t, time.process_time() - cpu
            records = store.stages()
            results = [records[s.key].result for s in stages]
            # The driver's clock: from its submit (the row's `started`) to its record of the result.
            submitted = {s.key: (records[s.key].started, records[s.key].finished) for s in stages}
            store.close()
    finally:
        conn.shutdown()
        if cluster is not None:
            cluster.shutdown()
    assert summary.ok and len(summary.ran) == len(stages), summary
    load_after = os.getloadavg()
    spans = [(r["started"], r["ended"]) for r in results]
    clock = max(b for _, b in spans) - min(a for a, _ in spans)
    used = sum((r["ended"] - r["started"]) * len(r["gpu_ids"]) for r in results)
    print(f"makespan {makespan:.1f} s = {makespan / bound:.2f} x the lower bound "
          f"(first start to last end by the stages' clocks: {clock:.1f} s = {clock / bound:.2f} x)")
    print(f"GPU utilisation {used / (makespan * gpus):.1%} (GPU-seconds the stages ran / makespan x GPUs)")
    ends = {s.key: r["ended"] for s, r in zip(stages, results)}
    waits = sorted(r["started"] - max((ends[d.key] for d in s.deps.values()), default=min(a for a, _ in spans))
                   for s, r in zip(stages, results))
    print(f"from inputs done to start: {_spread(waits)}; {len({r['pid'] for r in results})} worker processes; "
          f"the driver used {cpu:.1f} CPU-s")
    # Where the time beyond the replay went: each GPU stage holds its GPUs, in the driver's books, from its
    # submit to the driver's record of its result; the part of that which is not the sleep is Ray's
    # dispatch (lease, worker, call) and the reply. Replaying the policy with those measured holding times
    # in place of the sleeps tells whether they, or the order Ray ran things in, make up the difference.
    gpu = [(s, r, len(r["gpu_ids"])) for s, r in zip(stages, results) if r["gpu_ids"]]
    lag_in = {s.key: r["started"] - submitted[s.key][0] for s, r, _ in gpu}
    lag_out = [submitted[s.key][1] - r["ended"] for s, r, _ in gpu]
    overhead = sum((submitted[s.key][1] - submitted[s.key][0] - r["slept_s"]) * n for s, r, n in gpu)
    print(f"GPU stages, submit to sleep: {_spread(lag_in.values())}, {sum(x > 1 for x in lag_in.values())} over 1 s; "
          f"sleep end to recorded: {_spread(lag_out)}; {overhead:.0f} GPU-s held beyond the sleeps "
          f"({overhead / (makespan * gpus):.1%} of the GPU-time)")
    first = min(t0 for t0, _ in submitted.values())
    late = sorted((submitted[s.key][0] - first, lag_in[s.key], s.params["kind"]) for s, _, _ in gpu if lag_in[s.key] > 1)
    if late:
        print(f"  the {len(late)} over 1 s were submitted {late[0][0]:.1f}-{late[-1][0]:.1f} s into the run: "
              + ", ".join(f"{t:.0f} s {kind} +{lag:.1f}" for t, lag, kind in late[:40]))
    for n in sorted({n for *_, n in gpu}):
        lags = [lag_in[s.key] for s, _, m in gpu if m == n]
        print(f"  {len(lags)} stages holding {n} GPU(s): submit to sleep {_spread(lags)}, {sum(lags) * n:.0f} GPU-s in all")
    held = {s.key: submitted[s.key][1] - submitted[s.key][0] for s in stages}
    again = replay(stages, Fifo if args.policy == "fifo" else Admission, args.nodes, args.gpus_per_node, held)
    print(f"the policy replayed with each stage held from its submit to its record, as measured: {again:.1f} s = "
          f"{again / bound:.2f} x the lower bound (the run took {makespan / again:.2f} x that)")
    print(f"load average (1 min) {load_before[0]:.1f} before, {load_after[0]:.1f} after, on {os.cpu_count()} cores")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=["synthetic", "table9"], default="synthetic")
    parser.add_argument("--cells", type=int, default=30, help="synthetic: cells")
    parser.add_argument("--evals", type=int, default=8, help="synthetic: evaluations per cell")
    parser.add_argument("--slots", type=int, default=2, help="synthetic: CPU slots")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--spec", type=Path, default=ROOT / "specs" / "table9.yaml", help="table9: the spec planned")
    parser.add_argument("--nodes", type=int, default=1, help="table9: nodes")
    parser.add_argument("--gpus-per-node", type=int, default=8, help="table9: fake GPUs per node")
    parser.add_argument("--cpus-per-node", type=int, default=36, help="table9: CPUs per node (evaluate asks 4/GPU)")
    parser.add_argument("--seconds", type=float, default=60.0, help="table9: the lower bound the sweep is scaled to")
    parser.add_argument("--noise", type=float, default=0.0,
                        help="table9: actual = estimate x exp(N(0, noise)): the scheduler sees estimates only")
    parser.add_argument("--policy", choices=["priority", "fifo"], default="priority",
                        help="table9: matrix/runner/priority.py, or every ready stage at once in the graph's order")
    parser.add_argument("--warm-workers", type=int, default=0, metavar="N",
                        help="table9: start N idle worker processes per GPU node before timing")
    parser.add_argument("--fresh-gpu-workers", action="store_true",
                        help="table9: GPU stages ask for a worker process of their own, as real ones do "
                             "(StageKind.fresh_worker); by default a sleep stage, touching no GPU, may reuse one")
    parser.add_argument("--replay-only", action="store_true", help="table9: the zero-overhead replay only, no Ray")
    args = parser.parse_args()
    if args.shape == "table9":
        run_table9(args)
        return

    from matrix.spec import ResourcesSpec
    from matrix.store import Store
    from matrix.runner.cluster import connect, node_capacities
    from matrix.runner.executor import Executor
    from matrix.runner.graph import StageGraph

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
