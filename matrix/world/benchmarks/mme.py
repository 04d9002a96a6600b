"""MME's synthetic twin: the four coarse perception subtasks (existence, count, position, color) in the
flat layout (image and `<stem>.txt` ground truth side by side), two yes/no questions per image, the true
one first. Also writes `MME/ground_truth.json` (`{question_id: scene}`), which loading does not read."""
from __future__ import annotations

import json
import random
from pathlib import Path

from matrix.benchmarks.base import write_jsonl
from matrix.benchmarks.mme import QUESTION_FILE, RELEASE
from matrix.world import language
from matrix.world.benchmarks import SYNTHETIC_BENCHMARKS
from matrix.world.datasets import unique_named
from matrix.world.scene import COLOURS, GRID, Obj, Scene, draw_scene, render

SYNTHETIC_SUBTASKS = ("existence", "count", "position", "color")
POSITIONS = tuple(Obj("circle", "red", r, c).position for r in range(GRID) for c in range(GRID))
MAX_COUNT = 3  # scenes hold at most three objects


# ---- questions: (true question, false question) about one scene -------------------------------------
def _pair(subtask: str, scene: Scene, rng: random.Random) -> tuple[str, str] | None:
    obj = rng.choice(scene.objects)
    if subtask == "existence":
        absent = language.absent_shape(scene, rng)
        return language.existence_question(obj.shape), language.existence_question(absent)
    if subtask == "count":
        n = scene.count(obj.shape)
        wrong = rng.choice([k for k in range(1, MAX_COUNT + 1) if k != n])
        return language.count_check_question(obj.shape, n), language.count_check_question(obj.shape, wrong)
    if subtask == "position":  # asked by name, so only objects whose name is unique in the scene
        named = unique_named(scene)
        if not named:
            return None
        obj = rng.choice(named)
        wrong = rng.choice([p for p in POSITIONS if p != obj.position])
        return (language.position_check_question(obj, obj.position),
                language.position_check_question(obj, wrong))
    wrong = rng.choice([c for c in COLOURS if c != obj.colour])
    return language.colour_check_question(obj, obj.colour), language.colour_check_question(obj, wrong)


@SYNTHETIC_BENCHMARKS.register("mme")
def synthesize(root: Path, size: int, seed: int) -> None:
    """`size` images in all, dealt in turn to existence, count, position and color; two questions
    per image, the true one (Yes) first as in MME's files."""
    rng = random.Random(f"mme:{seed}")
    base = Path(root) / "MME"
    rows: dict[str, list[dict]] = {t: [] for t in SYNTHETIC_SUBTASKS}
    truth = {}
    for i in range(size):
        subtask = SYNTHETIC_SUBTASKS[i % len(SYNTHETIC_SUBTASKS)]
        pair = None
        while pair is None:  # a scene without a uniquely named object cannot serve `position`
            scene = draw_scene(rng)
            pair = _pair(subtask, scene, rng)
        folder = base / RELEASE / subtask
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"{len(rows[subtask]) // 2:04d}"
        render(scene).save(folder / f"{stem}.png")
        lines = [(pair[0], "Yes"), (pair[1], "No")]
        truth_lines = [f"{q}{language.YES_NO_SUFFIX}\t{a}\n" for q, a in lines]
        (folder / f"{stem}.txt").write_text("".join(truth_lines))
        qid = f"{subtask}/{stem}.png"
        rows[subtask] += [{"question_id": qid, "image": qid, "text": q + language.SHORT_ANSWER_SUFFIX,
                           "category": subtask} for q, _ in lines]
        truth[qid] = scene.to_json()
    write_jsonl(base / QUESTION_FILE, [r for t in SYNTHETIC_SUBTASKS for r in rows[t]])
    (base / "ground_truth.json").write_text(json.dumps(truth, indent=1))
