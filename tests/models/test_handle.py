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


def test_length_order_and_its_inverse():
    from matrix.models.batching import in_length_order, length_order

    # By hand: lengths 3, 9, 5, 9, 1 -> longest first, ties in their order: 1, 3, 2, 0, 4.
    assert length_order([3, 9, 5, 9, 1]) == [1, 3, 2, 0, 4]
    seen = []

    def run(xs, ys):
        seen.append(list(xs))
        return [f"{x}{y}" for x, y in zip(xs, ys)]

    assert in_length_order(run, [3, 9, 5, 9, 1], "abcde", "12345") == ["a1", "b2", "c3", "d4", "e5"]
    assert seen == [["b", "d", "c", "a", "e"]]


def test_batches_by_length_answer_as_plain_batches(model, monkeypatch):
    """Length-bucketed batches: less padding (each batch holds similar lengths), the same greedy answers."""
    rng = random.Random(2)
    images = [render(draw_scene(rng)) for _ in range(8)]
    questions = ["Is there a circle?", "Describe every shape in this picture, its colour and where it is.", "Why?",
                 "How many shapes are there, and which of them is the largest one?", "Count.", "What color is it?",
                 "Is there a red star to the left of a blue square in the picture?", "a"]
    widths: list[int] = []
    real = model._batches

    def spy(ims, qs, *args):
        encode = args[6]
        for start in range(0, len(qs), 4):  # the batches _batches forms: contiguous slices of batch_size
            widths.append(max(len(encode(q, im)) for q, im in zip(qs[start:start + 4], ims[start:start + 4])))
        return real(ims, qs, *args)

    monkeypatch.setattr(model, "_batches", spy)
    plain = model.generate(images, questions, max_new_tokens=6, batch_size=4, by_length=False)
    plain_widths, widths[:] = list(widths), []
    bucketed = model.generate(images, questions, max_new_tokens=6, batch_size=4)
    assert bucketed == plain
    lengths = sorted((len(model.encode_prompt(q, im.size)) for q, im in zip(questions, images)), reverse=True)
    assert widths == [lengths[0], lengths[4]]  # the 4 longest together, then the 4 shortest
    assert sum(widths) < sum(plain_widths)  # fewer pad tokens


def test_auto_batch_size_halves_on_out_of_memory_and_keeps_what_fits(model, monkeypatch):
    """batch_size "auto": 64 first (capped by the questions), halved on an out-of-memory error until a
    batch fits, only the failed batch retried, the size that fitted kept and recorded; the answers are
    those of a fixed batch size. The OOM is simulated: batches above 5 raise CUDA's message."""
    rng = random.Random(3)
    images = [render(draw_scene(rng)) for _ in range(12)]
    questions = [f"Is there a {c} {s}?" for s, c in zip(SHAPES * 2, list(COLOURS) * 2)][:12]
    tried: list[int] = []
    real = model.model.generate

    def small_memory(*args, **kwargs):
        tried.append(kwargs["input_ids"].shape[0])
        if tried[-1] > 5:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(*args, **kwargs)

    fixed = model.generate(images, questions, max_new_tokens=4, batch_size=3)
    monkeypatch.setattr(model.model, "generate", small_memory)
    auto = model.generate(images, questions, max_new_tokens=4, batch_size="auto")
    # By hand: 12 (all, under 64) fails, 6 fails, 3 fits; then 3, 3, 3 for the remaining 9.
    assert tried == [12, 6, 3, 3, 3, 3]
    assert auto == fixed and model.batch_size == 3
    # A fixed batch size is the user's: an out-of-memory error there is raised, not worked around.
    with pytest.raises(RuntimeError, match="out of memory"):
        model.generate(images, questions, max_new_tokens=4, batch_size=8)

    def broken(*args, **kwargs):
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr(model.model, "generate", broken)
    with pytest.raises(RuntimeError, match="shape mismatch"):  # not an OOM: never retried smaller
        model.generate(images, questions, max_new_tokens=4, batch_size="auto")
