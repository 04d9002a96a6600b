"""POPE: LLaVA's eval_pope.py rules on hand-worked cases, and the synthetic files round trip."""
import json

import pytest

from matrix.benchmarks.base import BENCHMARKS, BenchmarkFileError, Sample
from matrix.benchmarks.pope import Pope, parse_answer, split_metrics
from matrix.world import language
from matrix.world.benchmarks import synthesize_benchmark
from matrix.world.scene import OBJECTS

SPLITS = ("adversarial", "popular", "random")


@pytest.mark.parametrize("text,expected", [
    ("Yes.", "yes"),
    ("No, there is not.", "no"),           # "No" once the comma is gone
    ("not sure", "no"),                    # "not" is among the words
    ("There is not a dog.", "no"),
    ("no", "no"),
    ("Nope", "yes"),                       # not one of the three words: yes
    ("Yes. No.", "yes"),                   # only the first sentence counts
    ("Yes, no doubt", "no"),               # "no" is a word of the first sentence
    ("NO", "yes"),                         # case-sensitive: "NO" is neither "No" nor "no"
    ("No\nthere is none", "yes"),          # split on spaces only: the first word is "No\nthere"
    ("", "yes"),
])
def test_answer_parsing(text, expected):
    assert parse_answer(text) == expected


def test_split_metrics_by_hand():
    labels = ["yes", "yes", "yes", "no", "no", "no", "no", "yes"]
    preds = ["yes", "yes", "no", "yes", "no", "no", "no", "yes"]
    # TP=3 (0,1,7) FN=1 (2) FP=1 (3) TN=3 (4,5,6): acc 6/8, P=3/4, R=3/4, F1=0.75, yes ratio 4/8
    m = split_metrics(labels, preds)
    assert m == pytest.approx(
        {"accuracy": 75.0, "precision": 75.0, "recall": 75.0, "f1": 75.0, "yes_ratio": 50.0})
    # Never predicting yes: eval_pope.py would divide by zero; we give precision 0 and F1 0.
    assert split_metrics(["yes", "no"], ["no", "no"]) == pytest.approx(
        {"accuracy": 50.0, "precision": 0.0, "recall": 0.0, "f1": 0.0, "yes_ratio": 0.0})


def _samples(split, labels):
    return [Sample(f"{split}-{i}", None, "q", {"category": split, "label": lab})
            for i, lab in enumerate(labels)]


def test_three_splits_by_hand():
    samples = (_samples("random", ["yes", "yes", "no", "no"])
               + _samples("popular", ["yes", "no", "yes", "no"])
               + _samples("adversarial", ["yes", "no"]))
    answers = [
        # random -> yes, no, no, no: TP=1 FN=1 TN=2 FP=0: P=1, R=1/2, F1=2*(1/2)/(3/2)=2/3; acc 3/4; yes 1/4
        "Yes.", "No, there is not.", "No", "not sure",
        # popular -> yes, yes, yes, no: TP=2 FP=1 TN=1 FN=0: P=2/3, R=1, F1=(4/3)/(5/3)=0.8; acc 3/4; yes 3/4
        "Yes", "Yes, it is.", "There is a dog", "I do not think so.",
        # adversarial -> yes, yes ("" and "NO" both parse as yes): TP=1 FP=1: P=1/2, R=1, F1=2/3; acc 1/2
        "", "NO",
    ]
    scored = Pope().score(samples, answers)
    m = scored.metrics
    assert m["random_f1"] == pytest.approx(200 / 3) and m["random_yes_ratio"] == pytest.approx(25.0)
    assert m["popular_f1"] == pytest.approx(80.0) and m["popular_precision"] == pytest.approx(200 / 3)
    assert m["adversarial_f1"] == pytest.approx(200 / 3) and m["adversarial_accuracy"] == pytest.approx(50.0)
    # headline: mean F1 = (66.67 + 80 + 66.67) / 3 = 71.11; mean accuracy = (75 + 75 + 50) / 3 = 66.67
    assert m["f1"] == pytest.approx((200 / 3 + 80 + 200 / 3) / 3)
    assert m["accuracy"] == pytest.approx(200 / 3)
    rows = scored.per_sample
    assert [r["parsed"] for r in rows[:4]] == ["yes", "no", "no", "no"] and rows[9]["answer"] == "NO"
    assert [r["correct"] for r in rows[4:]] == [True, False, True, True, True, False]


