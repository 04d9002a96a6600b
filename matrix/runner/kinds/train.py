"""`train`: the method's objective on its training set, starting from the base model."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from matrix.runner.kinds.construct import load_examples
from matrix.runner.kinds.data import resolve
from matrix.runner.kinds.model import model_dir
from matrix.runner.stage import KINDS, Dtype, StageContext, StageKind, StageParams


@KINDS.register("train")
class TrainStage(StageKind):
    VERSION = 1
    # Reusable worker on the CPU: the process group is torn down after every run (methods/_dist.py
    # process_group) and the peak memory counts from the stage's start (matrix.memory); a stage holding a
    # GPU gets a process of its own anyway (StageKind.fresh_worker). Measured: a train stage in a fresh
    # process imports torch, transformers' modeling code, peft and DeepSpeed first (~10 s on 2 cores).
    FRESH_PROCESS = False
    LOADS_MODEL = True
    SKIP_KEY_FIELDS = frozenset({"dtype", "gradient_checkpointing"})

    class Params(StageParams):
        objective: str
        hp: dict[str, Any]  # a TrainingSpec less its run-time fields (`matrix.settings.training_params`)
        dtype: Dtype = "float32"  # the base model's: its frozen weights stay in it
        gradient_checkpointing: bool = False

    def run(self, params: Params, inputs, out: Path, ctx: StageContext):
        args = dict(
            base_model_dir=model_dir(inputs["model"]),
            examples=load_examples(inputs["examples"]),
            image_root=resolve(inputs["data"], "image_root"),
            objective=params.objective,
            hp=params.hp,
            template=inputs["model"].result["template"],
            device=ctx.device,
            dtype=params.dtype,
            gradient_checkpointing=params.gradient_checkpointing,
            family=inputs["model"].result.get("family"),
        )
        if ctx.device == "cpu":  # DeepSpeed picks its accelerator on import: CUDA wherever a GPU is visible
            os.environ.setdefault("DS_ACCELERATOR", "cpu")
        ranks = int(ctx.num_gpus) if ctx.num_gpus >= 2 else 1
        if ranks > 1:  # one process per GPU of this task, DeepSpeed across them (matrix/methods/launch.py)
            from matrix.methods.launch import launch

            return launch(ranks, args, out, out / ".ranks")
        from matrix.methods.trainer import train

        return train(**args, out_dir=out)
