"""LLaVA-NeXT checkpoints in the llava-hf layout (e.g. llava-v1.6-vicuna-13b-hf), read from a local
directory, like LLaVA-1.5's. They load as `LlavaNextForConditionalGeneration`, each image is tiled at its
own resolution (anyres) and its token count comes from its size (the processor's own rule), so
generation, training and evaluation take them as they take LLaVA-1.5 (tested on a tiny LLaVA-NeXT)."""
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
    model_type = "llava_next"
    model_class = "LlavaNextForConditionalGeneration"
    anyres = True

    def materialise(self, params: dict[str, Any], out_dir: Path) -> dict[str, Any]:
        config = Path(params["path"]) / "config.json"
        if not config.exists():
            raise FileNotFoundError(f"{config} not found: expected a llava-hf LLaVA-NeXT model directory")
        kind = json.loads(config.read_text()).get("model_type")
        if kind != "llava_next":
            raise ValueError(f"{config}: model_type is {kind!r}, not 'llava_next'; use family 'llava' for LLaVA-1.5")
        return {"source": "external", "path": params["path"]}

    def num_image_tokens(self, model) -> int:
        return 0  # per image, from its size

    def image_tokens(self, handle, size: tuple[int, int] | None) -> int:
        if size is None:
            raise ValueError("LLaVA-NeXT counts image tokens per image: the image size is needed")
        crop = handle.image_processor.crop_size
        n = handle.processor._get_number_of_features(size[1], size[0], crop["height"], crop["width"])
        return n - 1 if handle.processor.vision_feature_select_strategy == "default" else n

    def vision_inputs(self, handle, images: list) -> dict:
        out = handle.image_processor(images=images, return_tensors="pt")
        return {"pixel_values": out["pixel_values"].to(handle.model.dtype), "image_sizes": out["image_sizes"]}
