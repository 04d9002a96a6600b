"""`model`: make a base model loadable (build the tiny one, or check an external checkpoint)."""
from __future__ import annotations

from pathlib import Path

from matrix.models.family import FAMILIES
from pydantic import ConfigDict

from matrix.runner.stage import KINDS, StageKind, StageParams


@KINDS.register("model")
class ModelStage(StageKind):
    VERSION = 1

    class Params(StageParams):
        model_config = ConfigDict(extra="allow")  # the rest is the family's (`ModelFamily.stage_params`)
        family: str
        template: str

    def run(self, params: Params, inputs, out: Path, ctx):
        family = FAMILIES.get(params.family)()
        raw = params.model_dump()
        result = family.materialise(raw, out)
        model_dir = family.model_dir(raw, out)
        # Relative when inside the artifact (it is renamed into place after this returns).
        result["model_dir"] = str(model_dir.relative_to(out)) if model_dir.is_relative_to(out) else str(model_dir)
        result["template"] = params.template
        result["family"] = params.family  # which family loads it (`matrix.models.family.family_for`)
        return result


def model_dir(model_input) -> Path:
    """The loadable model directory of an upstream `model` stage."""
    return model_input.dir / model_input.result["model_dir"]
