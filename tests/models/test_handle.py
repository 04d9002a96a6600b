"""The model handle: batched generation equals one-by-one, and text-only questions need no image."""
import random

import pytest

from matrix.models import handle, tiny
from matrix.world.scene import SHAPES, COLOURS, draw_scene, render


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    corpus = [f"USER: <image>\nIs there a {c} {s}? ASSISTANT: Yes</s>" for s in SHAPES for c in COLOURS]
    tiny.build(d, corpus, tiny.TinyArch(), seed=0)
    handle.write_meta(d, "tiny", "plain_v1")
    return handle.load(d)


def test_batched_equals_one_by_one_and_mixed_text_only(model):
    rng = random.Random(0)
    images = [render(draw_scene(rng)) for _ in range(5)] + [None, None]
    questions = ["Is there a circle?", "What color?", "Count the shapes.", "a", "b", "Which is heavier?", "Why?"]
    batched = model.generate(images, questions, max_new_tokens=6, batch_size=4)
    single = [model.generate([im], [q], max_new_tokens=6, batch_size=1)[0] for im, q in zip(images, questions)]
    assert batched == single
    assert len(batched) == 7


def test_beam_search_batched_equals_one_by_one(model):
    """SHR decodes with 5 beams; left padding must not change what beam search finds."""
    rng = random.Random(1)
    images = [render(draw_scene(rng)) for _ in range(4)]
    questions = ["Describe the image.", "What color?", "Is there a star?", "Count."]
    batched = model.generate(images, questions, max_new_tokens=6, batch_size=4, num_beams=3)
    single = [model.generate([im], [q], max_new_tokens=6, batch_size=1, num_beams=3)[0]
              for im, q in zip(images, questions)]
    assert batched == single and len(batched) == 4
