"""Synthetic alignment datasets in LLaVA JSON conversation format, with the scenes kept beside them.

`synthesize_dataset(kind, root, size, seed)` writes, deterministically for a seed:

- `root/data.json`: a JSON list of records `{"id", "image": "images/<id>.png", "conversations": [...]}`
  where conversations alternate `{"from": "human"}` / `{"from": "gpt"}` turns and the first human
  turn starts with "<image>\\n" (LLaVA's layout);
- `root/images/<id>.png`: the rendered scenes;
- `root/ground_truth.json`: `{id: scene.to_json()}`, so every answer can be checked against its scene.

A kind is one function `(scene, rng) -> [(question, answer), ...]` registered with `@dataset_kind`;
all phrasing comes from `matrix.world.language`, so datasets, benchmarks and the tiny model's
bootstrap speak alike.
"""
from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

from matrix.models.conversation import IMAGE_PLACEHOLDER
from matrix.world import language
from matrix.world.scene import Obj, Scene, draw_scene, render

QA = tuple[str, str]
Kind = Callable[[Scene, random.Random], list[QA]]
KINDS: dict[str, Kind] = {}


def dataset_kind(name: str) -> Callable[[Kind], Kind]:
    def register(fn: Kind) -> Kind:
        if name in KINDS:
            raise ValueError(f"dataset kind {name!r} registered twice")
        KINDS[name] = fn
        return fn

    return register


def unique_named(scene: Scene) -> list[Obj]:
    """Objects whose "colour shape" name occurs once: only these can be asked about by name."""
    names = [o.name for o in scene.objects]
    return [o for o in scene.objects if names.count(o.name) == 1]


# ---- one short-answer question about a scene, by type -------------------------------------------
def _existence(scene: Scene, rng: random.Random) -> QA:
    """Balanced yes/no; half the negatives are adversarial (share a shape or colour with the scene)."""
    if rng.random() < 0.5:
        obj = rng.choice(scene.objects)
        return language.existence_question(obj.shape, obj.colour if rng.random() < 0.5 else None), "Yes"
    if rng.random() < 0.5:
        shape, colour = language.absent_object(scene, rng, adversarial=True)
        return language.existence_question(shape, colour), "No"
    return language.existence_question(language.absent_shape(scene, rng)), "No"


def _colour(scene: Scene, rng: random.Random) -> QA:
    obj = rng.choice(scene.objects)  # one object per cell, so "the <shape> at <position>" is unique
    return language.colour_question(obj), obj.colour


def _shape(scene: Scene, rng: random.Random) -> QA:
    obj = rng.choice(scene.objects)
    return language.shape_question(obj), obj.shape


def _count(scene: Scene, rng: random.Random) -> QA:
    """Mostly shapes in the scene; one in five asks about an absent shape, whose answer is 0."""
    shape = rng.choice(scene.objects).shape if rng.random() < 0.8 else language.absent_shape(scene, rng)
    return language.count_question(shape), str(scene.count(shape))


def _position(scene: Scene, rng: random.Random) -> QA | None:
    objs = unique_named(scene)
    if not objs:
        return None
    obj = rng.choice(objs)
    return language.position_question(obj), obj.position


# Existence twice: it is the hallucination probe the alignment methods care most about.
SHORT_ANSWER_TYPES: tuple[Callable[[Scene, random.Random], QA | None], ...] = (
    _existence, _existence, _colour, _shape, _count, _position,
)


@dataset_kind("ocrvqa")
def ocrvqa(scene: Scene, rng: random.Random) -> list[QA]:
    """OCRVQA-like: 1-3 distinct short-answer questions about one image, each with LLaVA's suffix."""
    wanted = rng.randint(1, 3)
    turns: list[QA] = []
    asked: set[str] = set()
    for _ in range(10 * wanted):  # bounded: a one-object scene has few distinct questions
        if len(turns) == wanted:
            break
        qa = rng.choice(SHORT_ANSWER_TYPES)(scene, rng)
        if qa is not None and qa[0] not in asked:
            asked.add(qa[0])
            turns.append((qa[0] + language.SHORT_ANSWER_SUFFIX, qa[1]))
    return turns


def conversations(turns: list[QA]) -> list[dict]:
    """LLaVA JSON turns; the image placeholder opens the first human turn only."""
    out: list[dict] = []
    for i, (question, answer) in enumerate(turns):
        value = f"{IMAGE_PLACEHOLDER}\n{question}" if i == 0 else question
        out += [{"from": "human", "value": value}, {"from": "gpt", "value": answer}]
    return out


def synthesize_dataset(kind: str, root: Path, size: int, seed: int) -> None:
    """Write `size` records of `kind` under `root` (data.json, images/, ground_truth.json)."""
    if kind not in KINDS:
        raise ValueError(f"unknown synthetic dataset kind {kind!r}; known: {', '.join(sorted(KINDS))}")
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    # A string seed is hashed deterministically by `random` (not by PYTHONHASHSEED).
    rng = random.Random(f"dataset:{kind}:{seed}")
    records, truth = [], {}
    for i in range(size):
        rid = f"{kind}-{seed}-{i:06d}"
        scene = draw_scene(rng)
        render(scene).save(root / "images" / f"{rid}.png")
        turns = conversations(KINDS[kind](scene, rng))
        records.append({"id": rid, "image": f"images/{rid}.png", "conversations": turns})
        truth[rid] = scene.to_json()
    (root / "data.json").write_text(json.dumps(records, indent=1))
    (root / "ground_truth.json").write_text(json.dumps(truth, indent=1))


def load_dataset(root: Path) -> list[dict]:
    """The records of `root/data.json`; a missing or malformed file is an error naming it."""
    path = Path(root) / "data.json"
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found: expected a JSON list of LLaVA conversation records "
            '({"id", "image", "conversations": [{"from": "human"|"gpt", "value"}, ...]})'
        )
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(data, list):
        raise TypeError(f"{path}: expected a JSON list of LLaVA conversation records, "
                        f"got a {type(data).__name__}")
    return data

