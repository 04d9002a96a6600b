"""Every stage checks that it sees the driver's run directory: on a loopback two-node Ray cluster whose
second node has its own view of the filesystem (a mount namespace with an empty tmpfs over the shared
folder, as a node that does not mount the shared storage), a stage placed there fails at once, naming the
node and the path; the same graph's stage on the driver's node runs."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

from matrix.spec import ResourcesSpec
from matrix.store import Store
from matrix.runner.executor import Executor
from matrix.runner.graph import StageGraph
from matrix.runner.shared import TOKEN_FILE, run_dir_problem, write_token
from matrix.runner.stage import Stage

# The second node: a raylet started as ray.cluster_utils.Cluster.add_node starts one (loopback only, see
# tests/runner/test_cluster.py), in this process's mount namespace; it runs until SIGTERM.
NODE = r"""
import os, signal, sys, time
import ray._private.node, ray._private.parameter
params = ray._private.parameter.RayParams(
    gcs_address=sys.argv[1], num_cpus=2, num_gpus=0, object_store_memory=150 * 1024 * 1024, min_worker_port=0,
    max_worker_port=0, include_log_monitor=False, node_manager_port=0)
params.dashboard_agent_listen_port = None
node = ray._private.node.Node(params, head=False, shutdown_at_exit=True, spawn_reaper=True)
def stop(*_):
    node.kill_all_processes(check_alive=False, allow_graceful=True)
    os._exit(0)
signal.signal(signal.SIGTERM, stop)
print("ready", flush=True)
while True:
    time.sleep(1)
"""


def test_the_token_is_checked_by_path(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    assert run_dir_problem(run, None) is None  # no token given (a bare Executor): nothing to check
    token = write_token(run)
    assert run_dir_problem(run, token) is None
    missing = run_dir_problem(tmp_path / "elsewhere", token)
    assert "SharedStorageError" in missing and str(tmp_path / "elsewhere") in missing
    assert "finds no run token" in missing
    (run / TOKEN_FILE).write_text("an-older-run")
    assert "another run's token" in run_dir_problem(run, token)


def _isolating_mounts(folder) -> bool:
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                            f"mount -t tmpfs tmpfs '{folder}'"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.slow
def test_a_stage_on_a_node_that_does_not_see_the_run_directory_fails_naming_node_and_path(tmp_path):
    import ray
    from ray.cluster_utils import Cluster

    from matrix.runner.cluster import connect, node_capacities, prepare_environment

    shared = tmp_path / "shared"  # stands for the shared filesystem; the second node mounts nothing there
    shared.mkdir()
    if not _isolating_mounts(shared):
        pytest.skip("needs `unshare -m` and mount (root, or user namespaces) to give a node its own view of a folder")
    if ray.is_initialized():
        ray.shutdown()
    prepare_environment()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "num_gpus": 1, "include_dashboard": False})
    node = subprocess.Popen(
        ["unshare", "-m", "--propagation", "private", "sh", "-c",
         'mount -t tmpfs tmpfs "$0" && exec "$1" -c "$2" "$3"', str(shared), sys.executable, NODE,
         cluster.gcs_address], stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    conn = None
    try:
        assert node.stdout.readline().strip() == "ready"
        conn = connect(cluster.address, None, None)
        deadline = time.time() + 120
        while len(node_capacities()) < 2:
            assert time.time() < deadline, "the second node did not join in 120 s"
            time.sleep(0.5)
        other = next(n["NodeID"] for n in ray.nodes() if n["Alive"] and not n["Resources"].get("GPU"))
        head = next(n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("GPU"))
        run_dir = shared / "run"
        store = Store(run_dir)
        # 2 CPUs: only the second node has them; 1 GPU: only the head (the driver's node) has one.
        elsewhere = Stage("sleep", {"seconds": 0.1, "resources": {"cpus": 2}}, label="elsewhere")
        here = Stage("sleep", {"seconds": 0.1, "resources": {"cpus": 1, "gpus": 1}}, label="here")
        graph = StageGraph(stages={s.key: s for s in (elsewhere, here)}, cells=[])
        summary = Executor(store, graph, ResourcesSpec(), node_capacities(), run_token=write_token(run_dir)).run()
        records = {r.label: r for r in store.stages().values()}
        assert records["here"].status == "done" and records["here"].result["node_id"] == head
        (label, line), = summary.failed
        assert label == "elsewhere" and records["elsewhere"].status == "failed"
        assert records["elsewhere"].attempts == 1  # not retried: the node will not see it next time either
        assert line.startswith("SharedStorageError: node ")
        assert f"Ray node {other[:12]}" in line and f"the run directory {run_dir}:" in line
        assert "finds no run token" in line
        assert not (store.artifact_dir(elsewhere.key, "sleep")).exists()
        store.close()
    finally:
        if conn is not None:
            conn.shutdown()
        node.terminate()
        try:
            node.wait(timeout=30)
        except subprocess.TimeoutExpired:
            node.kill()
            node.wait()
        cluster.shutdown()
