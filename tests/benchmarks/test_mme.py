"""MME: the official calculation.py rules on hand-worked cases, both ground-truth layouts, round trip."""
import json
import random
import shutil

import pytest

from matrix.benchmarks.base import BENCHMARKS, BenchmarkFileError, Sample
from matrix.benchmarks.mme import MME, official_prompts, parse_prediction
from matrix.world import language
from matrix.world.benchmarks import synthesize_benchmark
from matrix.world.benchmarks.mme import POSITIONS, _pair
from matrix.world.scene import COLOURS, SHAPES, Obj, Scene

SUFFIX = language.SHORT_ANSWER_SUFFIX


@pytest.mark.parametrize("text,expected", [
    ("Yes", "yes"), ("no", "no"), ("YES", "yes"),
    ("Yes, there is.", "yes"), ("No.", "no"),
    ("Nope", "no"),                      # "no" within the first four characters
    ("Not sure", "no"),                  # likewise
    ("There is a circle", "other"),      # neither word within the first four characters
    ("The answer is yes", "other"),
    ("I don't know", "other"),
    ("", "other"),
    ("\n\nyes", "other"),                # not stripped: the first four characters are "\n\nye"
])
def test_prediction_parsing(text, expected):
    assert parse_prediction(text) == expected


def _image(subtask, name, labels=("Yes", "No")):
    return [Sample(f"{subtask}/{name}", None, "q", {"category": subtask, "label": lab}) for lab in labels]


def test_subtask_score_is_acc_plus_acc_plus_by_hand():
    samples = _image("existence", "a.png") + _image("existence", "b.png") + _image("existence", "c.png")
    samples += _image("count", "d.png")
    answers = [
        "Yes", "No",                # a: both right
        "Yes", "Yes",               # b: one of two right
        "I cannot tell", "No",      # c: "other" (wrong) and right
        "No", "Yes, there are",     # d: both wrong
    ]
    m = MME().score(samples, answers).metrics
    # existence: acc = 4/6 = 66.67, acc+ = 1/3 (only a) = 33.33 -> 66.67 + 33.33 = 100
    assert m["existence_acc"] == pytest.approx(200 / 3) and m["existence_acc_plus"] == pytest.approx(100 / 3)
    assert m["existence"] == pytest.approx(100.0) and m["existence_other"] == 1.0
    # count: acc 0, acc+ 0 -> 0; perception = 100 + 0; no cognition subtask -> no cognition number at all
    assert m["count"] == 0.0
    assert m["perception"] == pytest.approx(100.0)
    assert "cognition" not in m


def test_cognition_is_summed_apart_from_perception():
    samples = _image("code_reasoning", "x.png") + _image("color", "y.png")
    scored = MME().score(samples, ["Yes", "No", "No", "No"])
    m = scored.metrics
    assert m["code_reasoning"] == pytest.approx(200.0)  # acc 1, acc+ 1
    assert m["color"] == pytest.approx(50.0)            # acc 1/2, acc+ 0
    assert (m["perception"], m["cognition"]) == (pytest.approx(50.0), pytest.approx(200.0))
    assert [r["correct"] for r in scored.per_sample] == [True, True, False, True]


def test_official_prompt_restoration():
    # llava_mme.jsonl holds the question + LLaVA's suffix; MME's files hold it + " Please answer yes or no."
    assert official_prompts("Is there a dog?" + SUFFIX) == [
        "Is there a dog? Please answer yes or no.", "Is there a dog?  Please answer yes or no."]
    asked_as_in_mme = "Is there a dog? Please answer yes or no."
    assert official_prompts(asked_as_in_mme) == [asked_as_in_mme]


# ---- synthetic files ------------------------------------------------------------------------------
def oracle(scene_json: dict) -> dict[str, str]:
    """Every yes/no check the synthetic MME may ask about a scene -> "Yes"/"No", from the ground truth."""
    objs = [Obj(o["shape"], o["colour"], o["row"], o["col"]) for o in scene_json["objects"]]
    names = [o.name for o in objs]
    truth: dict[str, bool] = {}
    for shape in SHAPES:
        truth[language.existence_question(shape)] = any(o.shape == shape for o in objs)
        for n in (1, 2, 3):
            truth[language.count_check_question(shape, n)] = sum(o.shape == shape for o in objs) == n
    for o in objs:
        for c in COLOURS:
            truth[language.colour_check_question(o, c)] = c == o.colour
        if names.count(o.name) == 1:
            for p in POSITIONS:
                truth[language.position_check_question(o, p)] = p == o.position
    return {q: "Yes" if v else "No" for q, v in truth.items()}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("mme")
    synthesize_benchmark("mme", root, 42, seed=1)
    return root


