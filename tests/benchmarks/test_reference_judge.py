"""The reference judge: rule grades on hand-worked cases, and MM-Vet / MMHal scored through it."""
from __future__ import annotations

import pytest

from matrix.benchmarks.judge import JudgeError, open_judge
from matrix.benchmarks.mmhal import MMHal
from matrix.benchmarks.mmvet import MMVet
from matrix.benchmarks.reference_judge import ReferenceJudge, grade_mmhal, grade_mmvet
from matrix.spec import JudgeSpec
from matrix.world.benchmarks import synthesize_benchmark


@pytest.mark.parametrize(
    "truth, prediction, score",
    [
        ("3<OR>three", "There are three triangles.", 1.0),
        ("3<OR>three", "I can see 4 triangles.", 0.0),
        ("3<OR>three", "3", 1.0),
        ("red <AND> blue", "The shapes are red and green.", 0.5),
        ("red <AND> blue", "Blue and red.", 1.0),
        ("top left", "The star is at the top left.", 1.0),
        ("top left", "It is at the left top.", 0.0),  # words in order
        ("circle", "Circles.", 1.0),
        ("purple", "", 0.0),
    ],
)
def test_mmvet_rules(truth, prediction, score):
    assert grade_mmvet(truth, prediction) == score


@pytest.mark.parametrize(
    "response, rating",
    [
        ("Yes, there is a red circle.", 5),  # all of the answer's content words, nothing invented
        ("A circle.", 4),  # part of them
        ("I cannot tell.", 3),  # nothing, nothing invented
        ("A blue circle.", 1),  # "circle" found, but the blue circle is invented
        ("Yes, a red circle next to a green star.", 2),  # informative, invents a star
        ("A green star.", 0),
    ],
)
def test_mmhal_rules(response, rating):
    assert grade_mmhal("blue square, red circle", "Is there a red circle?", "Yes, there is a red circle.", response) == rating


def test_mmhal_denied_object_from_the_question_is_not_a_hallucination():
    assert grade_mmhal("red circle", "Is there a green star?", "No, there is no green star.", "No green star.") == 5


def test_benchmarks_score_through_the_reference_judge(tmp_path):
    judge = open_judge(JudgeSpec(provider="reference", model="shapes-reference"))
    assert isinstance(judge, ReferenceJudge)
    vet = MMVet()
    synthesize_benchmark(vet.id, tmp_path, 10, seed=0)
    samples = vet.load(tmp_path)
    right = [s.meta["answer"].split("<OR>")[0].replace("<AND>", " and ") for s in samples]
    assert vet.score(samples, right, judge=judge).metrics["total"] == pytest.approx(100.0)
    assert vet.score(samples, ["no idea"] * len(samples), judge=judge).metrics["total"] == pytest.approx(0.0)
    hal = MMHal()
    synthesize_benchmark(hal.id, tmp_path, 8, seed=0)
    hsamples = hal.load(tmp_path)
    scored = hal.score(hsamples, [s.meta["gt_answer"] for s in hsamples], judge=judge)
    assert scored.metrics["score"] == pytest.approx(5.0)
    assert judge.usage()["calls"] == 20 + 8
    assert judge.describe()["provider"] == "reference"


def test_its_words_are_the_worlds():
    """The rules read the world's prompts with their own copy of its words (no benchmark imports the
    world): shapes, colours and number words must be the world's, in its order."""
    from matrix.benchmarks import reference_judge
    from matrix.world import language, scene

    assert reference_judge.SHAPES == scene.SHAPES
    assert reference_judge.COLOURS == tuple(scene.COLOURS)
    assert reference_judge.NUMBER_WORDS == language.NUMBER_WORDS


def test_a_prompt_it_cannot_read_is_an_error():
    with pytest.raises(JudgeError, match="cannot read"):
        ReferenceJudge().complete(["Rate this poem from 1 to 10."])


def test_provider_is_part_of_the_judge_key():
    assert JudgeSpec(model="gpt-4").key() == "gpt-4"
    assert JudgeSpec(provider="reference", model="gpt-4").key() == "reference:gpt-4"


REFERENCE = ("The image shows two objects on a plain light background. There are one circle and one star. "
             "There is a red circle at the top left. There is a blue star in the center.")


def test_nsft_turns_with_and_without_the_codebook():
    from matrix.methods.nsft import judge_prompt, parse_conversation

    judge = ReferenceJudge()
    answer = "There is a green square at the top left. There is a blue star in the center."
    with_codebook = parse_conversation(judge._grade(judge_prompt("Describe.", REFERENCE, answer, codebook=True)))
    assert with_codebook == [
        ("Is there a green square in the image?", "No."),      # named by the answer, not in the reference
        ("What color is the circle at the top left?", "It is red."),
        ("Where is the red circle?", "It is at the top left."),
        ("Is there a red circle in the image?", "Yes."),
        ("What color is the star in the center?", "It is blue."),
    ]
    without = parse_conversation(judge._grade(judge_prompt("Describe.", REFERENCE, answer, codebook=False)))
    assert without == [("Is there a green square in the image?", "No."),
                       ("Is there a red circle in the image?", "Yes."), ("Is there a blue star in the image?", "Yes."),
                       ("Is there a red circle in the image?", "Yes."), ("Is there a blue star in the image?", "Yes.")]


def test_nsft_reference_without_objects_is_an_error():
    from matrix.benchmarks.judge import JudgeError
    from matrix.methods.nsft import judge_prompt

    with pytest.raises(JudgeError, match="no coloured shape"):
        ReferenceJudge()._grade(judge_prompt("What is the title?", "The Great Gatsby", "Moby Dick", True))
