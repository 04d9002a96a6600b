"""`matrix score` on the real evaluation files (LLaVA-1.5's published answers, official ground truth).

The folder is `../shared/real-eval` beside the repository, or `$MATRIX_REAL_EVAL`; it is never part of
the project (see its README for every file's origin). Every expected number below is what the
official scorer printed on exactly these files (real-eval/README.md, "Scores these files must
reproduce"): LLaVA's eval_pope.py, convert_answer_to_mme.py + MME's calculation.py, eval_science_qa.py,
VLMEvalKit's can_infer with CircularEval, MM-Vet's total formula on the stored GPT-4 grades, and
summarize_gpt_review.py on the stored reviews. Compared at the official script's printed precision.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from matrix.cli import app
from matrix.scoring import score

ROOT = Path(os.environ.get("MATRIX_REAL_EVAL") or Path(__file__).resolve().parents[2] / ".." / "shared" / "real-eval")
pytestmark = pytest.mark.skipif(not (ROOT / "README.md").exists(),
                                reason=f"real evaluation files not found at {ROOT} (set MATRIX_REAL_EVAL)")


def run_score(*args: str) -> dict:
    result = CliRunner().invoke(app, ["score", *args, "--path", str(ROOT), "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_pope_every_split_and_mean_f1():
    out = run_score("pope", "--answers", str(ROOT / "pope/answers/llava-v1.5-13b.jsonl"))
    m = out["metrics"]
    assert out["questions"] == 8910
    official = {  # eval_pope.py, per split: F1, accuracy, precision, recall, yes-ratio (x100)
        "adversarial": (84.459, 85.500, 90.993, 78.800, 43.300),
        "popular": (86.246, 87.433, 95.246, 78.800, 41.367),
        "random": (87.136, 88.007, 97.444, 78.800, 41.684),
    }
    for split, values in official.items():
        got = tuple(round(m[f"{split}_{k}"], 3) for k in ("f1", "accuracy", "precision", "recall", "yes_ratio"))
        assert got == values, split
    assert round(m["f1"], 3) == 85.947


def test_mme_perception_cognition_and_every_subtask():
    m = run_score("mme", "--answers", str(ROOT / "MME/answers/llava-v1.5-13b.jsonl"))["metrics"]
    assert round(m["perception"], 3) == 1531.319
    assert round(m["cognition"], 3) == 295.357
    official = {"existence": 185.0, "count": 155.0, "position": 133.333, "color": 170.0, "posters": 160.544,
                "celebrity": 152.941, "scene": 161.25, "landmark": 170.5, "artwork": 117.75, "OCR": 125.0,
                "commonsense_reasoning": 127.857, "numerical_calculation": 42.5, "text_translation": 77.5,
                "code_reasoning": 47.5}
    assert {t: round(m[t], 3) for t in official} == official


def test_scienceqa_img_and_all():
    m = run_score("sqa", "--answers", str(ROOT / "scienceqa/answers/llava-v1.5-13b.jsonl"))["metrics"]
    assert round(m["img_accuracy"], 3) == 71.641
    assert round(m["accuracy"], 3) == 74.393  # = LLaVA's stored _result.json
    assert m["failed"] == 5


def test_mmbench_dev_circular_eval():
    out = run_score("mmbench", "--answers", str(ROOT / "mmbench/answers/mmbench_dev_20230712/llava-v1.5-13b.jsonl"))
    assert out["questions"] == 4377
    assert round(out["metrics"]["accuracy"], 3) == 67.687
    assert out["metrics"]["circular"] == 1.0 and out["metrics"]["unparsed"] == 0
    # with the extractor: the rules read every 13B answer, so no judge is asked (none listens here)
    ext = run_score("mmbench-extract", "--answers", str(ROOT / "mmbench/answers/mmbench_dev_20230712/llava-v1.5-13b.jsonl"),
                    "--judge", "gpt-4", "--judge-url", "http://127.0.0.1:9/v1")
    assert ext["metrics"]["accuracy"] == out["metrics"]["accuracy"] and ext["metrics"]["extracted"] == 0
    assert ext["grading"]["usage"]["calls"] == 0


@pytest.mark.parametrize("model,total", [("13b", 36.147), ("7b", 31.193)])
def test_mmvet_total_from_stored_grades(model, total):
    out = run_score("mmvet", "--answers", str(ROOT / f"mm-vet/answers/llava-v1.5-{model}.jsonl"),
                    "--replies", str(ROOT / f"mm-vet/results/llava-v1.5-{model}_gpt-4-grade-1runs.json"))
    assert round(out["metrics"]["total"], 3) == total
    assert out["grading"]["source"] == "stored replies" and out["metrics"]["unparsed"] == 0
    assert any("mm-vet.json not found" in n for n in out["notes"])  # no capabilities without the truth file


def test_mmvet_three_runs_as_the_stored_csv():
    out = run_score("mmvet", "--answers", str(ROOT / "mm-vet/answers/llava-v1.5-13b.jsonl"),
                    "--replies", str(ROOT / "mm-vet/results/llava-v1.5-13b_gpt-4-grade-3runs.json"))
    m = out["metrics"]
    # real-eval README: stored 3-run totals 36.10 / 36.51 / 36.33; LLaVA's stored CSV: 36.3, std 0.2
    assert [round(m[f"total_run{k}"], 2) for k in (1, 2, 3)] == [36.10, 36.51, 36.33]
    assert (round(m["total"], 1), round(m["std"], 1)) == (36.3, 0.2)


def test_mmvet_parsing_agrees_with_the_stored_scores():
    from matrix.benchmarks.replies import parse_score

    for model in ("13b", "7b"):
        grades = json.loads((ROOT / f"mm-vet/results/llava-v1.5-{model}_gpt-4-grade-3runs.json").read_text())
        for g in grades.values():
            assert [parse_score(c) for c in g["content"]] == g["score"]


@pytest.mark.parametrize("model,relative", [("13b", (72.8, 72.7, 72.1)), ("7b", (64.7, 65.3, 66.3))])
def test_llava_bench_relative_from_stored_reviews(model, relative):
    got = []
    for run in (1, 2, 3):
        out = run_score("llava-wild", "--answers", str(ROOT / f"llava-bench-in-the-wild/answers/llava-v1.5-{model}.jsonl"),
                        "--replies", str(ROOT / f"llava-bench-in-the-wild/reviews/llava-v1.5-{model}-eval{run}.jsonl"))
        got.append(round(out["metrics"]["relative"], 1))
        if model == "13b" and run == 1:  # summarize_gpt_review.py per category, eval1
            m = out["metrics"]
            assert [round(m[f"relative_{c}"], 1) for c in ("conv", "detail", "complex")] == [74.7, 52.6, 82.8]
    assert tuple(got) == relative


def test_llava_bench_parsing_agrees_with_the_stored_tuples():
    from matrix.benchmarks.llava_wild import UNPARSED, parse_pair

    for review in (ROOT / "llava-bench-in-the-wild/reviews").glob("*.jsonl"):
        for line in review.read_text().splitlines():
            row = json.loads(line)
            assert list(parse_pair(row["content"]) or UNPARSED) == row["tuple"], review.name


def test_reviews_of_other_answers_are_refused():
    result = CliRunner().invoke(app, [
        "score", "llava-wild", "--path", str(ROOT),
        "--answers", str(ROOT / "llava-bench-in-the-wild/answers/llava-v1.5-7b.jsonl"),
        "--replies", str(ROOT / "llava-bench-in-the-wild/reviews/llava-v1.5-13b-eval1.jsonl")])
    assert result.exit_code == 2 and "not these answers" in result.output


def test_scoring_reads_no_image_and_writes_nothing():
    before = sorted(p for p in ROOT.rglob("*"))
    result = score("mmbench", ROOT, ROOT / "mmbench/answers/mmbench_dev_20230712/llava-v1.5-13b.jsonl")
    assert result.questions == 4377
    assert sorted(p for p in ROOT.rglob("*")) == before  # no decoded-image folder beside the TSV


def test_a_published_answers_row_in_a_spec_needs_no_images(tmp_path):
    from matrix import api
    from matrix.specfile import load_spec
    from matrix.runner.kinds.data import DataStage
    from matrix.runner.kinds.evaluate import EvaluateStage
    from matrix.runner.stage import StageContext, StageInput

    answers = ROOT / "pope/answers/llava-v1.5-13b.jsonl"
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(f"""\
name: published
base_models:
  tiny: {{family: tiny}}
