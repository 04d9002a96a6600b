"""MMBench / MMBench-CN: prompts, answer reading, CircularEval on hand-worked cases, and round trip."""
import base64
import csv
import io

import pytest
from PIL import Image

from matrix.benchmarks.base import BENCHMARKS, BenchmarkFileError, Sample
from matrix.benchmarks.mmbench import MMBench, MMBenchCN, build_prompt, extract_letter
from matrix.world import language
from matrix.world.benchmarks import synthesize_benchmark

OPTS = {"A": "red", "B": "blue", "C": "green", "D": "yellow"}


@pytest.mark.parametrize("text,expected", [
    ("A", "A"), ("B.", "B"), ("(C)", "C"), ("The answer is D", "D"), ("D. yellow", "D"),
    ("blue", "B"),                 # no letter: the one option whose text the answer holds
    ("It is green.", "C"),
    ("A or B", None),              # two letters: ambiguous
    ("red and blue", None),        # two option texts
    ("E", None), ("", None), ("a", None),   # lower-case "a" is not the letter
    # VLMEvalKit can_infer (c026693) on these gives the value beside each (official result, its rules
    # run by hand): only .()[],:;!*#{} separate words, so "B?", '"B"' and "（B）" name no letter
    ("B?", None), ('"B"', None), ("（B）", None),
    ("B, the blue one, not A", "B"),        # two letters: the option texts decide ("blue")
    ("Z", "Z"), ("Cannot determine the answer", "Z"),   # a refusal: "Z", never an option, so wrong
    ("A: red. B is wrong", "A"),            # two letters; of the option texts only "red" is inside
])
def test_answer_reading(text, expected):
    assert extract_letter(text, OPTS) == expected


def test_prompt_with_hint_and_missing_options():
    row = {"question": "What colour?", "hint": "Look closely.", "A": "red", "B": "blue", "C": "nan", "D": "green"}
    prompt, options = build_prompt(row, language.MULTIPLE_CHOICE_SUFFIX)
    # options stop at the first missing one (C), so D is never shown
    assert prompt == ("Look closely.\nWhat colour?\nA. red\nB. blue"
                      "\nAnswer with the option's letter from the given choices directly.")
    assert options == {"A": "red", "B": "blue"}
    prompt, _ = build_prompt({**row, "hint": "nan"}, language.MULTIPLE_CHOICE_SUFFIX_CN)
    assert prompt == "What colour?\nA. red\nB. blue\n请直接回答选项字母。"


def _rows(group, labels, copies=True):
    return [Sample(str(group + k * 1_000_000), None, "q",
                   {"label": lab, "options": OPTS, "group": group, "circular_copy": copies and k > 0})
            for k, lab in enumerate(labels)]


def test_circular_eval_by_hand():
    # question 1: right on 3 of 4 rotations -> wrong; question 2: right on all 4 -> right
    samples = _rows(1, ["A", "B", "C", "D"]) + _rows(2, ["C", "D", "A", "B"])
    answers = ["A", "B", "C", "A",  "C", "D. yellow", "red", "B"]
    scored = MMBench().score(samples, answers)
    m = scored.metrics
    assert m["accuracy"] == pytest.approx(50.0) and m["circular"] == 1.0
    # the originals alone (rows 1 and 2 without copies) are both right
    assert m["plain_accuracy"] == pytest.approx(100.0) and m["unparsed"] == 0.0
    assert [r["correct"] for r in scored.per_sample] == [True, True, True, False] + [True] * 4
    # the same answers counted per row would give 7/8: CircularEval is stricter
    assert sum(r["correct"] for r in scored.per_sample) == 7


def test_plain_accuracy_without_copies():
    samples = [Sample(str(i), None, "q", {"label": lab, "options": OPTS, "group": i, "circular_copy": False})
               for i, lab in enumerate(["A", "B", "C", "D"])]
    m = MMBench().score(samples, ["A", "B", "I am not sure", "A"]).metrics
    assert m["accuracy"] == pytest.approx(50.0) and m["plain_accuracy"] == pytest.approx(50.0)
    assert m["circular"] == 0.0 and m["unparsed"] == 1.0


@pytest.fixture(scope="module", params=["mmbench", "mmbench-cn"])
def synthetic(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param)
    bench = BENCHMARKS.get(request.param)()
    synthesize_benchmark(bench.id, root, 6, seed=7)
    return bench, root


