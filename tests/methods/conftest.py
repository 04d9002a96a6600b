"""A random tiny LLaVA and a small shapes dataset (images on disk, LLaVA JSON records) for the method tests."""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class TinyWorld:
    base: Path
    image_root: Path
    records: list[dict]


def make_records(image_root: Path, n: int, seed: int) -> list[dict]:
    from matrix.world import language, scene

    rng = random.Random(seed)
    (image_root / "images").mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(n):
        sc = scene.draw_scene(rng)
        scene.render(sc).save(image_root / "images" / f"{i}.png")
        obj = sc.objects[0]
        records.append(
            {
                "id": f"r{i}",
                "image": f"images/{i}.png",
                "conversations": [
                    {"from": "human", "value": "<image>\n" + language.colour_question(obj) + language.SHORT_ANSWER_SUFFIX},
                    {"from": "gpt", "value": obj.colour},
                    {"from": "human", "value": language.existence_question(obj.shape)},
                    {"from": "gpt", "value": "Yes"},
                ],
            }
        )
    return records


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """The tiny model's ops are too small to gain from threads, and two OpenMP threads on 2 shared
    cores spin against any other busy process (measured: the suite took 10-15x longer)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory) -> TinyWorld:
    from matrix.models import handle, tiny

    root = tmp_path_factory.mktemp("tiny_world")
    records = make_records(root / "data", 16, seed=0)
    corpus = [t["value"] for r in records for t in r["conversations"]] * 4
    base = root / "base"
    tiny.build(base, corpus, tiny.TinyArch(), seed=0)
    handle.write_meta(base, "tiny", "plain_v1")
    return TinyWorld(base, root / "data", records)


def _hp(**overrides) -> dict:
    """Every trainer key, set for fast learning on a random tiny model."""
    base = dict(
        lr=2e-3,
        epochs=3,
        batch_size=8,
        micro_batch_size=4,
        warmup_ratio=0.0,
        weight_decay=0.0,
        max_grad_norm=1.0,
        scheduler="cosine",
        max_length=256,
        seed=0,
        bf16=False,
        lora={"r": 8, "alpha": 16, "dropout": 0.05},
        train_projector=True,
        beta=0.1,
        deepspeed=None,
    )
    base.update(overrides)
    return base


def _wrong_answers(records: list[dict]) -> dict[str, str]:
    """A 'greedy' response per item that always differs from the ground truth."""
    from matrix.methods.base import question_items

    return {it.item_id: ("No" if it.answer == "Yes" else "purple" if it.answer != "purple" else "red") for it in question_items(records)}


@pytest.fixture(scope="session")
def hp():
    return _hp


@pytest.fixture(scope="session")
def wrong_answers():
    return _wrong_answers
