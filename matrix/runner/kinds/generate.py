"""`generate`: the base model's own answers to the subset's questions (shared by every method)."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from PIL import Image

from matrix.spec import BatchSize
from matrix.runner.kinds.data import resolve
from matrix.runner.kinds.model import model_dir
from matrix.runner.kinds.subset import load_subset
from matrix.runner.placement import describe
from matrix.runner.stage import KINDS, Dtype, StageContext, StageKind, StageParams

MODES = {
    "greedy": {"do_sample": False},
    # SIMA's sampled half: temperature 0.8, top-p 0.9.
    "sampled": {"do_sample": True, "temperature": 0.8, "top_p": 0.9},
    # SeVa's rejected half: greedy on the augmented image (params name the augmentation and its settings).
    "augmented": {"do_sample": False},
    # CSR: a sentence-level search tree per question (`matrix.methods.csr.sentence_trees`; params hold `search`).
    "sentences": {},
}


@KINDS.register("generate")
class GenerateStage(StageKind):
    VERSION = 1  # new modes add keys, they do not change what an existing key computes
    LOADS_MODEL = True
    SKIP_KEY_FIELDS = frozenset({"batch_size", "dtype"})

    class Params(StageParams):
        mode: str
        max_new_tokens: int
        seed: int | None = None  # sampled and augmented modes only
        augmentation: str | None = None  # SeVa's augmented mode: which augmentation, and its settings
        augmentation_params: dict[str, Any] | None = None
        search: dict[str, int] | None = None  # CSR's sentences mode
        strip: list[str] | None = None  # texts removed from every question before it is asked (SeVa)
        template: str | None = None  # a conversation template other than the model's (SeVa's llava_v1)
        batch_size: BatchSize = 16
        dtype: Dtype = "float32"

    def run(self, params: Params, inputs, out: Path, ctx: StageContext):
        from matrix.models.handle import load
        from matrix.methods.base import question_items

        mode = params.mode
        if mode not in MODES:
            raise ValueError(f"unknown generation mode {mode!r}; known: {', '.join(MODES)}")
        handle = load(model_dir(inputs["model"]), template=params.template or inputs["model"].result["template"],
                      dtype=params.dtype, device=ctx.device, family=inputs["model"].result.get("family"))
        records = load_subset(inputs["data"], inputs["subset"])
        items = question_items(records)
        if params.strip:  # as matrix.methods.seva.seva_question, which construct applies to the same questions
            from dataclasses import replace
            from functools import reduce

            items = [replace(it, question=reduce(lambda q, t: q.replace(t, ""), params.strip, it.question).strip())
                     for it in items]
        image_root = resolve(inputs["data"], "image_root")
        images = [Image.open(image_root / it.image).convert("RGB") for it in items]
        transform = None
        if mode == "augmented":
            from matrix.methods.augmentations import make

            proc = handle.image_processor
            transform = make(params.augmentation, params.augmentation_params, proc.image_mean, proc.image_std,
                             seed=params.seed or 0)
        start = time.time()
        if mode == "sentences":
            from matrix.methods.csr import sentence_trees

            trees = sentence_trees(handle, images, [it.question for it in items], params.search, params.seed)
            (out / "responses.json").write_text(json.dumps({it.item_id: t for it, t in zip(items, trees)}))
            # The search expands one question at a time: generation.batch_size does not apply to it.
            return {"items": len(items), "nodes": sum(len(t) for t in trees),
                    "answers_per_s": len(items) / max(time.time() - start, 1e-9), "runtime": describe(handle.model, 1)}
        answers = handle.generate(images, [it.question for it in items], max_new_tokens=params.max_new_tokens,
                                  batch_size=params.batch_size, seed=params.seed, pixel_transform=transform,
                                  **MODES[mode])
        elapsed = time.time() - start
        (out / "responses.json").write_text(json.dumps({it.item_id: a for it, a in zip(items, answers)}, indent=0))
        return {"items": len(items), "answers_per_s": len(items) / max(elapsed, 1e-9),
                "runtime": describe(handle.model, handle.batch_size)}


def load_responses(stage_input) -> dict:
    return json.loads((stage_input.dir / "responses.json").read_text())