def test_synthetic_round_trip(synthetic):
    bench, root = synthetic
    samples = bench.load(root)
    assert len(samples) == 24 and all(s.image.exists() for s in samples)
    suffix = language.MULTIPLE_CHOICE_SUFFIX_CN if bench.cn else language.MULTIPLE_CHOICE_SUFFIX
    assert all(s.question.endswith(suffix) for s in samples)
    groups = {}
    for s in samples:
        groups.setdefault(s.meta["group"], []).append(s)
    assert len(groups) == 6 and all(len(v) == 4 for v in groups.values())
    for rows in groups.values():
        # every rotation shows the same four options and keeps the same right text, under another letter
        rights = {r.meta["options"][r.meta["label"]] for r in rows}
        assert len(rights) == 1
        assert len({r.meta["label"] for r in rows}) == 4
        assert len({frozenset(r.meta["options"].values()) for r in rows}) == 1
        assert Image.open(rows[0].image).tobytes() == Image.open(rows[3].image).tobytes()
    right = [s.meta["label"] for s in samples]
    assert bench.score(samples, right).metrics["accuracy"] == 100.0
    # always answering "A" is right once per question, never on all four rotations
    m = bench.score(samples, ["A"] * len(samples)).metrics
    assert m["accuracy"] == 0.0 and m["plain_accuracy"] == pytest.approx(100 * sum(
        s.meta["label"] == "A" for s in samples if not s.meta["circular_copy"]) / 6)
    limited = bench.load(root, limit=2)
    assert sorted({s.meta["group"] for s in limited}) == [0, 1] and len(limited) == 8


def test_cn_file_and_question_language(tmp_path):
    synthesize_benchmark("mmbench-cn", tmp_path, 2, seed=0)
    assert (tmp_path / "mmbench_cn" / "mmbench_dev_cn_20231003.tsv").exists()
    samples = MMBenchCN().load(tmp_path)
    assert all("图中" in s.question for s in samples)
    with pytest.raises(BenchmarkFileError, match=r"mmbench_dev_20230712\.tsv not found"):
        MMBench().load(tmp_path)


def test_official_style_row_with_quoted_newline(tmp_path):
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (255, 0, 0)).save(buf, format="JPEG")
    row = {"index": "7", "question": "Which colour?", "hint": "Line one\nline two", "A": "red", "B": "blue",
           "C": "nan", "D": "nan", "answer": "A", "category": "c", "image": base64.b64encode(buf.getvalue()).decode(),
           "source": "s", "l2-category": "l2", "comment": "nan", "split": "dev"}
    (tmp_path / "mmbench").mkdir()
    with (tmp_path / "mmbench" / "mmbench_dev_20230712.tsv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row), delimiter="\t")
        w.writeheader()
        w.writerow(row)
    (s,) = MMBench().load(tmp_path)
    assert s.question.startswith("Line one\nline two\nWhich colour?\nA. red\nB. blue\n")
    assert s.image.suffix == ".jpg" and Image.open(s.image).size == (4, 4)
    assert MMBench().score([s], ["A"]).metrics == pytest.approx(
        {"accuracy": 100.0, "plain_accuracy": 100.0, "circular": 0.0, "unparsed": 0.0, "l2_l2": 100.0,
         "category_c": 100.0})


def test_the_extractor_reads_only_what_the_rules_cannot(judge_env, make_judge):
    from matrix.benchmarks.mmbench import MMBenchExtract, option_lines
    from tests.judge_server import JudgeServer

    opts = {"A": "red", "B": "blue"}
    samples = [Sample(str(i), None, "q", {"label": "B", "options": opts, "group": i, "circular_copy": False,
                                          "raw_question": "Which colour"}) for i in range(3)]
    answers = ["B", "It is the colour of the sky", "no idea"]   # only the first is read by the rules
    # the judge: sample 1 -> "B" at once; sample 2 -> unreadable twice, then "Z" (a refusal: wrong)
    with JudgeServer(["B", "maybe", "hmm", "Z"]) as server:
        scored = MMBenchExtract().score(samples, answers, judge=make_judge(server))
        bodies = [r.body for r in server.chat_requests]
    assert [r["parsed"] for r in scored.per_sample] == ["B", "B", "Z"]
    assert scored.metrics["accuracy"] == pytest.approx(200 / 3) and scored.metrics["extracted"] == 2
    assert len(bodies) == 4 and all(b["temperature"] == 0.0 for b in bodies)
    # the prompt's last lines as VLMEvalKit's build_prompt lays them out (question + "?", option lines)
    assert bodies[0]["messages"][0]["content"].endswith(
        "Question: Which colour?\n" + option_lines(opts) + "Answer: It is the colour of the sky\nYour output: ")
    assert option_lines(opts) == "There are several options: \nA. red\nB. blue\n"
    with pytest.raises(ValueError, match="judge"):
        MMBenchExtract().score(samples, answers)
