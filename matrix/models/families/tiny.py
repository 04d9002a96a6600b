"""The tiny offline LLaVA, built by the bootstrap recipe (or copied from the shipped checkpoint), or read
from `path` (a folder `python -m matrix.models.bootstrap` wrote: a candidate to try before shipping it);
a LLaVA-1.5 architecture, loaded and fed as `llava` is."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from matrix.models.families.llava import LlavaFamily
from matrix.models.family import FAMILIES

SHIPPED = Path(__file__).resolve().parents[2] / "assets" / "tiny-base"


@FAMILIES.register("tiny")
class TinyFamily(LlavaFamily):
    id = "tiny"
    default_template = "plain_v1"

    def stage_params(self, entry) -> dict[str, Any]:
        if entry.path is not None:  # a model folder, as `llava` reads one
            return super().stage_params(entry)
        from matrix.models.bootstrap import DEFAULT_RECIPE

        return {"recipe": {**DEFAULT_RECIPE, **entry.recipe}}

    def missing_files(self, entry) -> list[str]:
        return super().missing_files(entry) if entry.path is not None else []

    def materialise(self, params: dict[str, Any], out_dir: Path) -> dict[str, Any]:
        if "recipe" not in params:
            return super().materialise(params, out_dir)
        recipe = params["recipe"]
        target = out_dir / "model"
        shipped_recipe = SHIPPED / "recipe.json"
        if shipped_recipe.exists() and json.loads(shipped_recipe.read_text()) == recipe:
            # The repository ships this exact recipe's result; rebuilding it would cost minutes of CPU.
            shutil.copytree(SHIPPED, target)
            return {"source": "shipped checkpoint", "path": str(SHIPPED)}
        from matrix.models.bootstrap import bootstrap

        stats = bootstrap(target, recipe)
        return {"source": "bootstrap", **stats}

    def model_dir(self, params: dict[str, Any], artifact_dir: Path) -> Path:
        return artifact_dir / "model" if "recipe" in params else super().model_dir(params, artifact_dir)
