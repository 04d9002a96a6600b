"""`model`: make a base model loadable (build the tiny one, or check an external checkpoint)."""
from __future__ import annotations

from pathlib import Path

from matrix.models.family import FAMILIES
from runner.stage import KINDS, StageKind


@KINDS.register("model")
class ModelStage(StageKind):
    VERSION = 1

    def run(self, params, inputs, out: Path, ctx):
        family = FAMILIES.get(params["family"])()
        result = family.materialise(params, out)
        model_dir = family.model_dir(params, out)
        # Relative when inside the artifact (it is renamed into place after this returns).
        result["model_dir"] = str(model_dir.relative_to(out)) if model_dir.is_relative_to(out) else str(model_dir)
        result["template"] = params["template"]
        return result


def model_dir(model_input) -> Path:
    """The loadable model directory of an upstream `model` stage."""
    return model_input.dir / model_input.result["model_dir"]
