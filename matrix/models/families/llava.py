"""LLaVA-1.5 checkpoints read from a local directory (never downloaded): the llava-hf layout as it is, or
an original-LLaVA checkpoint (`LlavaLlamaForCausalLM` with `mm_projector`, as liuhaotian/llava-v1.5-7b and
the released SeVa / SIMA / CSR weights are saved), converted once into the llava-hf layout by the
`model` stage (`matrix.models.llava_original`), whose artifact later stages load. Also how any
LLaVA-1.5-architecture directory is loaded and fed: images padded to a square with the processor's mean
colour (`image_aspect_ratio=pad`), a fixed number of image tokens per image."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from matrix.models.family import FAMILIES, ModelFamily


@FAMILIES.register("llava")
class LlavaFamily(ModelFamily):
    id = "llava"
    default_template = "vicuna_v1"
    model_type = "llava"
    model_class = "LlavaForConditionalGeneration"  # the transformers class of `model_type`

    def stage_params(self, entry) -> dict[str, Any]:
        path = Path(entry.path).expanduser().resolve() if entry.path else None
        config = path / "config.json" if path else None
        # The config's content stands in for the weights' identity: hashing 14 GB per plan is too slow.
        fingerprint = hashlib.sha256(config.read_bytes()).hexdigest()[:16] if config and config.exists() else None
        params = {"path": str(path), "config_sha": fingerprint, "dtype": entry.dtype}
        if fingerprint is not None and self._original(path):
            params["format"] = "original"  # absent for llava-hf folders: their stage keys stay as they were
        return params

    @staticmethod
    def _original(path: Path) -> bool:
        from matrix.models.llava_original import checkpoint_format

        return checkpoint_format(path) == "original"

    def missing_files(self, entry) -> list[str]:
        if entry.path is None:
            return ["'path' is required: a local llava-hf model directory (e.g. llava-1.5-7b-hf) or an "
                    "original LLaVA checkpoint (e.g. llava-v1.5-7b)"]
        config = Path(entry.path).expanduser() / "config.json"
        if not config.exists():
            return [f"{config} not found: put a llava-hf or original LLaVA checkpoint (config.json, weights, "
                    "tokenizer) there"]
        return []

    def materialise(self, params: dict[str, Any], out_dir: Path) -> dict[str, Any]:
        config = Path(params["path"]) / "config.json"
        if not config.exists():
            raise FileNotFoundError(f"{config} not found: expected a llava-hf or original LLaVA model directory")
        if params.get("format") == "original":
            from matrix.models.handle import write_meta
            from matrix.models.llava_original import convert

            summary = convert(Path(params["path"]), out_dir / "model")
            write_meta(out_dir / "model", self.id, params["template"], converted_from=params["path"])
            return {"source": "converted", "path": params["path"], **summary}
        return {"source": "external", "path": params["path"]}

    def model_dir(self, params: dict[str, Any], artifact_dir: Path) -> Path:
        if params.get("format") == "original":
            return artifact_dir / "model"
        return Path(params["path"])

    # ---- using the model directory ------------------------------------------------------------
    def load(self, model_dir: Path, device: str = "cpu", dtype: str = "float32") -> tuple[Any, Any]:
        import torch
        import transformers

        model_dir = Path(model_dir)
        if not (model_dir / "config.json").exists():
            raise FileNotFoundError(f"{model_dir}: no config.json; expected a llava-hf model directory")
        cls = getattr(transformers, self.model_class)
        model = cls.from_pretrained(model_dir, local_files_only=True, dtype=getattr(torch, dtype)).to(device)
        return model, transformers.AutoProcessor.from_pretrained(model_dir, local_files_only=True)

    def num_image_tokens(self, model) -> int:
        cfg = model.config
        n = (cfg.vision_config.image_size // cfg.vision_config.patch_size) ** 2
        return n + 1 if getattr(cfg, "vision_feature_select_strategy", "default") == "full" else n

    def vision_inputs(self, handle, images: list) -> dict:
        out = handle.image_processor(images=[expand2square(im, handle.image_processor) for im in images],
                                     return_tensors="pt")
        return {"pixel_values": out["pixel_values"].to(handle.model.dtype)}


def expand2square(image, image_processor):
    """LLaVA-1.5's `image_aspect_ratio=pad`: pad to a square with the processor's mean colour."""
    from PIL import Image

    w, h = image.size
    if w == h:
        return image
    mean = tuple(int(x * 255) for x in image_processor.image_mean)
    side = max(w, h)
    canvas = Image.new(image.mode, (side, side), mean)
    canvas.paste(image, ((side - w) // 2, (side - h) // 2))
    return canvas
