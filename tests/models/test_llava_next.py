"""LLaVA-NeXT (anyres) through the model handle, on the shipped tiny model in LLaVA-NeXT form (tiny-next):
per-image token counts equal the transformers processor's own expansion, batched answers equal one-at-a-
time answers for images of different sizes, and a train stage's checkpoint loads back."""
import json

import pytest

from matrix.models.families.tiny import SHIPPED
from matrix.models.handle import load


@pytest.fixture(scope="module")
def next_dir(tmp_path_factory):
    from matrix.models.families.tiny_next import to_llava_next

    out = tmp_path_factory.mktemp("tiny-next")
    to_llava_next(SHIPPED, out)
    return out


def _images():
    from matrix.world.scene import draw_scene, render
    import random

    rng = random.Random(4)
    square = render(draw_scene(rng))                     # 48 x 48
    wide = render(draw_scene(rng)).resize((96, 48))      # tiled 1 x 2
    tall = render(draw_scene(rng)).resize((40, 90))
    return [square, wide, tall]


def test_image_token_counts_match_the_processor(next_dir):
    handle = load(next_dir)
    assert handle.anyres
    counts = set()
    for im in _images():
        ids = handle.processor(text="<image>\nWhat is it?", images=[im], return_tensors="pt")["input_ids"][0]
        assert handle.image_tokens(im.size) == int((ids == handle.image_token_id).sum())
        counts.add(handle.image_tokens(im.size))
    assert len(counts) > 1  # the count depends on the image


def test_batched_answers_equal_one_at_a_time(next_dir):
    handle = load(next_dir)
    images, qs = _images(), ["Describe the image in detail."] * 3
    batched = handle.generate(images, qs, max_new_tokens=12, batch_size=3)
    single = [handle.generate([im], [q], max_new_tokens=12)[0] for im, q in zip(images, qs)]
    assert batched == single


def test_training_and_loading_a_checkpoint(next_dir, tmp_path):
    from matrix.methods.checkpoint import load_trained
    from matrix.methods.trainer import train

    for i, im in enumerate(_images()):
        im.save(tmp_path / f"{i}.png")
    examples = [{"id": str(i), "image": f"{i}.png",
                 "conversations": [{"from": "human", "value": "<image>\nDescribe the image."},
                                   {"from": "gpt", "value": "A shape."}]} for i in range(3)]
    hp = {"lr": 1e-3, "epochs": 1, "batch_size": 3, "micro_batch_size": 3, "warmup_ratio": 0.0, "weight_decay": 0.0,
          "max_grad_norm": 1.0, "scheduler": "constant", "max_length": 256, "seed": 0, "bf16": False,
          "lora": {"r": 4, "alpha": 8, "dropout": 0.0}, "train_projector": True, "beta": 0.1, "kl_lambda": 0.0,
          "deepspeed": None}
    result = train(next_dir, examples, tmp_path, "sft", hp, tmp_path / "ckpt", template="plain_v1")
    assert result["examples"] == 3 and result["steps"] == 1 and result["dropped_truncated"] == 0
    handle = load_trained(next_dir, tmp_path / "ckpt", template="plain_v1")
    assert handle.anyres and len(handle.generate(_images()[:1], ["Describe the image."], max_new_tokens=4)) == 1
    assert json.loads((next_dir / "matrix_model.json").read_text())["family"] == "tiny-next"