def _confusion(split, tp, fp, tn, fn):
    labels = ["yes"] * (tp + fn) + ["no"] * (fp + tn)
    answers = ["Yes"] * tp + ["No"] * fn + ["Yes"] * fp + ["No"] * tn
    return _samples(split, labels), answers


def test_llava_15_13b_numbers_of_issue_626():
    # LLaVA issue #626 prints, for llava-v1.5-13b, random: TP 1183 FP 31 TN 1379 FN 317 (2910 questions),
    # F1 0.8717759764185703. For popular and adversarial it prints F1 0.8628738147337709 and 0.845. With
    # the same 1500 "yes" questions answered alike (TP 1183, FN 317), F1 = 2TP/(2TP+FP+FN) = 2366/(2683+FP):
    # FP=59 gives 2366/2742 = 0.86287381..., FP=117 gives 2366/2800 = 0.845; TN = 1500 - FP.
    samples, answers = [], []
    for split, counts in (("random", (1183, 31, 1379, 317)), ("popular", (1183, 59, 1441, 317)),
                          ("adversarial", (1183, 117, 1383, 317))):
        s, a = _confusion(split, *counts)
        samples += s
        answers += a
    m = Pope().score(samples, answers).metrics
    assert m["random_f1"] == pytest.approx(100 * 0.8717759764185703, abs=1e-9)
    assert m["random_accuracy"] == pytest.approx(100 * 0.8804123711340206, abs=1e-9)
    assert m["random_precision"] == pytest.approx(100 * 0.9744645799011532, abs=1e-9)
    assert m["popular_f1"] == pytest.approx(100 * 0.8628738147337709, abs=1e-9)
    assert m["adversarial_f1"] == pytest.approx(84.5, abs=1e-9)
    # (0.87178 + 0.86287 + 0.845) / 3 = 0.8598833 -> 85.988; the paper prints 85.9 (truncated)
    assert m["f1"] == pytest.approx(100 * 0.859883263717447, abs=1e-9)


def test_answers_must_match_questions():
    with pytest.raises(ValueError, match="1 answers for 2 questions"):
        Pope().score(_samples("random", ["yes", "no"]), ["Yes"])


# ---- synthetic files ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("pope")
    synthesize_benchmark("pope", root, 12, seed=3)
    return root


def _object_of(text):
    (obj,) = [o for o in OBJECTS
              if text == language.existence_question(*reversed(o.split(" "))) + language.SHORT_ANSWER_SUFFIX]
    return obj


def _truth(root):
    return {img: {f"{o['colour']} {o['shape']}" for o in scene["objects"]}
            for img, scene in json.loads((root / "pope" / "ground_truth.json").read_text()).items()}


def test_synthetic_round_trip_agrees_with_the_scenes(synthetic):
    samples = Pope().load(synthetic)
    truth = _truth(synthetic)
    assert len(truth) == 12 and all(s.image.exists() for s in samples)
    assert all(len(objects) >= 3 for objects in truth.values())  # POPE keeps images of >= 3 objects
    assert [s.question_id for s in samples] == [str(i) for i in range(1, len(samples) + 1)]
    yes_by_split = {}
    for split in SPLITS:
        rows = [s for s in samples if s.meta["category"] == split]
        assert len(rows) == 12 * 6  # per image 3 present objects, each followed by an absent one
        for img in truth:
            mine = [s for s in rows if s.meta["image"] == img]
            assert [s.meta["label"] for s in mine] == ["yes", "no"] * 3
            assert len({s.question for s in mine}) == 6  # no object asked twice of an image
        for s in rows:
            assert (s.meta["label"] == "yes") == (_object_of(s.question) in truth[s.meta["image"]])
        yes_by_split[split] = {(s.meta["image"], s.question) for s in rows if s.meta["label"] == "yes"}
        label_file = synthetic / "pope" / "coco" / f"coco_pope_{split}.json"
        labels = [json.loads(line) for line in label_file.open()]
        assert [r["question_id"] for r in labels] == list(range(1, len(rows) + 1))
    assert yes_by_split["random"] == yes_by_split["popular"] == yes_by_split["adversarial"]


