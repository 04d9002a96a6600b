"""POPE scoring by LLaVA's rules, on hand-worked cases."""
import pytest

from benchmarks.base import BenchmarkFileError, Sample
from benchmarks.pope import Pope, normalise_answer, split_metrics


@pytest.mark.parametrize("text,expected", [
    ("Yes.", "yes"),
    ("No, there is not.", "no"),
    ("There is not a dog.", "no"),       # "not" among the words
    ("no", "no"),
    ("Nope", "yes"),                     # not one of the words: counts as yes
    ("Yes. No.", "yes"),                 # only the first sentence counts
    ("Yes, no doubt", "no"),             # "no" is a word of the first sentence
    ("not sure", "no"),
    ("NO", "yes"),                       # the rule is case-sensitive: NO is not "No"/"no"
])
def test_answer_normalisation(text, expected):
    assert normalise_answer(text) == expected


def test_split_metrics_by_hand():
    labels = ["yes", "yes", "yes", "no", "no", "no", "no", "yes"]
    preds = ["yes", "yes", "no", "yes", "no", "no", "no", "yes"]
    # TP=3 (0,1,7) FN=1 (2) FP=1 (3) TN=3 (4,5,6)
    m = split_metrics(labels, preds)
    assert m["accuracy"] == pytest.approx(100 * 6 / 8)
    assert m["precision"] == pytest.approx(100 * 3 / 4)
    assert m["recall"] == pytest.approx(100 * 3 / 4)
    assert m["f1"] == pytest.approx(75.0)
    assert m["yes_ratio"] == pytest.approx(100 * 4 / 8)


def _samples(category, labels):
    return [Sample(f"{category}{i}", None, "q", {"category": category, "label": lab}) for i, lab in enumerate(labels)]


def test_headline_is_mean_f1_over_three_splits():
    # random: all right -> F1 100. popular: TP=1 FP=1 FN=0 -> P=1/2 R=1 F1=2/3.
    # adversarial: TP=1 FN=1 FP=0 -> P=1 R=1/2 F1=2/3.  mean = (100 + 66.67 + 66.67) / 3 = 77.78
    samples = _samples("random", ["yes", "no"]) + _samples("popular", ["yes", "no"]) + _samples("adversarial", ["yes", "yes"])
    answers = ["Yes", "No", "Yes", "Yes, it is.", "Yes", "No, there is not."]
    scored = Pope().score(samples, answers)
    assert scored.metrics["random_f1"] == pytest.approx(100)
    assert scored.metrics["popular_f1"] == pytest.approx(200 / 3)
    assert scored.metrics["adversarial_f1"] == pytest.approx(200 / 3)
    assert scored.metrics["f1"] == pytest.approx((100 + 200 / 3 + 200 / 3) / 3)
    assert [r["correct"] for r in scored.per_sample] == [True, True, True, False, True, False]


def test_synthetic_files_round_trip(tmp_path):
    bench = Pope()
    bench.synthesize(tmp_path, 8, seed=3)
    samples = bench.load(tmp_path)
    cats = {c: [s for s in samples if s.meta["category"] == c] for c in ("random", "popular", "adversarial")}
    for split in cats.values():
        labels = [s.meta["label"] for s in split]
        assert labels.count("yes") == labels.count("no") > 0  # balanced yes/no per split
    assert all(s.question.endswith("single word or phrase.") and s.image.exists() for s in samples)
    assert len(bench.load(tmp_path, limit=5)) == 5


def test_missing_label_file_is_named(tmp_path):
    Pope().synthesize(tmp_path, 2, seed=0)
    (tmp_path / "pope" / "coco" / "coco_pope_popular.json").unlink()
    with pytest.raises(BenchmarkFileError, match="coco_pope_popular.json"):
        Pope().load(tmp_path)
