"""ScienceQA-IMG's synthetic twin: `size` test problems with 2-5 options (colour, shape, count), every
fifth one text-only, plus two train problems that `pid_splits.json` keeps out of the test split (loading
must skip them). Also writes `scienceqa/ground_truth.json` (`{pid: scene}`), which loading does not read."""
from __future__ import annotations

import json
import random
from pathlib import Path

from matrix.benchmarks.sqa import IMAGE_DIR, OPTIONS, QUESTION_FILE
from matrix.world import language
from matrix.world.benchmarks import SYNTHETIC_BENCHMARKS
from matrix.world.scene import draw_scene, render

TEXT_ONLY_EVERY = 5  # every fifth problem is text-only (excluded from IMG-accuracy)
TEXT_ONLY = (  # text-only problems: (question, choices, answer index)
    ("How many sides does a triangle have?", ["3", "4", "5"], 0),
    ("How many sides does a square have?", ["3", "4", "6"], 1),
    ("Which shape has no corners?", ["square", "circle", "diamond"], 1),
    ("Which colour do you get by mixing red and yellow?", ["orange", "purple", "green"], 0),
)


@SYNTHETIC_BENCHMARKS.register("sqa")
def synthesize(root: Path, size: int, seed: int) -> None:
    """`size` test problems, 2-5 options; every fifth is text-only; plus a few train problems that
    pid_splits.json keeps out of the test split (loading must skip them)."""
    rng = random.Random(f"sqa:{seed}")
    base = Path(root) / "scienceqa"
    (base / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
    problems, entries, splits = {}, [], {"train": [], "val": [], "test": []}
    truth = {}
    for i in range(size + 2):
        pid = str(100 + i)
        split = "test" if i < size else "train"
        k = rng.randint(2, 5)
        if i % TEXT_ONLY_EVERY == TEXT_ONLY_EVERY - 1:
            question, choices, answer = TEXT_ONLY[rng.randrange(len(TEXT_ONLY))]
            image = None
        else:
            scene = draw_scene(rng)
            question, choices, answer = language.choice_item(scene, rng, k)
            image = "image.png"
            (base / "images" / split / pid).mkdir(parents=True, exist_ok=True)
            render(scene).save(base / "images" / split / pid / image)
            truth[pid] = scene.to_json()
        problems[pid] = {"question": question, "choices": choices, "answer": answer, "hint": "",
                         "image": image, "task": "closed choice", "split": split}
        splits[split].append(pid)
        text = f"{question}\n{language.options_text(choices)}"
        entry = {"id": pid, "conversations": [
            {"from": "human", "value": f"<image>\n{text}" if image else text},
            {"from": "gpt", "value": f"The answer is {OPTIONS[answer]}."}]}
        if image:
            entry["image"] = f"{pid}/{image}"
        if split == "test":
            entries.append(entry)
    (base / QUESTION_FILE).write_text(json.dumps(entries, indent=1))
    (base / "problems.json").write_text(json.dumps(problems, indent=1))
    (base / "pid_splits.json").write_text(json.dumps(splits))
    (base / "ground_truth.json").write_text(json.dumps(truth, indent=1))
