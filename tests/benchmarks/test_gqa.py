"""GQA: convert_gqa_for_eval.py + eval.py exact match on hand-worked cases, and the synthetic round trip."""
import json

import pytest

from matrix.benchmarks.base import BENCHMARKS, BenchmarkFileError, Sample
from matrix.benchmarks.gqa import GQA, normalise
from matrix.world import language
from matrix.world.benchmarks import synthesize_benchmark


@pytest.mark.parametrize("text,expected", [
    ("Yes.", "yes"), ("Red", "red"), ("Top left..", "top left"),
    ("red. ", "red. "),          # only trailing periods go: the space stays, so no match later
    ("The red one", "the red one"),  # no article removal
    ("Two", "two"),              # no number-word mapping
])
def test_normalisation(text, expected):
    assert normalise(text) == expected


def _s(qid, label, structural="query", balanced=True):
    return Sample(qid, None, "q", {"label": label, "structural": structural, "balanced": balanced,
                                   "semantic": None})


def test_exact_match_by_hand():
    samples = [_s("1", "yes", "verify"), _s("2", "red"), _s("3", "top left"), _s("4", "2"),
               _s("5", "circle"), _s("6", "no", "logical", balanced=False)]
    answers = ["Yes.", "RED", "top left ", "two", "Circle.", "no"]
    scored = GQA().score(samples, answers)
    # right: 1 (trailing period, case), 2 (case), 5; wrong: 3 (trailing space), 4 (number word);
    # 6 is right but unbalanced: not counted. accuracy = 3/5; binary = 1/1; open = 2/4
    assert scored.metrics == pytest.approx({"accuracy": 60.0, "binary": 100.0, "open": 50.0})
    assert [r["correct"] for r in scored.per_sample] == [True, True, False, False, True, True]
    assert len(scored.per_sample) == 6


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("gqa")
    synthesize_benchmark("gqa", root, 10, seed=4)
    return root


def test_synthetic_round_trip(synthetic):
    samples = GQA().load(synthetic)
    scenes = json.loads((synthetic / "gqa" / "ground_truth.json").read_text())
    truth = json.loads((synthetic / "gqa" / "data" / "testdev_balanced_questions.json").read_text())
    assert 10 <= len(samples) <= 20 and all(s.image.exists() for s in samples)
    for s in samples:
        assert s.question.endswith(language.SHORT_ANSWER_SUFFIX)
        gold = truth[s.question_id]
        objs = scenes[gold["imageId"]]["objects"]
        q = gold["question"]
        if q.startswith("Is there"):
            shape = q.removeprefix("Is there a ").removesuffix(" in the image?")
            assert s.meta["label"] == ("yes" if any(o["shape"] == shape for o in objs) else "no")
        elif q.startswith("What color"):
            assert s.meta["label"] in {o["colour"] for o in objs}
            assert any(o["colour"] == s.meta["label"]
                       and q == f"What color is the {o['shape']} at the {o['position']}?" for o in objs)
        elif q.startswith("Where is"):
            assert any(q == f"Where is the {o['colour']} {o['shape']}?" and o["position"] == s.meta["label"]
                       for o in objs)
    m = GQA().score(samples, [s.meta["label"].capitalize() + "." for s in samples]).metrics
    assert m["accuracy"] == 100.0
    assert len(GQA().load(synthetic, limit=3)) == 3


def test_missing_files_are_named(tmp_path):
    synthesize_benchmark("gqa", tmp_path, 2, seed=0)
    base = tmp_path / "gqa"
    (base / "data" / "images" / "n000000.png").unlink()
    with pytest.raises(BenchmarkFileError, match=r"data/images/n000000\.png not found"):
        GQA().load(tmp_path)
    (base / "data" / "testdev_balanced_questions.json").unlink()
    with pytest.raises(BenchmarkFileError, match=r"testdev_balanced_questions\.json not found"):
        GQA().load(tmp_path)
    (base / "llava_gqa_testdev_balanced.jsonl").unlink()
    with pytest.raises(BenchmarkFileError, match=r"llava_gqa_testdev_balanced\.jsonl not found"):
        GQA().load(tmp_path)
