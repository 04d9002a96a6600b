"""POPE's synthetic twin: `size` images shared by the three splits, per image and split up to 2 shapes it
shows ("yes") and as many it lacks ("no"), the negatives drawn by POPE's three samplers over the drawn
images. Also writes `pope/ground_truth.json` (`{image: scene}`), which loading does not read."""
from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from matrix.benchmarks.base import write_jsonl
from matrix.benchmarks.pope import IMAGE_DIR, LABEL_DIR, QUESTION_FILE, SPLITS
from matrix.world import language
from matrix.world.benchmarks import SYNTHETIC_BENCHMARKS
from matrix.world.scene import SHAPES, Scene, draw_scene, render

# Official POPE asks 3 present + 3 absent objects of 80 categories per image. The shapes world has 6
# categories, so at most 2 of each: at least 4 shapes stay absent and the three samplers can differ.
PER_IMAGE = 2


class _Stats:
    """Shape statistics over the sampled images: what popular and adversarial sampling rank by."""

    def __init__(self, scenes: list[Scene]):
        self.frequency = Counter(s for scene in scenes for s in scene.shapes())
        self.co_occurrence = {a: Counter() for a in SHAPES}
        for scene in scenes:
            for a in scene.shapes():
                self.co_occurrence[a].update(b for b in scene.shapes() if b != a)

    def rank(self, shapes: list[str], score: Callable[[str], int]) -> list[str]:
        # Ties: the more frequent shape first, then SHAPES order, so the files are reproducible.
        return sorted(shapes, key=lambda s: (-score(s), -self.frequency[s], SHAPES.index(s)))


def _negatives(split: str, scene: Scene, k: int, stats: _Stats, rng: random.Random) -> list[str]:
    absent = [s for s in SHAPES if s not in scene.shapes()]
    if split == "random":
        return rng.sample(absent, k)
    if split == "popular":  # the most frequent shapes of the sampled set that this image lacks
        return stats.rank(absent, lambda s: stats.frequency[s])[:k]
    # adversarial: the shapes that co-occur most with this image's shapes
    return stats.rank(absent, lambda s: sum(stats.co_occurrence[p][s] for p in scene.shapes()))[:k]


def _interleave(positives: list[str], negatives: list[str]) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for yes, no in zip(positives, negatives):
        pairs += [(yes, "yes"), (no, "no")]
    return pairs


@SYNTHETIC_BENCHMARKS.register("pope")
def synthesize(root: Path, size: int, seed: int) -> None:
    """`size` images, shared by the three splits; per image and split up to 2 yes + as many no."""
    rng = random.Random(f"pope:{seed}")
    base = Path(root) / "pope"
    (base / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
    images: list[tuple[str, Scene, list[str]]] = []
    for i in range(size):
        scene = draw_scene(rng)
        name = f"shapes_val_{i:06d}.png"
        render(scene).save(base / IMAGE_DIR / name)
        present = sorted(scene.shapes())
        # The same present shapes are asked in every split, as POPE asks the same objects.
        images.append((name, scene, rng.sample(present, min(PER_IMAGE, len(present)))))
    stats = _Stats([scene for _, scene, _ in images])
    questions: list[dict] = []
    for split in SPLITS:
        labels: list[dict] = []
        for name, scene, positives in images:
            negatives = _negatives(split, scene, len(positives), stats, rng)
            for shape, label in _interleave(positives, negatives):
                text = language.existence_question(shape)
                labels.append({"question_id": len(labels) + 1, "image": name, "text": text,
                               "label": label})
                questions.append({"question_id": len(questions) + 1, "image": name,
                                  "text": text + language.SHORT_ANSWER_SUFFIX, "category": split})
        write_jsonl(base / LABEL_DIR / f"coco_pope_{split}.json", labels)
    write_jsonl(base / QUESTION_FILE, questions)
    truth = {name: scene.to_json() for name, scene, _ in images}
    (base / "ground_truth.json").write_text(json.dumps(truth, indent=1))
