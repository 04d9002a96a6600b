"""Run-time settings stay out of keys; a stage holding a GPU it cannot use fails before doing anything."""
import socket

import pytest

from matrix.api import plan
from matrix.specfile import load_spec
from matrix.runner.placement import PlacementError, device_for
from matrix.runner.stage import Stage, StageContext

REPO_SPEC = "specs/quickstart.yaml"


def _cuda_usable() -> bool:
    import torch

    return torch.cuda.is_available()


def test_a_stage_without_gpus_runs_on_the_cpu(tmp_path):
    assert device_for(StageContext(tmp_path, 1, 0, "k", "evaluate pope tiny (base)")) == "cpu"


@pytest.mark.skipif(_cuda_usable(), reason="this machine has working CUDA: the refusal cannot be shown here")
def test_a_stage_holding_a_gpu_without_cuda_fails_naming_stage_node_and_gpu(tmp_path):
    with pytest.raises(PlacementError) as err:
        device_for(StageContext(tmp_path, 1, 1, "k", "answer pope tiny (base)"))
    msg = str(err.value)
    assert "'answer pope tiny (base)'" in msg and "holds 1 GPU" in msg and socket.gethostname() in msg
    assert "CUDA is not usable" in msg and "not run on the CPU" in msg


def test_unknown_stage_parameters_fail_when_the_stage_is_made():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="max_new_token"):
        Stage("generate", {"mode": "greedy", "max_new_token": 16})


def test_run_time_settings_leave_keys_alone_and_reach_the_stages():
    """dtype, batch sizes and gradient checkpointing change no key of the graph, and each reaches the
    params of every stage that applies it (a setting no stage reads would fail here)."""
    base = plan(load_spec(REPO_SPEC))
    changed = plan(load_spec(REPO_SPEC, ["base_models.tiny.dtype=bfloat16", "generation.batch_size=4",
                                         "evaluation.batch_size=auto", "training.gradient_checkpointing=true",
                                         "benchmarks.6.batch_size=3"]))
    assert set(base.graph.stages) == set(changed.graph.stages)
    stages = list(changed.graph.stages.values())
    gen = [s for s in stages if s.kind == "generate"]
    train = [s for s in stages if s.kind == "train"]
    answer = [s for s in stages if s.kind == "evaluate" and "shards" not in s.params]
    assert gen and train and answer
    assert all(s.params["batch_size"] == 4 and s.params["dtype"] == "bfloat16" for s in gen)
    assert all(s.params["gradient_checkpointing"] is True and s.params["dtype"] == "bfloat16" for s in train)
    assert all(s.params["dtype"] == "bfloat16" for s in answer)
    # benchmarks[6] is pope: its own batch size; every other benchmark takes evaluation.batch_size
    assert {s.params["batch_size"] for s in answer if s.params["benchmark"] == "pope"} == {3}
    assert {s.params["batch_size"] for s in answer if s.params["benchmark"] != "pope"} == {"auto"}
    sima = [s for s in stages if s.kind == "construct" and s.params["method"] == "sima"]
    assert sima and all(s.params["batch_size"] == 4 and s.params["dtype"] == "bfloat16" for s in sima)
    # the judged benchmarks' scoring stages carry the judge's settings, outside their key too
    scoring = [s for s in stages if s.kind == "evaluate" and s.params.get("judge")]
    assert scoring and all(s.params["judge_settings"]["model"] == "shapes-reference" for s in scoring)


def test_a_keyed_parameter_still_changes_the_key():
    a = Stage("generate", {"mode": "greedy", "max_new_tokens": 16, "batch_size": 4, "dtype": "bfloat16"})
    b = Stage("generate", {"mode": "greedy", "max_new_tokens": 16})
    c = Stage("generate", {"mode": "greedy", "max_new_tokens": 32, "batch_size": 4})
    assert a.key == b.key != c.key
