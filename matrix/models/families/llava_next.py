"""LLaVA-NeXT checkpoints in the llava-hf layout (e.g. llava-v1.6-vicuna-13b-hf), read from a local
directory: planned, cached and fingerprinted like LLaVA-1.5 checkpoints.

Running them is not supported yet, and the model stage says so before anything loads: LLaVA-NeXT tiles
each image at its own resolution ("anyres"), so the number of image tokens differs per image, while the
model handle (`matrix.models.handle`) feeds LLaVA-1.5's fixed count. Specs naming this family (Table 4)
validate and plan; a run stops at the model stage with that message.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from matrix.models.family import FAMILIES
from matrix.models.families.llava import LlavaFamily


@FAMILIES.register("llava-next")
class LlavaNextFamily(LlavaFamily):
    id = "llava-next"
    default_template = "vicuna_v1"

    def materialise(self, params: dict[str, Any], out_dir: Path) -> dict[str, Any]:
        config = Path(params["path"]) / "config.json"
        if not config.exists():
            raise FileNotFoundError(f"{config} not found: expected a llava-hf LLaVA-NeXT model directory")
        kind = json.loads(config.read_text()).get("model_type")
        if kind != "llava_next":
            raise ValueError(f"{config}: model_type is {kind!r}, not 'llava_next'; use family 'llava' for LLaVA-1.5")
        raise NotImplementedError(
            f"{params['path']}: LLaVA-NeXT checkpoints plan but do not run yet: their per-image token count "
            "(anyres tiling) is not supported by the model handle")
