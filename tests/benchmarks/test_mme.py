"""MME scoring by the official calculation rules, on hand-worked cases."""
import pytest

from benchmarks.base import BenchmarkFileError, Sample
from benchmarks.mme import MME, parse_prediction


@pytest.mark.parametrize("text,expected", [
    ("Yes", "yes"), ("no", "no"), ("Yes, there is.", "yes"), ("No.", "no"),
    ("There is a circle", "other"),   # neither word within the first four characters
    ("Nope", "no"),                    # "no" within the first four characters
])
def test_prediction_parsing(text, expected):
    assert parse_prediction(text) == expected


def _pair(category, image, answers=("Yes", "No")):
    return [Sample(f"{category}/{image}", None, "q", {"category": category, "image": image, "label": a}) for a in answers]


def test_subtask_score_is_acc_plus_acc_plus():
    # existence: image a both right, image b one of two right -> acc 3/4, acc+ 1/2 -> 75 + 50 = 125
    # count: image c "other" and a wrong answer -> acc 0, acc+ 0 -> 0
    samples = _pair("existence", "a") + _pair("existence", "b") + _pair("count", "c")
    answers = ["Yes", "No", "Yes", "Yes", "I cannot tell", "Yes"]
    m = MME().score(samples, answers).metrics
    assert m["existence"] == pytest.approx(125.0)
    assert m["count"] == pytest.approx(0.0)
    assert m["perception"] == pytest.approx(125.0)
    assert m["cognition"] == 0.0


def test_cognition_is_separate():
    samples = _pair("code_reasoning", "x") + _pair("color", "y")
    m = MME().score(samples, ["Yes", "No", "No", "No"]).metrics
    assert m["code_reasoning"] == pytest.approx(200.0)
    assert m["color"] == pytest.approx(50.0)  # acc 1/2, acc+ 0
    assert (m["perception"], m["cognition"]) == (pytest.approx(50.0), pytest.approx(200.0))


def test_synthetic_files_round_trip(tmp_path):
    bench = MME()
    bench.synthesize(tmp_path, 3, seed=1)
    samples = bench.load(tmp_path)
    assert len(samples) == 4 * 3 * 2
    by_image = {}
    for s in samples:
        by_image.setdefault(s.meta["image"], []).append(s.meta["label"])
    assert all(sorted(v) == ["No", "Yes"] for v in by_image.values())  # one yes and one no per image
    assert bench.score(samples, [s.meta["label"] for s in samples]).metrics["perception"] == pytest.approx(800.0)


def test_official_subfolder_layout_and_missing_truth(tmp_path):
    release = tmp_path / "MME" / "MME_Benchmark_release_version" / "artwork"
    (release / "images").mkdir(parents=True)
    (release / "questions_answers_YES_or_NO").mkdir()
    (release / "images" / "1.jpg").write_bytes(b"")
    (release / "questions_answers_YES_or_NO" / "1.txt").write_text(
        "Is this by Monet? Please answer yes or no.\tYes\nIs this by Dali? Please answer yes or no.\tNo\n")
    (tmp_path / "MME" / "llava_mme.jsonl").write_text(
        '{"question_id": "artwork/1.jpg", "image": "artwork/images/1.jpg", '
        '"text": "Is this by Dali?\\nAnswer the question using a single word or phrase.", "category": "artwork"}\n')
    (s,) = MME().load(tmp_path)
    assert s.meta["label"] == "No"
    (release / "questions_answers_YES_or_NO" / "1.txt").unlink()
    with pytest.raises(BenchmarkFileError, match="1.txt not found"):
        MME().load(tmp_path)
