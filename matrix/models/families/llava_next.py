"""LLaVA-NeXT checkpoints in the llava-hf layout (e.g. llava-v1.6-vicuna-13b-hf), read from a local
directory, like LLaVA-1.5's. The model handle loads them as `LlavaNextForConditionalGeneration` and
counts each image's tokens from its size (anyres tiling: the processor's own rule), so generation,
training and evaluation take them as they take LLaVA-1.5 (tested on a tiny LLaVA-NeXT)."""
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
        return {"source": "external", "path": params["path"]}
