"""ScienceQA-IMG: multiple-choice science questions; the paper prints the accuracy on those with an image.

Files, under the eval folder (LLaVA's `scripts/v1_5/eval/sqa.sh` layout):

- `scienceqa/llava_test_CQM-A.json`: a JSON list of `{"id": pid, "conversations": [human, gpt],
  "image"?: "<pid>/image.png"}`; the first human turn holds the question with its options as "A. ..."
  lines, and "<image>\\n" when the question has an image;
- `scienceqa/problems.json`: `{pid: {"question", "choices", "answer": index, "image", "split", ...}}`;
- `scienceqa/pid_splits.json`: `{"test": [pid, ...], ...}`; only test problems are asked and scored;
- `scienceqa/images/test/<image>`: the images.

Prompts follow `model_vqa_science.py --single-pred-prompt`: the human turn without "<image>", stripped,
plus the multiple-choice suffix; max_new_tokens 1024. Scored by `eval_science_qa.py`: the answer is
the letter when it is exactly an option letter, else the first character when it is followed by ". ",
else the single match of `The answer is ([A-Z]).`, else FAILED; a letter beyond the problem's choices
is wrong too. `img_accuracy` (the headline) = accuracy over questions with an image, `accuracy` over
all. Questions without an image have `Sample.image = None` (LLaVA asks them without one).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from matrix.benchmarks.base import (
    BENCHMARKS,
    Benchmark,
    BenchmarkFileError,
    Sample,
    Scored,
    check_answers,
    ratio,
    image_file,
    require,
)
from matrix.benchmarks.prompts import MULTIPLE_CHOICE_SUFFIX

OPTIONS = ("A", "B", "C", "D", "E")  # eval_science_qa.py's --options
QUESTION_FILE = "llava_test_CQM-A.json"
IMAGE_DIR = "images/test"
ANSWER_PATTERN = re.compile(r"The answer is ([A-Z]).")


# ---- scoring ------------------------------------------------------------------------------------
def parse_letter(text: str) -> str:
    """eval_science_qa.py: an exact option letter; "X. ..." (first character an option, then ". ");
    the one match of "The answer is ([A-Z])."; else "FAILED"."""
    if text in OPTIONS:
        return text
    if len(text) >= 3 and text[0] in OPTIONS and text[1:3] == ". ":
        return text[0]
    found = ANSWER_PATTERN.findall(text)
    return found[0] if len(found) == 1 else "FAILED"


def pred_index(letter: str, n_choices: int) -> int:
    """The chosen option's index; -1 (wrong) for FAILED or a letter beyond the problem's choices."""
    return OPTIONS.index(letter) if letter in OPTIONS[:n_choices] else -1


@BENCHMARKS.register("sqa")
class ScienceQA(Benchmark):
    id = "sqa"
    headline = "img_accuracy"
    max_new_tokens = 1024  # model_vqa_science.py

    def load(self, root: Path, limit: int | None = None, images: bool = True) -> list[Sample]:
        """Test-split questions in file order; `limit` keeps the first `limit` with an image and the
        first `limit` without (the two groups the printed accuracies cover)."""
        base = Path(root) / "scienceqa"
        qfile = base / QUESTION_FILE
        entries = _read_json(qfile, "LLaVA's ScienceQA test questions: a JSON list of "
                                    '{"id", "conversations", "image"?}')
        problems = _read_json(base / "problems.json", "ScienceQA's problems.json: {pid: {question, choices, "
                                                      "answer, image, split}}")
        splits = _read_json(base / "pid_splits.json", 'ScienceQA\'s pid_splits.json: {"test": [pid, ...]}')
        if not isinstance(entries, list) or "test" not in splits:
            raise BenchmarkFileError(f"{qfile} must be a JSON list and {base / 'pid_splits.json'} must hold "
                                     "a \"test\" list")
        test = set(map(str, splits["test"]))
        seen = {True: 0, False: 0}
        samples = []
        for n, entry in enumerate(entries, 1):
            pid = str(entry.get("id"))
            if pid not in test:
                continue
            try:
                human = entry["conversations"][0]["value"]
            except (KeyError, IndexError, TypeError):
                raise BenchmarkFileError(f"{qfile}: entry {n} (id {pid}) lacks conversations[0].value") from None
            if pid not in problems:
                raise BenchmarkFileError(f"{base / 'problems.json'}: no problem {pid} (asked in {qfile})")
            problem = problems[pid]
            has_image = "image" in entry
            seen[has_image] += 1
            if limit is not None and seen[has_image] > limit:
                continue
            image = image_file(base / IMAGE_DIR / entry["image"], f"the ScienceQA image of problem {pid}", images) \
                if has_image else None
            question = human.replace("<image>", "").strip() + MULTIPLE_CHOICE_SUFFIX
            meta = {"answer": int(problem["answer"]), "n_choices": len(problem["choices"]),
                    "is_multimodal": has_image}
            samples.append(Sample(pid, image, question, meta))
        return samples

    def official_prompt(self, sample: Sample) -> str:
        """model_vqa_science.py records "<image>\n" before the prompt of an image question;
        eval_science_qa.py counts a question as IMG by it."""
        return f"<image>\n{sample.question}" if sample.meta["is_multimodal"] else sample.question

    def score(self, samples: list[Sample], answers: list[str], judge=None) -> Scored:
        check_answers(samples, answers)
        per_sample = []
        for s, answer in zip(samples, answers):
            letter = parse_letter(answer)
            index = pred_index(letter, s.meta["n_choices"])
            per_sample.append({"question_id": s.question_id, "question": s.question, "answer": answer,
                               "parsed": letter, "label": OPTIONS[s.meta["answer"]],
                               "is_multimodal": s.meta["is_multimodal"], "correct": index == s.meta["answer"]})
        img = [r for r in per_sample if r["is_multimodal"]]
        metrics = {
            "accuracy": 100 * ratio(sum(r["correct"] for r in per_sample), len(per_sample)),
            "failed": float(sum(r["parsed"] == "FAILED" for r in per_sample)),
        }
        if img:  # no image question asked: no IMG number (missing, not zero)
            metrics["img_accuracy"] = 100 * ratio(sum(r["correct"] for r in img), len(img))
        return Scored(metrics, per_sample)


def _read_json(path: Path, what: str):
    require(path, what)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise BenchmarkFileError(f"{path}: not JSON ({e.msg} at line {e.lineno}); expected {what}") from None
