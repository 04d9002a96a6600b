"""A two-node Ray cluster on 127.0.0.1 (started and stopped here): stages land where their resources are."""
from __future__ import annotations

import time

import pytest

from matrix.spec import ResourcesSpec
from matrix.store import Store
from matrix.runner.executor import Executor
from matrix.runner.graph import StageGraph
from matrix.runner.stage import Stage
from tests.sockets import not_on_loopback, own_listeners

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster():
    """Head (1 CPU) + a node with 2 CPUs, 2 fake GPUs and a custom resource + a node with 1 CPU and 1 fake
    GPU, all on 127.0.0.1.

    `ray start` would be the obvious way, but multi-node `ray start` binds every interface; with
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 (loopback) it refuses a second node. Ray's own multi-node test
    harness (`ray.cluster_utils.Cluster`) starts the same GCS and raylet processes per node and keeps
    them on 127.0.0.1 under that setting, so the test uses it.
    """
    import ray
    from ray.cluster_utils import Cluster

    from matrix.runner.cluster import connect, node_capacities, prepare_environment

    if ray.is_initialized():
        ray.shutdown()
    prepare_environment()  # loopback-only Ray, no usage stats, no auth
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "num_gpus": 0, "include_dashboard": False})
    c.add_node(num_cpus=2, num_gpus=2, resources={"fast_disk": 1})
    c.add_node(num_cpus=1, num_gpus=1)
    conn = connect(c.address, None, None)
    deadline = time.time() + 60
    while len(node_capacities()) < 3 and time.time() < deadline:
        time.sleep(0.5)
    nodes = {n["NodeID"]: n["Resources"] for n in ray.nodes() if n["Alive"]}
    try:
        yield {"address": c.address, "port": int(c.address.rsplit(":", 1)[1]), "nodes": nodes,
               "capacities": node_capacities()}
    finally:
        conn.shutdown()
        c.shutdown()


def test_the_cluster_listens_on_loopback_only(cluster):
    # Ray's processes of this cluster are descendants of this test process (ray.cluster_utils starts them).
    lines = own_listeners()
    ray_lines = [ln for ln in lines if any(p in ln for p in ("gcs_server", "raylet", "ray::"))]
    assert any(f":{cluster['port']} " in ln for ln in ray_lines), ray_lines
    assert not_on_loopback(lines) == [], lines


def test_stages_land_on_the_node_that_has_their_resources(cluster, tmp_path):
    gpu_node = next(nid for nid, res in cluster["nodes"].items() if res.get("GPU", 0) == 2)
    cpu_node = next(nid for nid, res in cluster["nodes"].items() if not res.get("GPU"))
    stages = [Stage("sleep", {"seconds": 0.2, "i": i, "resources": {"cpus": 1, "gpus": 1}}, label=f"gpu{i}")
              for i in range(2)]
    stages += [Stage("sleep", {"seconds": 0.2, "i": i, "resources": {"cpus": 1}}, label=f"cpu{i}") for i in range(3)]
    store = Store(tmp_path / "run")
    graph = StageGraph(stages={s.key: s for s in stages}, cells=[])
    summary = Executor(store, graph, ResourcesSpec(), cluster["capacities"]).run()
    assert summary.ok, summary.failed
    results = {r.label: r.result for r in store.stages().values()}
    gpu_nodes = {nid for nid, res in cluster["nodes"].items() if res.get("GPU")}
    assert {results[f"gpu{i}"]["node_id"] for i in range(2)} <= gpu_nodes and gpu_node in gpu_nodes
    assert all(len(results[f"gpu{i}"]["gpu_ids"]) == 1 for i in range(2))
    assert {results[f"cpu{i}"]["node_id"] for i in range(3)} <= set(cluster["nodes"]) and cpu_node not in gpu_nodes


def test_on_several_gpu_nodes_each_gpu_stage_runs_on_the_node_the_policy_gave_it(cluster, tmp_path):
    """matrix.runner.priority places GPU stages per node when there are several GPU nodes; the executor
    asks Ray for that node. Here 2 + 1 GPUs: the 2-GPU stage (first by priority) gets the 2-GPU node, the
    1-GPU stages the node it leaves room on, one after another."""
    from matrix.runner.priority import Admission

    big = Stage("sleep", {"seconds": 0.5, "estimate": 5.0, "resources": {"cpus": 1, "gpus": 2}}, label="big")
    small = [Stage("sleep", {"seconds": 0.1, "i": i, "resources": {"cpus": 1, "gpus": 1}}, label=f"small{i}")
             for i in range(3)]
    policies: list[Admission] = []

    def admission(*args):
        policies.append(Admission(*args))
        return policies[-1]

    store = Store(tmp_path / "run")
    graph = StageGraph(stages={s.key: s for s in [big, *small]}, cells=[])
    summary = Executor(store, graph, ResourcesSpec(), cluster["capacities"], admission=admission).run()
    assert summary.ok, summary.failed
    results = {r.label: r.result for r in store.stages().values()}
    (policy,) = policies
    gpus = {nid: res["GPU"] for nid, res in cluster["nodes"].items() if res.get("GPU")}
    assert policy.nodes == gpus
    assert {s.label: policy.where[s.key] for s in [big, *small]} == {s.label: results[s.label]["node_id"]
                                                                     for s in [big, *small]}
    two = next(nid for nid, g in gpus.items() if g == 2)
    assert results["big"]["node_id"] == two and sorted(results["big"]["gpu_ids"]) == ["0", "1"]


def test_a_request_no_node_can_hold_fails_at_once(cluster, tmp_path):
    # 3 CPUs and 1 GPU: the cluster has 3 CPUs in all, but no node has 3 with a GPU.
    stage = Stage("sleep", {"resources": {"cpus": 3, "gpus": 1}}, label="too-big")
    store = Store(tmp_path / "run")
    summary = Executor(store, StageGraph(stages={stage.key: stage}, cells=[]), ResourcesSpec(),
                       cluster["capacities"]).run()
    # At once: refused from the nodes' capacities, never submitted to wait in Ray's queue (no attempt);
    # judged by the store, not by a clock a loaded machine stretches.
    assert store.stages()[stage.key].attempts == 0
    (label, error), = summary.failed
    assert label == "too-big" and "asks for 3 CPU, 1 GPU on one node" in error
    assert "1 CPU, 0 GPU" in error and "2 CPU, 2 GPU" in error


def test_a_two_gpu_stage_holds_both_gpus_of_one_node(cluster, tmp_path):
    """What a 2-GPU train stage gets before matrix.methods.launch starts one rank per GPU."""
    gpu_node = next(nid for nid, res in cluster["nodes"].items() if res.get("GPU", 0) == 2)
    stage = Stage("sleep", {"seconds": 0.1, "resources": {"cpus": 1, "gpus": 2}}, label="pair")
    store = Store(tmp_path / "run")
    summary = Executor(store, StageGraph(stages={stage.key: stage}, cells=[]), ResourcesSpec(),
                       cluster["capacities"]).run()
    assert summary.ok
    result = next(iter(store.stages().values())).result
    assert result["node_id"] == gpu_node and sorted(result["gpu_ids"]) == ["0", "1"]
