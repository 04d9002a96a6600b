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


# ---- captions (TextCaps-like) and detailed descriptions (LLaVA-detail-like) -------------------------
TEXTCAPS_PROMPT = language.CAPTION_PROMPTS[0]  # "Provide a one-sentence caption for the provided image."
DETAIL_PROMPTS = language.CAPTION_PROMPTS[2:]  # "Describe this image in detail." and its variant


@dataset_kind("textcaps")
def textcaps(scene: Scene, rng: random.Random) -> list[QA]:
    """TextCaps-like: one short caption naming every object with its colour and position."""
    return [(TEXTCAPS_PROMPT, language.caption(scene))]


def _relation(a: Obj, b: Obj) -> str | None:
    """"the red circle is to the left of the blue star" for objects in one row or one column."""
    if a.row == b.row and a.col < b.col:
        return f"the {a.name} is to the left of the {b.name}"
    if a.col == b.col and a.row < b.row:
        return f"the {a.name} is above the {b.name}"
    return None


def detailed_description(scene: Scene) -> str:
    """A multi-sentence description: how many objects, counts per shape, each object with colour and
    position, and the row/column relations between named objects. Every sentence is true of the scene."""
    objs = sorted(scene.objects, key=lambda o: (o.row, o.col))
    n = len(objs)
    noun = "object" if n == 1 else "objects"
    sentences = [f"The image shows {language.NUMBER_WORDS[n]} {noun} on a plain light background"]
    shapes = sorted(scene.shapes(), key=lambda s: [o.shape for o in objs].index(s))
    counts = [f"{language.NUMBER_WORDS[scene.count(s)]} {language.plural(s, scene.count(s))}" for s in shapes]
    sentences.append("There " + ("is " if scene.count(shapes[0]) == 1 else "are ") +
                     (counts[0] if len(counts) == 1 else ", ".join(counts[:-1]) + " and " + counts[-1]))
    sentences += [f"There is {language.describe(o)}" for o in objs]
    named = unique_named(scene)
    for a in named:
        for b in named:
            rel = _relation(a, b)
            if rel:
                sentences.append(rel[0].upper() + rel[1:])
    return ". ".join(sentences) + "."


@dataset_kind("detail")
def detail(scene: Scene, rng: random.Random) -> list[QA]:
    """LLaVA-detail-like: one request for a detailed description, answered at length."""
    return [(rng.choice(DETAIL_PROMPTS), detailed_description(scene))]


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

