"""Synthetic alignment datasets in LLaVA JSON conversation format, with the scenes kept beside them.

`synthesize_dataset(kind, root, size, seed)` writes `root/data.json` (a list of records
`{"id", "image": "images/<id>.png", "conversations": [...]}`), `root/images/*.png` and
`root/ground_truth.json` (`{id: scene}`), deterministically for a seed.
"""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Callable

from matrix.world import language as L
from matrix.world.scene import SHAPES, Scene, draw_scene, render

# A kind turns (scene, rng) into the human/gpt turns of one record.
KINDS: dict[str, Callable[[Scene, random.Random], list[tuple[str, str]]]] = {}


def kind(name: str):
    def deco(fn):
        KINDS[name] = fn
        return fn

    return deco


def _short_answer_qa(scene: Scene, rng: random.Random) -> tuple[str, str]:
    obj = rng.choice(scene.objects)
    pick = rng.randrange(6)
    if pick == 0:  # present object
        return L.existence_question(obj.shape, obj.colour if rng.random() < 0.5 else None), "Yes"
    if pick == 1:  # absent object, half of them adversarial
        shape, colour = L.absent_object(scene, rng, adversarial=rng.random() < 0.5)
        if not scene.has(shape) and rng.random() < 0.5:
            return L.existence_question(shape), "No"
        return L.existence_question(shape, colour), "No"
    if pick == 2:
        return L.colour_question(obj), obj.colour
    if pick == 3:
        return L.shape_question(obj), obj.shape
    if pick == 4:
        shape = obj.shape if rng.random() < 0.7 else rng.choice(SHAPES)
        return L.count_question(shape), str(scene.count(shape))
    return L.position_question(obj), obj.position


@kind("ocrvqa")
def ocrvqa(scene: Scene, rng: random.Random) -> list[tuple[str, str]]:
    """OCRVQA-like: 1-3 short-answer questions about one image, each with LLaVA's short-answer suffix."""
    turns, seen = [], set()
    for _ in range(rng.randint(1, 3)):
        q, a = _short_answer_qa(scene, rng)
        if q not in seen:
            seen.add(q)
            turns.append((q + L.SHORT_ANSWER_SUFFIX, a))
    return turns


def _conversations(turns: list[tuple[str, str]]) -> list[dict]:
    conv = []
    for i, (q, a) in enumerate(turns):
        conv.append({"from": "human", "value": ("<image>\n" + q) if i == 0 else q})
        conv.append({"from": "gpt", "value": a})
    return conv


def synthesize_dataset(kind: str, root: Path, size: int, seed: int) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown synthetic dataset kind {kind!r}; known: {', '.join(sorted(KINDS))}")
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"{kind}:{seed}")
    records, truth = [], {}
    for i in range(size):
        rid = f"{kind}-{seed}-{i:06d}"
        scene = draw_scene(rng)
        render(scene).save(root / "images" / f"{rid}.png")
        records.append({"id": rid, "image": f"images/{rid}.png", "conversations": _conversations(KINDS[kind](scene, rng))})
        truth[rid] = scene.to_json()
    (root / "data.json").write_text(json.dumps(records, indent=0))
    (root / "ground_truth.json").write_text(json.dumps(truth))


def load_dataset(root: Path) -> list[dict]:
    path = Path(root) / "data.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: expected a LLaVA JSON list of conversation records")
    return json.loads(path.read_text())

