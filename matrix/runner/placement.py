"""Where a model-loading stage runs, and the record of how it ran.

A stage that holds GPUs runs on the first GPU Ray assigned it (Ray sets the task's
`CUDA_VISIBLE_DEVICES`, so that is `cuda:0` inside the task; multi-GPU training starts one process per
GPU, `matrix.methods.launch`; multi-GPU answering is `benchmarks[].shards`). A stage that holds no GPU runs on
the CPU. A stage that holds a GPU where CUDA does not work fails at once, naming itself, the node and
what it holds: silently decoding a 7B model on the CPU while a GPU sits reserved is the failure this
prevents.
"""
from __future__ import annotations

import os
import socket
from typing import Any

from matrix.runner.stage import StageContext


class PlacementError(RuntimeError):
    """A stage holds GPUs that it cannot use."""


def _node() -> str:
    host = socket.gethostname()
    try:
        import ray

        if ray.is_initialized():
            return f"{host} (Ray node {ray.get_runtime_context().get_node_id()[:12]})"
    except Exception:  # noqa: BLE001 - outside a Ray task the host name is all there is
        pass
    return host


def _cuda_problem() -> str | None:
    """Why CUDA is not usable in this process, or None when it is."""
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if torch.version.cuda is None:
        return f"this torch ({torch.__version__}) is built without CUDA"
    try:
        if not torch.cuda.is_available() or torch.cuda.device_count() < 1:
            visible = os.environ.get("CUDA_VISIBLE_DEVICES")
            return f"torch.cuda.is_available() is False (CUDA_VISIBLE_DEVICES={visible!r})"
    except RuntimeError as e:  # a broken driver raises here
        return f"CUDA initialisation failed: {e}"
    return None


def device_for(ctx: StageContext) -> str:
    """`cuda:0` for a stage holding GPUs (checked usable), `cpu` for one holding none."""
    if ctx.num_gpus <= 0:
        return "cpu"
    problem = _cuda_problem()
    if problem:
        raise PlacementError(
            f"stage '{ctx.label}' holds {ctx.num_gpus:g} GPU on node {_node()}, but CUDA is not usable there: "
            f"{problem}. It was not run on the CPU instead; run it where CUDA works, or give its kind no "
            f"GPU (resources.<kind>.gpus: 0) to run it on the CPU."
        )
    return "cuda:0"


def describe(model: Any, batch_size: int | None, **extra: Any) -> dict[str, Any]:
    """A stage result's `runtime`: device and dtype read off the loaded model, the batch size applied."""
    try:
        param = next(p for p in model.parameters() if not p.requires_grad)
    except StopIteration:
        param = next(model.parameters())
    return {"device": str(param.device), "dtype": str(param.dtype).removeprefix("torch."),
            "batch_size": batch_size, **extra}