def test_synthetic_round_trip_agrees_with_the_scenes(synthetic):
    samples = MME().load(synthetic)
    truth = json.loads((synthetic / "MME" / "ground_truth.json").read_text())
    # 42 images dealt in turn to existence, count, position, color -> 11, 11, 10, 10 images, 2 questions each
    per_subtask = {t: sum(s.meta["category"] == t for s in samples)
                   for t in ("existence", "count", "position", "color")}
    assert per_subtask == {"existence": 22, "count": 22, "position": 20, "color": 20}
    assert len(truth) == 42 and all(s.image.exists() and s.question.endswith(SUFFIX) for s in samples)
    by_image = {}
    for s in samples:
        by_image.setdefault(s.question_id, []).append(s.meta["label"])
        question = s.meta["mme_question"].removesuffix(language.YES_NO_SUFFIX)
        assert s.question == question + SUFFIX
        assert oracle(truth[s.question_id])[question] == s.meta["label"], s.question_id
    assert all(v == ["Yes", "No"] for v in by_image.values())  # exactly one true and one false per image
    questions = [s.question for s in samples]
    assert all(a != b for a, b in zip(questions[::2], questions[1::2]))
    m = MME().score(samples, [s.meta["label"] for s in samples]).metrics
    assert m["perception"] == pytest.approx(800.0)  # 4 subtasks x (100 + 100)
    assert MME().score(samples, ["Yes"] * len(samples)).metrics["perception"] == pytest.approx(4 * 50.0)


def test_position_checks_only_name_objects_that_are_unique():
    # Two red circles and a blue square: only the square can be asked about by name.
    scene = Scene([Obj("circle", "red", 0, 0), Obj("circle", "red", 2, 2), Obj("square", "blue", 1, 1)])
    rng = random.Random(0)
    pairs = {_pair("position", scene, rng) for _ in range(50)}
    assert all(yes == "Is the blue square at the center?" and no != yes for yes, no in pairs)
    assert _pair("position", Scene([Obj("circle", "red", 0, 0), Obj("circle", "red", 0, 1)]), rng) is None


def test_limit_counts_per_subtask(synthetic):
    limited = MME().load(synthetic, limit=1)
    assert [s.meta["category"] for s in limited] == ["existence", "count", "position", "color"]


def _official_subfolder_layout(root, lines):
    release = root / "MME" / "MME_Benchmark_release_version" / "artwork"
    (release / "images").mkdir(parents=True)
    (release / "questions_answers_YN").mkdir()
    (release / "images" / "1.jpg").write_bytes(b"")
    (release / "questions_answers_YN" / "1.txt").write_text(lines)
    rows = [{"question_id": "artwork/images/1.jpg", "image": "artwork/images/1.jpg", "text": q + SUFFIX,
             "category": "artwork"} for q in ("Is this by Monet?", "Is this by Dali?")]
    (root / "MME" / "llava_mme.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return release


def test_official_subfolder_layout_with_double_space(tmp_path):
    # Some official files put two spaces before the instruction; convert_answer_to_mme.py tries both.
    _official_subfolder_layout(tmp_path, "Is this by Monet? Please answer yes or no.\tYes\n"
                                         "Is this by Dali?  Please answer yes or no.\tNo\n")
    samples = MME().load(tmp_path)
    assert [s.meta["label"] for s in samples] == ["Yes", "No"]
    assert samples[1].meta["mme_question"] == "Is this by Dali?  Please answer yes or no."
    m = MME().score(samples, ["Yes", "Yes"]).metrics
    assert m["artwork"] == pytest.approx(50.0) and m["perception"] == pytest.approx(50.0)


def test_missing_files_are_named(tmp_path):
    release = _official_subfolder_layout(tmp_path, "Is this by Monet? Please answer yes or no.\tYes\n")
    with pytest.raises(BenchmarkFileError, match=r"1\.txt: no line for the question 'Is this by Dali\?"):
        MME().load(tmp_path)
    (release / "questions_answers_YN" / "1.txt").write_text("Is this by Monet?\n")
    with pytest.raises(BenchmarkFileError, match=r"1\.txt:1: expected 'question<TAB>Yes\|No'"):
        MME().load(tmp_path)
    (release / "questions_answers_YN" / "1.txt").unlink()
    with pytest.raises(BenchmarkFileError, match=r"questions_answers_YN/1\.txt not found"):
        MME().load(tmp_path)
    (tmp_path / "MME" / "llava_mme.jsonl").unlink()
    with pytest.raises(BenchmarkFileError, match=r"llava_mme\.jsonl not found"):
        MME().load(tmp_path)


def test_missing_image_and_release_folder_are_named(tmp_path):
    synthesize_benchmark("mme", tmp_path, 4, seed=0)
    (tmp_path / "MME" / "MME_Benchmark_release_version" / "color" / "0000.png").unlink()
    with pytest.raises(BenchmarkFileError, match=r"color/0000\.png not found"):
        MME().load(tmp_path)
    shutil.rmtree(tmp_path / "MME" / "MME_Benchmark_release_version")
    with pytest.raises(BenchmarkFileError, match="MME_Benchmark_release_version not found"):
        MME().load(tmp_path)
