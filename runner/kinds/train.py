"""`train`: the method's objective on its training set, starting from the base model."""
from __future__ import annotations

from pathlib import Path

from runner.kinds.construct import load_examples
from runner.kinds.data import resolve
from runner.kinds.model import model_dir
from runner.stage import KINDS, StageKind


@KINDS.register("train")
class TrainStage(StageKind):
    VERSION = 1
    FRESH_PROCESS = True  # a process group and peak-memory accounting per training run

    def run(self, params, inputs, out: Path, ctx):
        args = dict(
            base_model_dir=model_dir(inputs["model"]),
            examples=load_examples(inputs["examples"]),
            image_root=resolve(inputs["data"], "image_root"),
            objective=params["objective"],
            hp=params["hp"],
            template=inputs["model"].result["template"],
        )
        ranks = int(ctx.num_gpus) if ctx.num_gpus >= 2 else 1
        if ranks > 1:  # one process per GPU of this task, DeepSpeed across them (methods/launch.py)
            from methods.launch import launch

            return launch(ranks, args, out, out / ".ranks")
        from methods.trainer import train

        return train(**args, out_dir=out)
