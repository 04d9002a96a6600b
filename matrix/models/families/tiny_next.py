"""`tiny-next`: the tiny LLaVA in LLaVA-NeXT form, so the shapes world exercises the anyres path (Table 4's
LLaVA-NeXT) on CPU. Its weights are the tiny family's (the shipped checkpoint or a bootstrap recipe's
result); what LLaVA-NeXT adds is new: image tiling on a small grid (48x96, 96x48, 96x96 for 48-pixel
tiles) and the row-end `image_newline` embedding, freshly initialised. It is therefore a differently
wired (and untrained for tiling) model, not a stronger one."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from matrix.models.family import FAMILIES
from matrix.models.families.llava_next import LlavaNextFamily
from matrix.models.families.tiny import TinyFamily

PINPOINTS = [[48, 96], [96, 48], [96, 96]]


def to_llava_next(src: Path, out: Path, seed: int = 0) -> None:
    """Write `src` (a tiny LLaVA directory) as a LLaVA-NeXT model directory `out`."""
    import torch
    from transformers import (LlavaNextConfig, LlavaNextForConditionalGeneration, LlavaNextImageProcessorPil,
                              LlavaNextProcessor)

    from matrix.models.handle import load, read_meta, write_meta

    base = load(src)
    cfg = base.model.config
    torch.manual_seed(seed)
    config = LlavaNextConfig(vision_config=cfg.vision_config, text_config=cfg.text_config,
                             image_token_id=cfg.image_token_id, image_grid_pinpoints=PINPOINTS,
                             vision_feature_select_strategy="default", vision_feature_layer=-1,
                             tie_word_embeddings=cfg.tie_word_embeddings)
    model = LlavaNextForConditionalGeneration(config)
    missing, unexpected = model.load_state_dict(base.model.state_dict(), strict=False)
    if unexpected or any("image_newline" not in m for m in missing):
        raise ValueError(f"{src}: weights do not map onto LLaVA-NeXT (missing {missing}, unexpected {unexpected})")
    model.generation_config = base.model.generation_config
    ip = base.image_processor
    crop = ip.crop_size
    processor = LlavaNextProcessor(
        image_processor=LlavaNextImageProcessorPil(size={"shortest_edge": crop["height"]}, crop_size=dict(crop),
                                                   image_mean=ip.image_mean, image_std=ip.image_std,
                                                   image_grid_pinpoints=PINPOINTS),
        tokenizer=base.tokenizer, patch_size=cfg.vision_config.patch_size, vision_feature_select_strategy="default",
        num_additional_image_tokens=1)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    write_meta(out, "tiny-next", read_meta(src).get("template", "plain_v1"))


@FAMILIES.register("tiny-next")
class TinyNextFamily(TinyFamily, LlavaNextFamily):
    """Built as `tiny` is (TinyFamily first in the bases), loaded and fed as `llava-next` is."""

    id = "tiny-next"

    def materialise(self, params: dict[str, Any], out_dir: Path) -> dict[str, Any]:
        source = super().materialise(params, out_dir / "llava")
        to_llava_next(out_dir / "llava" / "model", out_dir / "model")
        return {**source, "converted": "llava-next", "grid_pinpoints": PINPOINTS}
