"""TextVQA: EvalAI normalisation and leave-one-out soft accuracy on hand-worked cases, and round trip."""
import json

import pytest
from PIL import Image

from matrix.benchmarks.base import BENCHMARKS, BenchmarkFileError, Sample
from matrix.benchmarks.textvqa import TextVQA, asked_question, normalise, soft_accuracy
from matrix.world import language
from matrix.world.benchmarks import synthesize_benchmark


@pytest.mark.parametrize("text,expected", [
    ("The Cat.", "cat"),            # lowercase, trailing period, article
    ("an apple", "apple"),
    ("two", "2"), ("Ten dogs?", "10 dogs"), ("none", "0"),   # number words -> digits
    ("3.5", "3.5"),                 # a period before a digit stays
    ("1,000", "1000"),
    ("coca-cola", "coca cola"),     # a hyphen not next to a space becomes a space
    ("hello - world", "hello world"),  # next to a space: deleted
    ("dont", "don't"), ("isnt", "isn't"), ("couldnt've", "couldn't've"),  # contractions restored
    # m4c_evaluator.py's table as it is (official results, its table looked up by hand): spellings it
    # lacks stay; "somebody'd" loses its apostrophe; "twas" gains one; capitalised keys never match
    ("couldntve", "couldntve"), ("youdve", "youdve"), ("somebody'd", "somebodyd"), ("twas", "'twas"),
    ("im", "im"),
    ("it's", "it 's"),
    ("its well", "its well"), ("we were ill", "we were ill"),  # words of their own are not contractions              # "'s" split off first
    ("yes, sir!", "yes sir"),
    ("  STOP\n", "stop"),
])
def test_evalai_normalisation(text, expected):
    assert normalise(text) == expected


def test_two_of_ten_annotators_by_hand():
    # The answer matches annotators 1 and 2 (of 10). Leaving out one of the 8 others keeps 2 matches:
    # min(1, 2/3) = 2/3; leaving out one of the 2 matching ones leaves 1: 1/3.
    # Mean = (8 * 2/3 + 2 * 1/3) / 10 = (16/3 + 2/3) / 10 = 18/30 = 0.6
    gts = ["cat", "the cat", "dog", "dog", "dog", "dog", "bird", "bird", "fish", "cow"]
    assert soft_accuracy("Cat.", gts) == pytest.approx(0.6)
    # 3 matches: leaving out a non-match (7 ways) keeps 3 -> 1; a match (3 ways) -> 2/3: (7 + 2) / 10
    assert soft_accuracy("dog", ["dog"] * 3 + ["x"] * 7) == pytest.approx(0.9)
    # 4 or more matches: every subset of nine holds at least 3 -> 1
    assert soft_accuracy("dog", ["dog"] * 4 + ["x"] * 6) == pytest.approx(1.0)
    # 1 match: 9 subsets with 1 (1/3) and one with 0 -> 9/3/10 = 0.3
    assert soft_accuracy("dog", ["dog"] + ["x"] * 9) == pytest.approx(0.3)
    # number word vs digit, article: "two" and "2" are one answer after normalisation
    assert soft_accuracy("2", ["two", "Two", "the two"] + ["x"] * 7) == pytest.approx(0.9)


def test_score_averages_x100():
    samples = [Sample("a", None, "q", {"answers": ["cat", "the cat"] + ["dog"] * 8}),
               Sample("b", None, "q", {"answers": ["two"] * 10})]
    scored = TextVQA().score(samples, ["cat", "2"])
    assert scored.metrics["accuracy"] == pytest.approx((60 + 100) / 2)
    assert [r["score"] for r in scored.per_sample] == pytest.approx([0.6, 1.0])
    assert [r["parsed"] for r in scored.per_sample] == ["cat", "2"]


def test_question_recovered_from_prompt():
    suffix = language.SHORT_ANSWER_SUFFIX
    assert asked_question("What Is It?\nReference OCR token: a, b" + suffix) == "what is it?"
    assert asked_question("What is it?" + suffix) == "what is it?"
    assert asked_question("Reference OCR token: a\nWhat is it?" + suffix) == "what is it?"


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("textvqa")
    synthesize_benchmark("textvqa", root, 9, seed=5)
    return root


def test_synthetic_round_trip(synthetic):
    samples = TextVQA().load(synthetic)
    data = json.loads((synthetic / "textvqa" / "TextVQA_0.5.1_val.json").read_text())["data"]
    assert len(samples) == 9 and all(s.image.exists() for s in samples)
    for s, gold in zip(samples, data):
        token = s.question.split("\nReference OCR token: ")[1].split("\n")[0]
        assert s.question.endswith(language.SHORT_ANSWER_SUFFIX) and gold["ocr_tokens"] == [token]
        assert len(s.meta["answers"]) == 10
        assert soft_accuracy(token, s.meta["answers"]) == 1.0   # the OCR token is the right answer
        image = Image.open(s.image)
        assert image.size == (48, 48) and len(image.convert("RGB").getcolors(1 << 16)) > 3  # the word is drawn on it
    assert TextVQA().score(samples, ["unanswerable"] * 9).metrics["accuracy"] == 0.0
    assert len(TextVQA().load(synthetic, limit=4)) == 4


def test_missing_files_are_named(tmp_path):
    synthesize_benchmark("textvqa", tmp_path, 2, seed=0)
    base = tmp_path / "textvqa"
    rows = (base / "llava_textvqa_val_v051_ocr.jsonl").read_text()
    (base / "llava_textvqa_val_v051_ocr.jsonl").write_text(rows.replace("What word", "Which word", 1)
                                                          .replace("What number", "Which number", 1))
    with pytest.raises(BenchmarkFileError, match=r"TextVQA_0\.5\.1_val\.json: no annotation for image"):
        TextVQA().load(tmp_path)
    (base / "llava_textvqa_val_v051_ocr.jsonl").write_text(rows)
    image = next((base / "train_images").iterdir())
    image.unlink()
    with pytest.raises(BenchmarkFileError, match=rf"train_images/{image.name} not found"):
        TextVQA().load(tmp_path)
    (base / "TextVQA_0.5.1_val.json").unlink()
    with pytest.raises(BenchmarkFileError, match=r"TextVQA_0\.5\.1_val\.json not found"):
        TextVQA().load(tmp_path)
    (base / "llava_textvqa_val_v051_ocr.jsonl").unlink()
    with pytest.raises(BenchmarkFileError, match=r"llava_textvqa_val_v051_ocr\.jsonl not found"):
        TextVQA().load(tmp_path)
