"""`generate`: the base model's own answers to the subset's questions (shared by every method)."""
from __future__ import annotations

import json
import time
from pathlib import Path

from PIL import Image

from runner.kinds.data import resolve
from runner.kinds.model import model_dir
from runner.kinds.subset import load_subset
from runner.stage import KINDS, StageKind

MODES = {
    "greedy": {"do_sample": False},
    # SIMA's sampled half: temperature 0.8, top-p 0.9.
    "sampled": {"do_sample": True, "temperature": 0.8, "top_p": 0.9},
    # SeVa's rejected half: greedy on the augmented image (params name the augmentation and its settings).
    "augmented": {"do_sample": False},
    # CSR: a sentence-level search tree per question (`methods.csr.sentence_trees`; params hold `search`).
    "sentences": {},
}


@KINDS.register("generate")
class GenerateStage(StageKind):
    VERSION = 1  # new modes add keys, they do not change what an existing key computes

    def run(self, params, inputs, out: Path, ctx):
        from matrix.models.handle import load
        from methods.base import question_items

        mode = params["mode"]
        if mode not in MODES:
            raise ValueError(f"unknown generation mode {mode!r}; known: {', '.join(MODES)}")
        handle = load(model_dir(inputs["model"]), template=inputs["model"].result["template"])
        records = load_subset(inputs["data"], inputs["subset"])
        items = question_items(records)
        image_root = resolve(inputs["data"], "image_root")
        images = [Image.open(image_root / it.image).convert("RGB") for it in items]
        transform = None
        if mode == "augmented":
            from methods.augmentations import make

            proc = handle.image_processor
            transform = make(params["augmentation"], params.get("augmentation_params"),
                             proc.image_mean, proc.image_std, seed=params.get("seed", 0))
        start = time.time()
        if mode == "sentences":
            from methods.csr import sentence_trees

            trees = sentence_trees(handle, images, [it.question for it in items], params["search"], params.get("seed"))
            (out / "responses.json").write_text(json.dumps({it.item_id: t for it, t in zip(items, trees)}))
            return {"items": len(items), "nodes": sum(len(t) for t in trees),
                    "answers_per_s": len(items) / max(time.time() - start, 1e-9)}
        answers = handle.generate(images, [it.question for it in items], max_new_tokens=params["max_new_tokens"],
                                  batch_size=16, seed=params.get("seed"), pixel_transform=transform, **MODES[mode])
        elapsed = time.time() - start
        (out / "responses.json").write_text(json.dumps({it.item_id: a for it, a in zip(items, answers)}, indent=0))
        return {"items": len(items), "answers_per_s": len(items) / max(elapsed, 1e-9)}


def load_responses(stage_input) -> dict:
    return json.loads((stage_input.dir / "responses.json").read_text())
