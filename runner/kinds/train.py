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
        from methods.trainer import train

        return train(
            base_model_dir=model_dir(inputs["model"]),
            examples=load_examples(inputs["examples"]),
            image_root=resolve(inputs["data"], "image_root"),
            objective=params["objective"],
            hp=params["hp"],
            out_dir=out,
            template=inputs["model"].result["template"],
        )
