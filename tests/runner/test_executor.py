"""Placement checks that need no cluster: an impossible request is known before submission."""
from matrix.spec import ResourceSpec
from matrix.runner.executor import describe_nodes, fits

NODES = [{"CPU": 2.0, "memory": 8 * 2**30}, {"CPU": 16.0, "GPU": 4.0, "memory": 64 * 2**30}]


def test_fits_needs_one_node_with_everything():
    assert fits(ResourceSpec(cpus=1), NODES)
    assert fits(ResourceSpec(cpus=8, gpus=4), NODES)
    assert not fits(ResourceSpec(cpus=1, gpus=8), NODES)  # 8 GPUs exist nowhere
    assert not fits(ResourceSpec(cpus=17), NODES)
    assert not fits(ResourceSpec(cpus=1, gpus=1, memory_gb=100), NODES)
    assert not fits(ResourceSpec(cpus=1), [])


def test_description_lists_each_node():
    text = describe_nodes(NODES)
    assert "2 CPU, 0 GPU, 8.0 GiB" in text and "16 CPU, 4 GPU, 64.0 GiB" in text
    assert describe_nodes([]) == "no alive nodes"
