"""Training examples (LLaVA JSON) -> token ids/labels -> padded batches with pixel values."""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

from matrix.models.conversation import IGNORE_INDEX, IMAGE_PLACEHOLDER
from matrix.models.handle import ModelHandle, collate
from matrix.methods.objectives.base import objective_class


@dataclass
class Encoded:
    ids: list[int]
    labels: list[int]
    image: str | None  # relative path, or None for a text-only example


def _ensure_placeholder(conversations: list[dict], has_image: bool) -> list[dict]:
    """An example with an image but no placeholder gets it before its first question (LLaVA's layout)."""
    if not has_image or any(IMAGE_PLACEHOLDER in t["value"] for t in conversations):
        return conversations
    convs = copy.deepcopy(conversations)
    for turn in convs:
        if turn["from"] == "human":
            turn["value"] = f"{IMAGE_PLACEHOLDER}\n{turn['value']}"
            break
    return convs


def _encode(handle: ModelHandle, conversations: list[dict], image: str | None, max_length: int,
            image_root: Path | None = None) -> Encoded | None:
    """Tokenise and truncate; None when truncation would cut the image tokens or leave no answer."""
    size = None
    if handle.anyres and image is not None:  # LLaVA-NeXT: the image's size sets its token count
        from PIL import Image

        with Image.open(Path(image_root or ".") / image) as im:
            size = im.size
    ids, labels = handle.encode_conversation(_ensure_placeholder(conversations, image is not None), size)
    kept_ids, kept_labels = ids[:max_length], labels[:max_length]
    # The vision features fill every placeholder position, so a partial image cannot be fed.
    if kept_ids.count(handle.image_token_id) != ids.count(handle.image_token_id):
        return None
    if all(lab == IGNORE_INDEX for lab in kept_labels):
        return None
    return Encoded(kept_ids, kept_labels, image)


def encode_examples(
    handle: ModelHandle, examples: list[dict], objective, max_length: int, image_root: Path | None = None
) -> tuple[list[tuple[Encoded, ...]], int]:
    """(encoded examples, how many were dropped by truncation). `objective` (an objective, its class or
    its registered name) names the conversations each example is encoded from: DPO gives (chosen,
    rejected) pairs."""
    keys = objective_class(objective).conversations
    out: list[tuple[Encoded, ...]] = []
    dropped = 0
    for ex in examples:
        image = ex.get("image") or None
        missing = [k for k in keys if k not in ex]
        if missing:
            raise ValueError(f"example {ex.get('id')!r}: the {objective_class(objective).id} objective needs "
                             f"{', '.join(repr(k) for k in missing)}")
        parts = tuple(_encode(handle, ex[k], image, max_length, image_root) for k in keys)
        if any(p is None for p in parts):
            dropped += 1
        else:
            out.append(parts)  # type: ignore[arg-type]
    return out, dropped


class BatchMaker:
    """Pads encoded sequences and loads their images, each distinct image once per batch (a DPO batch
    holds every image twice). Nothing is cached across batches: at real scale (8k images of 336 px)
    the pixel tensors would take gigabytes, while decoding them again costs little next to a step."""

    def __init__(self, handle: ModelHandle, image_root: Path, max_length: int, device, dtype):
        self.handle, self.image_root, self.max_length = handle, Path(image_root), max_length
        self.device, self.dtype = device, dtype

    def _image(self, rel: str):
        from PIL import Image

        path = self.image_root / rel
        if not path.exists():
            raise FileNotFoundError(f"{path}: image of a training example is missing")
        with Image.open(path) as im:
            return im.convert("RGB")

    def __call__(self, seqs: list[Encoded]) -> dict:
        batch = collate(self.handle, [(s.ids, s.labels) for s in seqs], self.max_length)
        batch = {k: v.to(self.device) for k, v in batch.items()}
        loaded: dict[str, object] = {}
        for s in seqs:
            if s.image is not None and s.image not in loaded:
                loaded[s.image] = self._image(s.image)
        images = [loaded[s.image] for s in seqs if s.image is not None]
        batch["pixel_values"] = None
        if images:
            vision = self.handle.vision_inputs(images)
            batch["pixel_values"] = vision.pop("pixel_values").to(device=self.device, dtype=self.dtype)
            batch.update({k: v.to(self.device) for k, v in vision.items()})  # LLaVA-NeXT: image_sizes
        return batch
