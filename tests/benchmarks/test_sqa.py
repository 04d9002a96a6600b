"""ScienceQA-IMG: eval_science_qa.py's letter parsing on hand-worked cases, IMG-accuracy, round trip."""
import json

import pytest

from matrix.benchmarks.base import BENCHMARKS, BenchmarkFileError, Sample
from matrix.benchmarks.sqa import ScienceQA, parse_letter, pred_index
from matrix.world import language
from matrix.world.benchmarks import synthesize_benchmark


@pytest.mark.parametrize("text,expected", [
    ("B", "B"),
    ("B. something", "B"),                  # "X. " prefix
    ("The answer is B.", "B"),              # the regex
    ("I think so. The answer is C. Yes", "C"),
    ("The answer is B. The answer is C.", "FAILED"),  # two matches: not exactly one
    ("b", "FAILED"),                        # case-sensitive
    ("B.", "FAILED"),                       # "B." is neither a letter nor "B. ..."
    ("B) red", "FAILED"),
    (" B", "FAILED"),                       # no stripping here
    ("F", "FAILED"),                        # not among A-E
    ("The answer is Z.", "Z"),              # parsed, then wrong: beyond the choices
    ("", "FAILED"),
])
def test_letter_parsing(text, expected):
    assert parse_letter(text) == expected


def test_letter_beyond_the_choices_is_wrong():
    assert pred_index("C", 3) == 2 and pred_index("D", 3) == -1 and pred_index("FAILED", 5) == -1


def _sample(qid, answer, image=True, n=4):
    return Sample(qid, None, "q", {"answer": answer, "n_choices": n, "is_multimodal": image})


def test_img_accuracy_by_hand():
    samples = [_sample("1", 1), _sample("2", 1), _sample("3", 0), _sample("4", 2, n=3),
               _sample("5", 0, image=False), _sample("6", 1, image=False)]
    answers = ["The answer is B.", "B. something", "A", "D",   # right, right, right, beyond 3 choices
               "A", "I don't know"]                          # text-only: right, FAILED
    scored = ScienceQA().score(samples, answers)
    m = scored.metrics
    # IMG: 3 of 4 = 75; all: 4 of 6 = 66.67; one FAILED
    assert m["img_accuracy"] == pytest.approx(75.0)
    assert m["accuracy"] == pytest.approx(400 / 6)
    assert m["failed"] == 1.0
    assert [r["parsed"] for r in scored.per_sample] == ["B", "B", "A", "D", "A", "FAILED"]
    assert [r["correct"] for r in scored.per_sample] == [True, True, True, False, True, False]
    # no image question at all: IMG-accuracy is missing, not zero
    assert "img_accuracy" not in ScienceQA().score(samples[4:], ["A", "B"]).metrics


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("sqa")
    synthesize_benchmark("sqa", root, 20, seed=2)
    return root


def test_synthetic_round_trip(synthetic):
    samples = ScienceQA().load(synthetic)
    base = synthetic / "scienceqa"
    problems = json.loads((base / "problems.json").read_text())
    splits = json.loads((base / "pid_splits.json").read_text())
    assert [s.question_id for s in samples] == splits["test"] and len(samples) == 20
    assert set(problems) - set(splits["test"])  # train problems exist, and are not asked
    text_only = [s for s in samples if not s.meta["is_multimodal"]]
    assert len(text_only) == 4 and all(s.image is None for s in text_only)
    for s in samples:
        p = problems[s.question_id]
        assert s.question.endswith(language.MULTIPLE_CHOICE_SUFFIX) and "<image>" not in s.question
        assert s.question.startswith(p["question"] + "\nA. " + p["choices"][0])
        assert s.meta["is_multimodal"] == (s.image is not None) == (p["image"] is not None)
        if s.image is not None:
            assert s.image.exists()
    truth = json.loads((base / "ground_truth.json").read_text())
    # the right option agrees with the scene for a count question
    for s in samples:
        p = problems[s.question_id]
        if p["question"].startswith("How many") and s.question_id in truth:
            shape = next(sh for sh in ("circle", "square", "triangle", "star", "cross", "diamond")
                         if language.count_question(sh) == p["question"])
            n = sum(o["shape"] == shape for o in truth[s.question_id]["objects"])
            assert p["choices"][p["answer"]] == str(n)
    right = [f"The answer is {'ABCDE'[s.meta['answer']]}." for s in samples]
    assert ScienceQA().score(samples, right).metrics["img_accuracy"] == 100.0
    limited = ScienceQA().load(synthetic, limit=2)
    assert [s.meta["is_multimodal"] for s in limited].count(True) == 2
    assert [s.meta["is_multimodal"] for s in limited].count(False) == 2


def test_missing_files_are_named(tmp_path):
    synthesize_benchmark("sqa", tmp_path, 3, seed=0)
    base = tmp_path / "scienceqa"
    (base / "images" / "test" / "100" / "image.png").unlink()
    with pytest.raises(BenchmarkFileError, match=r"images/test/100/image\.png not found"):
        ScienceQA().load(tmp_path)
    for name in ("pid_splits.json", "problems.json", "llava_test_CQM-A.json"):
        (base / name).unlink()
        with pytest.raises(BenchmarkFileError, match=name.replace(".", r"\.") + " not found"):
            ScienceQA().load(tmp_path)