def test_popular_and_adversarial_negatives_are_pope_s_picks(synthetic):
    """Worked again from the scenes, as POPE's utils.py picks them: popular = the most frequent object not
    in the image and not asked yet; adversarial = the one co-occurring most with the positive just asked."""
    truth = _truth(synthetic)
    frequency = {o: sum(o in objects for objects in truth.values()) for o in OBJECTS}

    def co(a, b):
        return sum(a in objects and b in objects for objects in truth.values())

    samples = Pope().load(synthetic)
    for split in ("popular", "adversarial"):
        for img, objects in truth.items():
            asked = [_object_of(s.question) for s in samples
                     if s.meta["category"] == split and s.meta["image"] == img]
            for k in range(3):
                positive, negative = asked[2 * k], asked[2 * k + 1]
                free = {o for o in OBJECTS if frequency[o]} - objects - set(asked[1:2 * k:2])
                score = (lambda o: frequency[o]) if split == "popular" else (lambda o: co(positive, o))
                assert negative in free, (split, img, k)
                assert all(score(negative) >= score(o) for o in free), (split, img, k)
                if split == "adversarial":
                    assert score(negative) > 0 or not any(score(o) for o in free)


def test_limit_counts_per_split_and_files_are_deterministic(synthetic, tmp_path):
    limited = Pope().load(synthetic, limit=2)
    assert [s.meta["category"] for s in limited] == ["adversarial"] * 2 + ["popular"] * 2 + ["random"] * 2
    synthesize_benchmark("pope", tmp_path, 12, seed=3)
    for f in ("llava_pope_test.jsonl", "coco/coco_pope_random.json", "val2014/shapes_val_000004.png"):
        assert (tmp_path / "pope" / f).read_bytes() == (synthetic / "pope" / f).read_bytes()


def test_missing_or_inconsistent_files_are_named(tmp_path):
    synthesize_benchmark("pope", tmp_path, 3, seed=0)
    labels = tmp_path / "pope" / "coco" / "coco_pope_adversarial.json"
    lines = labels.read_text().splitlines(keepends=True)
    labels.write_text("".join(lines[:-1]))
    with pytest.raises(BenchmarkFileError, match=r"adversarial\.json: \d+ labels for \d+ adversarial"):
        Pope().load(tmp_path)
    # first image's labels moved after the second image's: matched by order, they now disagree
    first = [i for i, line in enumerate(lines) if json.loads(line)["image"] == json.loads(lines[0])["image"]]
    rest = [line for i, line in enumerate(lines) if i not in first]
    labels.write_text("".join(rest + [lines[i] for i in first]))
    with pytest.raises(BenchmarkFileError, match="out of order"):
        Pope().load(tmp_path)
    labels.unlink()
    with pytest.raises(BenchmarkFileError, match=r"coco_pope_adversarial\.json not found"):
        Pope().load(tmp_path)
    labels.write_text("".join(lines))
    (tmp_path / "pope" / "val2014" / "shapes_val_000001.png").unlink()
    with pytest.raises(BenchmarkFileError, match=r"val2014/shapes_val_000001\.png not found"):
        Pope().load(tmp_path)
    (tmp_path / "pope" / "llava_pope_test.jsonl").unlink()
    with pytest.raises(BenchmarkFileError, match=r"llava_pope_test\.jsonl not found"):
        Pope().load(tmp_path)
