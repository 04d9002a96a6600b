"""The tiny world's image-text similarity model: a CLIP small enough to train on 2 CPU cores.

CSR scores each sampled sentence by how well it matches the image (CLIP ViT-L/14-336 in its paper).
Offline, the shapes world supplies its own: a `CLIPModel` (2-layer text and vision towers, 64 wide)
trained contrastively on rendered scenes paired with single sentences of their detailed descriptions
(`matrix.world.datasets.detailed_description`), every other image of a batch a negative. It shares the
tiny LLaVA's tokenizer, so no second vocabulary is built, plus one end-of-text token with the highest
id, which every text ends with and where CLIP's text tower pools (as in CLIP's own vocabulary; with the
LLaVA tokenizer's `</s>`, id 2, transformers falls back to pooling at the highest token id of the text).

    python -m matrix.models.tiny_clip OUT [--steps N] [--seed S]

writes a CLIP directory (`config.json`, weights, tokenizer, `preprocessor_config.json`, `recipe.json`,
`stats.json`) loadable by `transformers.CLIPModel.from_pretrained`; the repository ships one built with
the default recipe in `matrix/assets/tiny-clip/`. `stats.json` holds its held-out check: for scenes it
never saw, how often a true sentence about an object scores above the same sentence with the object's
colour or shape changed.
"""
from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from matrix.models.tiny import WORLD_PIXEL_MEAN, WORLD_PIXEL_STD

ASSET = Path(__file__).resolve().parent.parent / "assets" / "tiny-clip"
TOKENIZER_SOURCE = Path(__file__).resolve().parent.parent / "assets" / "tiny-base"
END_OF_TEXT = "<|endoftext|>"
RECIPE = {"steps": 3000, "batch_size": 64, "lr": 1e-3, "seed": 0, "width": 64, "layers": 2, "heads": 4,
          "image_size": 48, "patch_size": 8, "max_text_tokens": 48}


def _sentences(scene) -> list[str]:
    from matrix.world.datasets import detailed_description

    return [s.strip() + "." for s in detailed_description(scene).rstrip(".").split(". ")]


def load(path: Path):
    """(model, tokenizer, image processor) of a CLIP directory (ours or an official HF one), on CPU."""
    from transformers import AutoTokenizer, CLIPImageProcessorPil, CLIPModel

    path = Path(path)
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"{path}: no config.json; expected a CLIP model directory (HF layout)")
    model = CLIPModel.from_pretrained(path, local_files_only=True).eval()
    return model, AutoTokenizer.from_pretrained(path, local_files_only=True), \
        CLIPImageProcessorPil.from_pretrained(path, local_files_only=True)


def similarity(clip, image, texts: list[str]) -> list[float]:
    """CLIP's `logits_per_image` of one image against each text (higher: a better match)."""
    import torch

    model, tokenizer, processor = clip
    if not texts:
        return []
    eos = tokenizer.eos_token or ""
    limit = model.config.text_config.max_position_embeddings
    enc = tokenizer([t if t.endswith(eos) and eos else t + eos for t in texts], padding=True, truncation=True,
                    max_length=limit, return_tensors="pt")
    pixels = processor(images=[image], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        out = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], pixel_values=pixels)
    return out.logits_per_image[0].tolist()


def _tokenizer():
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(TOKENIZER_SOURCE, local_files_only=True)
    tok.padding_side = "right"
    tok.add_special_tokens({"eos_token": END_OF_TEXT})
    return tok


def build(out: Path, recipe: dict | None = None, log=print) -> dict:
    import torch
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPTextConfig, CLIPVisionConfig

    from matrix.world.scene import draw_scene, render

    r = {**RECIPE, **(recipe or {})}
    torch.manual_seed(r["seed"])
    rng = random.Random(r["seed"])
    tok = _tokenizer()
    w = r["width"]
    config = CLIPConfig(
        text_config=CLIPTextConfig(vocab_size=len(tok), hidden_size=w, intermediate_size=4 * w,
                                   num_hidden_layers=r["layers"], num_attention_heads=r["heads"],
                                   max_position_embeddings=r["max_text_tokens"], bos_token_id=tok.bos_token_id,
                                   eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id),
        vision_config=CLIPVisionConfig(hidden_size=w, intermediate_size=4 * w, num_hidden_layers=r["layers"],
                                       num_attention_heads=r["heads"], image_size=r["image_size"],
                                       patch_size=r["patch_size"]),
        projection_dim=w,
    )
    model = CLIPModel(config)
    processor = CLIPImageProcessorPil(size={"shortest_edge": r["image_size"]},
                                      crop_size={"height": r["image_size"], "width": r["image_size"]},
                                      image_mean=list(WORLD_PIXEL_MEAN), image_std=list(WORLD_PIXEL_STD))
    opt = torch.optim.AdamW(model.parameters(), lr=r["lr"], weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=r["lr"], total_steps=r["steps"], pct_start=0.05)
    model.train()
    start = time.time()
    for step in range(r["steps"]):
        scenes = [draw_scene(rng) for _ in range(r["batch_size"])]
        texts = [rng.choice(_sentences(s)) + tok.eos_token for s in scenes]
        enc = tok(texts, padding=True, return_tensors="pt")
        pixels = processor(images=[render(s) for s in scenes], return_tensors="pt")["pixel_values"]
        loss = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], pixel_values=pixels,
                     return_loss=True).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 200 == 0 or step == r["steps"] - 1:
            log(f"step {step} loss {loss.item():.3f} ({time.time() - start:.0f} s)")
    model.eval()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    processor.save_pretrained(out)
    (out / "recipe.json").write_text(json.dumps(r, indent=1))
    stats = probe((model, tok, processor), seed=r["seed"] + 1)
    stats["train_seconds"] = round(time.time() - start, 1)
    (out / "stats.json").write_text(json.dumps(stats, indent=1))
    return stats


def probe(clip, seed: int = 1, scenes: int = 200) -> dict:
    """On fresh scenes: how often "There is <colour> <shape> at <position>." outscores the same sentence
    with another colour, and with another shape (chance: 0.5)."""
    from matrix.world import language
    from matrix.world.scene import COLOURS, SHAPES, draw_scene, render

    rng = random.Random(seed)
    wins = {"colour": 0, "shape": 0}
    for _ in range(scenes):
        scene = draw_scene(rng)
        obj = rng.choice(scene.objects)
        true = f"There is {language.describe(obj)}."
        other_colour = true.replace(obj.colour, rng.choice([c for c in COLOURS if c != obj.colour]), 1)
        other_shape = true.replace(obj.shape, rng.choice([s for s in SHAPES if s != obj.shape]), 1)
        s = similarity(clip, render(scene), [true, other_colour, other_shape])
        wins["colour"] += s[0] > s[1]
        wins["shape"] += s[0] > s[2]
    return {"heldout_scenes": scenes, "colour_pairwise": wins["colour"] / scenes, "shape_pairwise": wins["shape"] / scenes}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Train the tiny world's CLIP (CSR's image-text scorer).")
    p.add_argument("out", type=Path)
    p.add_argument("--steps", type=int, default=RECIPE["steps"])
    p.add_argument("--seed", type=int, default=RECIPE["seed"])
    args = p.parse_args(argv)
    print(json.dumps(build(args.out, {"steps": args.steps, "seed": args.seed}), indent=1))


if __name__ == "__main__":
    main()
