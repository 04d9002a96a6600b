"""The quickstart's GT-DPO row through the CLI, with run-time settings from the spec: every stage that
loads a model records that it ran on the CPU in bf16 with the batch sizes asked for; and evaluate
stages given a GPU on this CPU-only machine fail at once, naming CUDA, without losing anything else.

One sweep, two runs: first with the GPU override (the evaluate stages fail, `matrix run` exits 1),
then without it (the run completes from there, re-running nothing that was done)."""
import json
import sqlite3

import pytest
from tests.runner.sweeps import matrix

pytestmark = pytest.mark.slow


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


# A smaller world than the quickstart's (the issue allows it): 40 examples, two benchmarks, one of them
# judged (answer stage + scoring stage) and one with its own batch size.
SETS = ["scales=[40]", "datasets.shapes-vqa.size=60", "base_models.tiny.dtype=bfloat16", "generation.batch_size=4",
        "evaluation.batch_size=5", "benchmarks=[{id: pope, synthetic: 12, batch_size: 3}, {id: mmvet, synthetic: 6}]",
        "tables=[]", "training.batch_size=8", "training.micro_batch_size=8", "training.max_length=128"]
GPU = ["ray.num_gpus=1", "resources.evaluate.gpus=1"]


def _args(out, extra=()):
    args = ["run", "specs/quickstart.yaml", "--only", "method=gt-dpo", "--set", f"output_dir={out}"]
    for s in [*SETS, *extra]:
        args += ["--set", s]
    return args


def _rows(out):
    with sqlite3.connect(out / "matrix.db") as con:
        rows = con.execute("SELECT key, kind, label, params, deps, status, finished, result, error FROM stages").fetchall()
    return {r[2]: {"key": r[0], "kind": r[1], "params": json.loads(r[3]), "deps": json.loads(r[4]), "status": r[5],
                   "finished": r[6], "result": json.loads(r[7] or "{}"), "error": r[8]} for r in rows}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu-path") / "run"
    failed = matrix(*_args(out, GPU), check=False)
    before = _rows(out)
    completed = matrix(*_args(out))
    return failed, before, completed, _rows(out)


@pytest.mark.skipif(_cuda(), reason="CUDA works here: the evaluate stages would run on the GPU, not fail")
def test_evaluate_stages_holding_a_gpu_without_cuda_fail_at_once_and_lose_nothing(sweep):
    failed, before, completed, after = sweep
    assert failed.returncode == 1, failed.stdout + failed.stderr
    answering = {label: r for label, r in before.items() if r["kind"] == "evaluate" and "model" in r["deps"]}
    assert {label.split()[1] for label in answering} == {"pope", "mmvet"}
    for label, r in answering.items():
        assert r["status"] == "failed" and "PlacementError" in r["error"] and "CUDA is not usable" in r["error"]
        assert f"stage '{label}' holds 1 GPU on node" in r["error"]
        listed = [line for line in failed.stderr.splitlines() if line.startswith(f"failed: {label}:")]
        assert listed and "CUDA" in listed[0]
    # everything upstream ran and stays done; the run without the override re-runs none of it
    upstream = {label: r for label, r in before.items() if r["kind"] != "evaluate"}
    assert {r["kind"] for r in upstream.values()} >= {"model", "data", "subset", "generate", "construct", "train"}
    assert all(r["status"] == "done" for r in upstream.values())
    assert completed.returncode == 0 and "failed 0" in completed.stdout
    assert all(after[label]["finished"] == r["finished"] and after[label]["key"] == r["key"]
               for label, r in upstream.items())
    assert all(r["status"] == "done" for r in after.values())


def test_every_model_loading_stage_records_cpu_bf16_and_its_batch_size(sweep):
    _, _, completed, after = sweep
    assert completed.returncode == 0, completed.stdout + completed.stderr
    # which stages load a model is read off the graph (a model input), not off the runtime record
    loading = {label: r for label, r in after.items()
               if r["kind"] in ("generate", "construct", "train", "evaluate", "merge") and "model" in r["deps"]}
    kinds = sorted(r["kind"] for r in loading.values())
    assert kinds == ["evaluate", "evaluate", "generate", "train"]  # GT-DPO: greedy answers, DPO, two benchmarks
    expected = {"generate": 4, "train": 8}  # generation.batch_size; the micro-batch a train step feeds
    for label, r in loading.items():
        runtime = r["result"]["runtime"]
        batch = expected.get(r["kind"]) or (3 if "pope" in label else 5)  # pope's own; evaluation.batch_size
        assert (runtime["device"], runtime["dtype"], runtime["batch_size"]) == ("cpu", "bfloat16", batch), label
    # a stage that loads no model records no runtime
    assert all("runtime" not in r["result"] for label, r in after.items() if label not in loading)
    status = matrix("status", _out_dir(completed), "--runtime")
    assert "bfloat16" in status.stdout and "how the model-loading stages ran" in status.stdout


def _out_dir(proc) -> str:
    args = list(proc.args)
    return next(a.split("=", 1)[1] for a in args if str(a).startswith("output_dir="))