methods:
  - {{id: llava-13b, method: external, label: LLaVA-1.5-13B, params: {{answers: {{pope: {answers}}}}}}}
benchmarks:
  - {{id: pope, path: {ROOT}}}
""")
    spec = load_spec(spec_file)
    api.check_files(spec, spec_file)  # the real folder has no val2014/: fine, nothing answers POPE here
    [cell] = api.plan(spec).graph.cells
    stage = cell.evaluate["pope"]
    ctx = StageContext(tmp_path, 1, 0, "k", "t")
    (tmp_path / "data").mkdir()
    data = DataStage().execute(stage.deps["bench"].params, {}, tmp_path / "data", ctx)
    (tmp_path / "eval").mkdir()
    result = EvaluateStage().execute(stage.params, {"bench": StageInput(tmp_path / "data", data)}, tmp_path / "eval", ctx)
    assert round(result["metrics"]["f1"], 3) == 85.947


@pytest.mark.parametrize("bench_id,answers", [
    ("pope", "pope/answers/llava-v1.5-13b.jsonl"),
    ("mme", "MME/answers/llava-v1.5-13b.jsonl"),
    ("sqa", "scienceqa/answers/llava-v1.5-13b.jsonl"),
    ("mmbench", "mmbench/answers/mmbench_dev_20230712/llava-v1.5-13b.jsonl"),
])
def test_our_answer_files_carry_llavas_fields(tmp_path, bench_id, answers):
    """A run's answers.jsonl for these questions has LLaVA's question_id (with its JSON type) and prompt
    on every line, so LLaVA's scripts (eval_science_qa.py counts IMG by '<image>' in the prompt,
    convert_seed_for_submission.py looks ids up as ints) read it as they read LLaVA's own."""
    from matrix.benchmarks.base import BENCHMARKS
    from matrix.runner.kinds.evaluate import EvaluateStage

    bench = BENCHMARKS.get(bench_id)()
    samples = bench.load(ROOT, images=False)
    theirs = [json.loads(line) for line in (ROOT / answers).read_text().splitlines()]
    texts = {(str(r["question_id"]), r["prompt"]): r["text"] for r in theirs}
    EvaluateStage._write_answers(tmp_path, bench, samples, [texts[(s.question_id, bench.official_prompt(s))]
                                                            for s in samples])
    ours = [json.loads(line) for line in (tmp_path / "answers.jsonl").read_text().splitlines()]
    key = lambda r: (json.dumps(r["question_id"]), r["prompt"])  # noqa: E731 - the id's JSON type counts
    assert sorted(map(key, ours)) == sorted(map(key, theirs))
