"""POPE's synthetic twin, built the way POPE builds its COCO files (AoiDragon/POPE `main.py`, `utils.py`).

An object of the world is a coloured shape ("red circle": 36 of them, where COCO has 80 categories). As
POPE keeps only images with at least `sample_num` = 3 objects, the twin's `size` scenes hold 3-6 objects
(`scene.CROWDED`), at least 3 of them different. Per image, 3 present objects are asked ("yes"; POPE asks
the first 3 of its annotation, the twin draws 3), each followed by one the image lacks ("no"), picked by
POPE's samplers over the objects of the drawn images:

- random: any object of those images that this image lacks and that was not asked of it yet;
- popular: the most frequent such object (frequency = images that show it);
- adversarial: the such object that co-occurs most often with *the present object just asked*
  (POPE ranks co-occurrence per positive object, not summed over the image), at random if none does.

Ties rank the more frequent object first, then the world's order (`scene.OBJECTS`), so the files are the
same for a seed in every interpreter. The questions keep the world's "Is there a orange circle" (POPE's
template says "an" before a vowel; the tiny model was trained on the world's phrasing). Also writes
`pope/ground_truth.json` (`{image: scene}`), which loading does not read.
"""
from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

from matrix.benchmarks.base import write_jsonl
from matrix.benchmarks.pope import IMAGE_DIR, LABEL_DIR, QUESTION_FILE, SPLITS
from matrix.world import language
from matrix.world.benchmarks import SYNTHETIC_BENCHMARKS
from matrix.world.scene import CROWDED, OBJECTS, Scene, draw_scene, render

PER_IMAGE = 3  # POPE's `sample_num`: present objects asked per image, and as many absent ones


def objects_of(scene: Scene) -> list[str]:
    """The scene's distinct objects ("red circle"), in the world's order."""
    names = {o.name for o in scene.objects}
    return [n for n in OBJECTS if n in names]


def draw_pope_scene(rng: random.Random) -> Scene:
    """A scene with at least PER_IMAGE different objects (POPE's filter), drawn again until it has."""
    while True:
        scene = draw_scene(rng, *CROWDED)
        if len(objects_of(scene)) >= PER_IMAGE:
            return scene


class _Stats:
    """Object statistics over the drawn images: what popular and adversarial sampling rank by."""

    def __init__(self, images: list[list[str]]):
        self.frequency = Counter(o for objects in images for o in objects)
        self.co_occurrence = {o: Counter() for o in self.frequency}
        for objects in images:
            for a in objects:
                self.co_occurrence[a].update(b for b in objects if b != a)
        self.vocabulary = [o for o in OBJECTS if o in self.frequency]

    def best(self, candidates: list[str], score) -> str:
        return min(candidates, key=lambda o: (-score(o), -self.frequency[o], OBJECTS.index(o)))


def _negative(split: str, positive: str, taken: set[str], stats: _Stats, rng: random.Random) -> str:
    """One absent object for `positive`; `taken` = the image's objects and those already asked of it."""
    free = [o for o in stats.vocabulary if o not in taken]
    if split == "popular":
        return stats.best(free, lambda o: stats.frequency[o])
    if split == "adversarial":
        co = stats.co_occurrence[positive]
        if any(co[o] for o in free):
            return stats.best([o for o in free if co[o]], lambda o: co[o])
    return rng.choice(free)


@SYNTHETIC_BENCHMARKS.register("pope")
def synthesize(root: Path, size: int, seed: int) -> None:
    """`size` images, shared by the three splits; per image and split 3 yes + 3 no, interleaved."""
    rng = random.Random(f"pope:{seed}")
    base = Path(root) / "pope"
    (base / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
    images: list[tuple[str, Scene, list[str]]] = []
    for i in range(size):
        scene = draw_pope_scene(rng)
        name = f"shapes_val_{i:06d}.png"
        render(scene).save(base / IMAGE_DIR / name)
        # The same present objects are asked in every split, as POPE asks each image's first objects.
        images.append((name, scene, rng.sample(objects_of(scene), PER_IMAGE)))
    stats = _Stats([objects_of(scene) for _, scene, _ in images])
    questions: list[dict] = []
    for split in SPLITS:
        labels: list[dict] = []
        for name, scene, positives in images:
            taken = set(objects_of(scene))
            for positive in positives:
                negative = _negative(split, positive, taken, stats, rng)
                taken.add(negative)
                for obj, label in ((positive, "yes"), (negative, "no")):
                    colour, shape = obj.split(" ")
                    text = language.existence_question(shape, colour)
                    labels.append({"question_id": len(labels) + 1, "image": name, "text": text,
                                   "label": label})
                    questions.append({"question_id": len(questions) + 1, "image": name,
                                      "text": text + language.SHORT_ANSWER_SUFFIX, "category": split})
        write_jsonl(base / LABEL_DIR / f"coco_pope_{split}.json", labels)
    write_jsonl(base / QUESTION_FILE, questions)
    truth = {name: scene.to_json() for name, scene, _ in images}
    (base / "ground_truth.json").write_text(json.dumps(truth, indent=1))
