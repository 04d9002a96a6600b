"""MME: two yes/no questions per image; a subtask scores 100*acc + 100*acc+ (acc+: both answers right).

Files, under the eval folder (LLaVA's `scripts/v1_5/eval/mme.sh` layout):

- `MME/llava_mme.jsonl`: `{"question_id": "<subtask>/<file>", "image", "text", "category"}` per line;
  `image` is relative to the release folder; `text` is MME's question with its "Please answer yes or
  no." replaced by LLaVA's short-answer suffix;
- `MME/MME_Benchmark_release_version/<subtask>/`: the official ground truth, `<image stem>.txt` next to
  each image, or (artwork, celebrity, landmark, posters, scene) `images/` beside `questions_answers_YN/`
  (the release's names, which LLaVA's `convert_answer_to_mme.py` reads too); each line
  `question<TAB>Yes|No` with MME's own instruction in the question. Scoring needs only these `.txt`
  files; the images are read when the questions are answered.

Ground truth is looked up as LLaVA's `convert_answer_to_mme.py` does (restore MME's prompt from the
asked text), and answers are scored by MME's `eval_tool/calculation.py` rules. Perception = sum over
the perception subtasks present (all ten: max 2000), cognition = sum over the cognition subtasks
present (max 800). One departure: an answer holding a tab or a newline breaks calculation.py's
tab-separated lines (it stops with an error); here it is scored like any other answer. The synthetic
version (`matrix/world/benchmarks/mme.py`) writes the four coarse perception subtasks in the flat layout,
plus `MME/ground_truth.json` (`{question_id: scene}`), which loading does not read.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from matrix.benchmarks.base import (
    BENCHMARKS,
    Benchmark,
    BenchmarkFileError,
    Sample,
    Scored,
    check_answers,
    ratio,
    read_jsonl,
    image_file,
    require,
)
from matrix.benchmarks.prompts import SHORT_ANSWER_SUFFIX, YES_NO_SUFFIX

PERCEPTION = ("existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark",
              "artwork", "OCR")
COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")
QUESTION_FILE = "llava_mme.jsonl"
RELEASE = "MME_Benchmark_release_version"
TRUTH_DIR = "questions_answers_YN"  # beside images/ in artwork, celebrity, landmark, posters, scene
MME_INSTRUCTION = YES_NO_SUFFIX.strip()  # "Please answer yes or no."
LLAVA_INSTRUCTION = SHORT_ANSWER_SUFFIX.strip()


# ---- scoring ------------------------------------------------------------------------------------
def parse_prediction(text: str) -> str:
    """calculation.py: lowercased; exactly yes/no, else "yes" then "no" within the first 4 characters,
    else "other" (never right). No stripping: LLaVA strips answers before they reach this rule."""
    text = text.lower()
    if text in ("yes", "no"):
        return text
    if "yes" in text[:4]:
        return "yes"
    if "no" in text[:4]:
        return "no"
    return "other"


def official_prompts(text: str) -> list[str]:
    """The MME question(s) an asked text came from, as convert_answer_to_mme.py restores them
    (some official files put two spaces before the instruction)."""
    prompt = text.replace(LLAVA_INSTRUCTION, "").strip() if LLAVA_INSTRUCTION in text else text
    if MME_INSTRUCTION in prompt:
        return [prompt]
    return [f"{prompt} {MME_INSTRUCTION}", f"{prompt}  {MME_INSTRUCTION}"]


@BENCHMARKS.register("mme")
class MME(Benchmark):
    id = "mme"
    headline = "perception"
    max_new_tokens = 128  # mme.sh runs model_vqa_loader with its default

    def load(self, root: Path, limit: int | None = None, images: bool = True) -> list[Sample]:
        base = Path(root) / "MME"
        qfile = base / QUESTION_FILE
        rows = read_jsonl(qfile, 'MME questions, one {"question_id": "<subtask>/<file>", "image", "text"} '
                                 'per line')
        release = require(base / RELEASE, "the official MME ground-truth folder (one folder per subtask)")
        truth: dict[Path, dict[str, str]] = {}
        seen: Counter = Counter()
        samples = []
        for n, row in enumerate(rows, 1):
            missing = [k for k in ("question_id", "image", "text") if k not in row]
            if missing:
                raise BenchmarkFileError(f"{qfile}: question {n} lacks {', '.join(missing)}")
            qid = row["question_id"]
            subtask = qid.split("/")[0]  # as convert_answer_to_mme.py derives it
            seen[subtask] += 1
            if limit is not None and seen[subtask] > limit:
                continue
            path = truth_file(release, qid)
            if path not in truth:
                truth[path] = read_truth(path, qid)
            prompt = next((p for p in official_prompts(row["text"]) if p in truth[path]), None)
            if prompt is None:
                wanted = official_prompts(row["text"])[0]
                raise BenchmarkFileError(f"{path}: no line for the question {wanted!r} ({qfile}, "
                                         f"question {n}); expected 'question<TAB>Yes|No' lines")
            image = image_file(release / row["image"], f"the MME image of {qid}", images)
            meta = {"category": subtask, "label": truth[path][prompt], "mme_question": prompt}
            samples.append(Sample(qid, image, row["text"], meta))
        return samples

    def score(self, samples: list[Sample], answers: list[str], judge=None) -> Scored:
        check_answers(samples, answers)
        per_sample: list[dict] = []
        # subtask -> image (question_id is "<subtask>/<file>", shared by an image's two questions)
        results: dict[str, dict[str, list[bool]]] = {}
        for s, answer in zip(samples, answers):
            parsed, label = parse_prediction(answer), s.meta["label"]
            correct = parsed == label.lower()
            results.setdefault(s.meta["category"], {}).setdefault(s.question_id, []).append(correct)
            per_sample.append({"question_id": s.question_id, "category": s.meta["category"],
                               "question": s.question, "answer": answer, "parsed": parsed, "label": label,
                               "correct": correct})
        other = Counter(r["category"] for r in per_sample if r["parsed"] == "other")
        metrics: dict[str, float] = {}
        for subtask in _ordered(results):
            images = list(results[subtask].values())
            acc = ratio(sum(sum(v) for v in images), sum(len(v) for v in images))
            # acc+: an image counts when all its answers are right (MME: both of its two)
            acc_plus = ratio(sum(all(v) for v in images), len(images))
            metrics[subtask] = 100 * acc + 100 * acc_plus
            metrics[f"{subtask}_acc"] = 100 * acc
            metrics[f"{subtask}_acc_plus"] = 100 * acc_plus
            metrics[f"{subtask}_other"] = float(other[subtask])  # answers neither yes nor no
        # A group with none of its subtasks present is left out: a missing number, not a zero.
        for group, subtasks in (("perception", PERCEPTION), ("cognition", COGNITION)):
            present = [t for t in subtasks if t in results]
            if present:
                metrics[group] = sum(metrics[t] for t in present)
        return Scored(metrics, per_sample)


def truth_file(release: Path, question_id: str) -> Path:
    """The ground-truth .txt of a question, in either official layout."""
    subtask = question_id.split("/")[0]
    name = question_id.split("/")[-1].split(".")[0] + ".txt"
    folder = release / subtask
    # convert_answer_to_mme.py picks the folder by whether `images/` exists; the answers folder itself
    # says the same and is there even when the images are not (scoring without images).
    if (folder / TRUTH_DIR).is_dir() or (folder / "images").is_dir():
        return folder / TRUTH_DIR / name
    return folder / name


def read_truth(path: Path, question_id: str) -> dict[str, str]:
    """MME question (with its instruction) -> "Yes"/"No", from one ground-truth file."""
    require(path, f"the MME ground truth of {question_id}: 'question<TAB>Yes|No' lines, next to the image or "
                  f"in {TRUTH_DIR}/ when the subtask keeps its images in images/")
    out: dict[str, str] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.strip().split("\t")
        if len(parts) != 2 or parts[1].lower() not in ("yes", "no"):
            raise BenchmarkFileError(f"{path}:{n}: expected 'question<TAB>Yes|No', got {line!r}")
        out[parts[0]] = parts[1]
    return out


def _ordered(subtasks) -> list[str]:
    known = PERCEPTION + COGNITION
    return [t for t in known if t in subtasks] + sorted(t for t in subtasks if t not in known)
