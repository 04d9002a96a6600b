"""GQA's synthetic twin: `size` images, up to two questions each (existence, colour, shape, position),
every answer read from the scene, with GQA's structural and semantic types. Also writes
`gqa/ground_truth.json` (`{image id: scene}`), which loading does not read."""
from __future__ import annotations

import json
import random
from pathlib import Path

from matrix.benchmarks.base import write_jsonl
from matrix.benchmarks.gqa import IMAGE_DIR, QUESTION_FILE, TRUTH_FILE
from matrix.world import language
from matrix.world.benchmarks import SYNTHETIC_BENCHMARKS
from matrix.world.datasets import unique_named
from matrix.world.scene import Scene, draw_scene, render


# ---- questions: (question, answer, structural type, semantic type) --------------------------------
def _question(scene: Scene, rng: random.Random) -> tuple[str, str, str, str]:
    kind = rng.choice(("exist", "colour", "shape", "position"))
    obj = rng.choice(scene.objects)
    if kind == "exist":
        if rng.random() < 0.5:
            return language.existence_question(obj.shape), "yes", "verify", "obj"
        return language.existence_question(language.absent_shape(scene, rng)), "no", "verify", "obj"
    if kind == "colour":
        return language.colour_question(obj), obj.colour, "query", "attr"
    named = unique_named(scene)
    if kind == "position" and named:
        obj = rng.choice(named)
        return language.position_question(obj), obj.position, "query", "rel"
    return language.shape_question(obj), obj.shape, "query", "cat"


@SYNTHETIC_BENCHMARKS.register("gqa")
def synthesize(root: Path, size: int, seed: int) -> None:
    """`size` images, two questions each; every answer read from the scene."""
    rng = random.Random(f"gqa:{seed}")
    base = Path(root) / "gqa"
    (base / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
    rows, truth, scenes = [], {}, {}
    for i in range(size):
        scene = draw_scene(rng)
        image_id = f"n{i:06d}"
        render(scene).save(base / IMAGE_DIR / f"{image_id}.png")
        scenes[image_id] = scene.to_json()
        asked = set()
        for _ in range(2):
            question, answer, structural, semantic = _question(scene, rng)
            if question in asked:
                continue
            asked.add(question)
            qid = f"{2000000 + len(rows)}"
            rows.append({"question_id": qid, "image": f"{image_id}.png",
                         "text": question + language.SHORT_ANSWER_SUFFIX, "category": "default"})
            truth[qid] = {"question": question, "answer": answer, "fullAnswer": answer, "imageId": image_id,
                          "isBalanced": True, "types": {"structural": structural, "semantic": semantic,
                                                        "detailed": f"{semantic}-{structural}"}}
    write_jsonl(base / QUESTION_FILE, rows)
    (base / TRUTH_FILE).write_text(json.dumps(truth, indent=1))
    (base / "ground_truth.json").write_text(json.dumps(scenes, indent=1))
