"""MMBench's and MMBench-CN's synthetic twins: `size` four-option questions (colour, shape, count; a third
with a hint), each written four times, the original and its three rotations (CircularEval's copies), in
the dev TSV's columns with the image as base64. The `-extract` variants write the same files under
their own id's seed."""
from __future__ import annotations

import base64
import csv
import random
from pathlib import Path

from matrix.benchmarks.mmbench import (
    COLUMNS,
    COPY_STRIDE,
    LETTERS,
    MMBench,
    MMBenchCN,
    MMBenchCNExtract,
    MMBenchExtract,
)
from matrix.world import language
from matrix.world.benchmarks import SYNTHETIC_BENCHMARKS
from matrix.world.scene import draw_scene, render


def _category(question: str) -> tuple[str, str]:
    if "color" in question or "颜色" in question:
        return "attribute_recognition", "FP-S"
    if "How many" in question or "几个" in question:
        return "object_counting", "FP-C"  # synthetic labels; MMBench's own names differ per skill
    return "object_localization", "FP-S"


def _png(image) -> str:
    import io

    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _write(bench, root: Path, size: int, seed: int) -> None:
    """`size` questions with 4 options, some with a hint, each written 4 times: the original
    (index i) and its 3 rotations (index i + k * 1,000,000), originals first, as the dev TSVs do.
    `bench`: the benchmark's class; its id seeds the draw, its folder and file name place the file, and
    `cn` asks in Chinese."""
    rng = random.Random(f"{bench.id}:{seed}")
    path = Path(root) / bench.folder / bench.tsv
    path.parent.mkdir(parents=True, exist_ok=True)
    originals = []
    for i in range(size):
        scene = draw_scene(rng)
        question, options, answer = language.choice_item(scene, rng, 4, cn=bench.cn)
        buf = _png(render(scene))
        hint = ("图中有若干彩色形状。" if bench.cn else "The image shows coloured shapes on a grid.") \
            if i % 3 == 0 else "nan"
        category, l2 = _category(question)
        originals.append({"index": str(i), "question": question, "hint": hint, **dict(zip(LETTERS, options)),
                          "answer": LETTERS[answer], "category": category, "image": buf,
                          "source": "synthetic", "l2-category": l2, "comment": "nan", "split": "dev"})
    rows = list(originals)
    for k in range(1, len(LETTERS)):
        for row in originals:
            shown = [row[letter] for letter in LETTERS]
            rotated = shown[k:] + shown[:k]  # option k becomes A
            right = row[row["answer"]]
            copy = {**row, "index": str(int(row["index"]) + k * COPY_STRIDE), **dict(zip(LETTERS, rotated)),
                    "answer": LETTERS[rotated.index(right)],
                    "image": row["index"]}  # a short index: the original row's image
            rows.append(copy)
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, delimiter="\t", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


@SYNTHETIC_BENCHMARKS.register("mmbench")
def mmbench(root: Path, size: int, seed: int) -> None:
    _write(MMBench, root, size, seed)


@SYNTHETIC_BENCHMARKS.register("mmbench-cn")
def mmbench_cn(root: Path, size: int, seed: int) -> None:
    _write(MMBenchCN, root, size, seed)


@SYNTHETIC_BENCHMARKS.register("mmbench-extract")
def mmbench_extract(root: Path, size: int, seed: int) -> None:
    _write(MMBenchExtract, root, size, seed)


@SYNTHETIC_BENCHMARKS.register("mmbench-cn-extract")
def mmbench_cn_extract(root: Path, size: int, seed: int) -> None:
    _write(MMBenchCNExtract, root, size, seed)
