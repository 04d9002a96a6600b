"""MM-Vet: open-ended questions over integrated capabilities, graded 0-1 by an LLM judge.

Files, under the eval folder (LLaVA's `scripts/v1_5/eval/mmvet.sh` layout plus MM-Vet's release):

- `mm-vet/llava-mm-vet.jsonl`: `{"question_id", "image", "text"}` per line (no suffix; `model_vqa`);
- `mm-vet/mm-vet.json`: MM-Vet's ground truth, `{"v1_<question_id>": {"imagename", "capability": [..],
  "question", "answer"}}` (LLaVA's `convert_mmvet_for_eval.py` names answers `v1_<question_id>`);
  an answer may hold `<AND>` / `<OR>` alternatives, as MM-Vet's do;
- `mm-vet/images/<image>`: the images.

Grading (MM-Vet's `mm-vet_evaluator.py` rules, our own prompt): the judge gets the grading
instructions and worked examples (the template), then one line `question | ground truth | prediction | `,
and replies with a score in [0, 1] (temperature 0, max_tokens 3), read by `parse_score` (the first word
is a number in [0, 1]). An unreadable reply is asked again with a line asking for the number alone, at
temperature 0.0, 0.5, 1.0 and 1.5: five readable chances in all, as MM-Vet's loop reads five replies
(its sixth request, at 2.0, is never read, so we do not send it). After five unreadable replies the
score is 0, as MM-Vet sets it, and the sample is counted in `unparsed`.

Metrics: `total` = sum of scores / N x100 (the number papers print), `cap_<capability>` = the same over
the samples with that capability, `unparsed` (a count), `runs` = 1 (MM-Vet's default `num_run`).

The grading template is ours. To grade with another one (MM-Vet's own prompt, say), save its text to a
file and name it in the spec (`benchmarks: [{id: mmvet, template: FILE}]`, or `MMVet(template_path=...)`
in code); the file is used verbatim as the text before the sample line. The file's content is part of
the scoring stage's key, and the judge cache keeps the two templates' prompts apart.
"""
from __future__ import annotations

import json
from pathlib import Path

from matrix.benchmarks.base import (
    BENCHMARKS,
    Benchmark,
    GradingTemplate,
    BenchmarkFileError,
    Sample,
    Scored,
    check_answers,
    ratio,
    read_jsonl,
    image_file,
    require,
)
from matrix.benchmarks.replies import parse_score

QUESTION_FILE = "llava-mm-vet.jsonl"
TRUTH_FILE = "mm-vet.json"
IMAGE_DIR = "images"
CAPABILITIES = ("rec", "ocr", "know", "gen", "spat", "math")  # MM-Vet's six, in its order
ATTEMPTS = 5  # readable judge replies per sample before the score is 0
RETRY_TEMPERATURES = (0.0, 0.5, 1.0, 1.5)  # after the first reply (at 0.0), MM-Vet's +0.5 steps
JUDGE_MAX_TOKENS = 3

TEMPLATE = """\
You grade answers to questions about images. Compare the model's prediction with the ground truth and
give a correctness score from 0.0 to 1.0: 1.0 when the prediction says what the ground truth says,
0.0 when it contradicts it or misses it, and a value in between for partly right answers (for example
one of two required items, or right but with a wrong extra claim). In the ground truth, <AND> joins
parts that must all be given and <OR> separates answers that are each fully right. Wording, case and
extra explanation do not matter when the content is right. Reply with the score only.

Each line below reads: question | ground truth | prediction | score

How many triangles are in the picture? | 3<OR>three | There are three triangles. | 1.0
How many triangles are in the picture? | 3<OR>three | I can see 4 triangles. | 0.0
Which two colours are used? | red <AND> blue | The shapes are red and green. | 0.5
Which two colours are used? | red <AND> blue | Red and blue. | 1.0
What is written on the sign? | STOP | The sign says "stop". | 1.0
What is the total of the numbers shown? | 12 | 7 + 5, so the total is 13. | 0.0
Is the star left of the circle? | yes | Yes, the star is on the left side, next to a green circle. | 1.0
Describe the mood of the scene. | calm <AND> sunny | It looks like a calm afternoon. | 0.5"""
RETRY_SUFFIX = "\nGive just the score, a number between 0.0 and 1.0: "
OFFICIAL_RETRY_SUFFIX = "\nPredict the correctness of the answer (digit): "  # mm-vet_evaluator.py's


def judge_line(question: str, truth: str, prediction: str) -> str:
    """The sample line: question | ground truth (with spaced <AND>/<OR>) | prediction | (score to fill)."""
    truth = truth.replace("<AND>", " <AND> ").replace("<OR>", " <OR> ")
    return " | ".join([question, truth, prediction, ""])


@BENCHMARKS.register("mmvet")
class MMVet(GradingTemplate, Benchmark):
    id = "mmvet"
    headline = "total"
    max_new_tokens = 1024  # mmvet.sh runs model_vqa (temperature 0)
    needs_judge = True
    default_template = TEMPLATE
    template_what = "an MM-Vet grading template (plain text)"

    def template(self) -> str:
        # A file's text is sent verbatim, then "\n" and the sample line, as mm-vet_evaluator.py sends its
        # `prompt` (which ends in a newline, so a blank line comes before the sample line).
        return super().template() if self.template_path is not None else TEMPLATE

    def retry_suffix(self) -> str:
        """With a template file, MM-Vet's own retry line; with ours, ours."""
        return OFFICIAL_RETRY_SUFFIX if self.template_path is not None else RETRY_SUFFIX

    # ---- files ---------------------------------------------------------------------------------------
    def load(self, root: Path, limit: int | None = None, images: bool = True) -> list[Sample]:
        base = Path(root) / "mm-vet"
        qfile = base / QUESTION_FILE
        rows = read_jsonl(qfile, 'MM-Vet questions, one {"question_id", "image", "text"} per line')
        tfile = require(base / TRUTH_FILE, 'MM-Vet ground truth {"v1_<id>": {"capability", "question", "answer"}}')
        try:
            truth = json.loads(tfile.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise BenchmarkFileError(f"{tfile}: not valid JSON ({e.msg}); expected MM-Vet's mm-vet.json") from None
        samples = []
        for n, row in enumerate(rows if limit is None else rows[:limit], 1):
            missing = [k for k in ("question_id", "image", "text") if k not in row]
            if missing:
                raise BenchmarkFileError(f"{qfile}: question {n} lacks {', '.join(missing)}")
            key = f"v1_{row['question_id']}"
            gt = truth.get(key)
            if not isinstance(gt, dict) or not all(k in gt for k in ("capability", "answer")):
                raise BenchmarkFileError(f"{tfile}: no {key} with capability and answer for question "
                                         f"{row['question_id']} of {qfile}")
            image = image_file(base / IMAGE_DIR / row["image"], f"the MM-Vet image {row['image']}", images)
            samples.append(Sample(str(row["question_id"]), image, row["text"],
                                  {"key": key, "question": gt.get("question", row["text"]),
                                   "answer": gt["answer"], "capability": list(gt["capability"])},
                                   official_id=row["question_id"]))
        return samples

    # ---- grading -------------------------------------------------------------------------------------
    def score(self, samples: list[Sample], answers: list[str], judge=None) -> Scored:
        check_answers(samples, answers)
        if judge is None:
            raise ValueError("mmvet is graded by an LLM judge: pass judge=Judge(...)")
        template = self.template()
        prompts = [template + "\n" + judge_line(s.meta["question"], s.meta["answer"], a)
                   for s, a in zip(samples, answers)]
        scores: list[float | None] = [None] * len(samples)
        replies: list[list[str]] = [[] for _ in samples]
        todo = list(range(len(samples)))
        for attempt in range(ATTEMPTS):
            if not todo:
                break
            if attempt == 0:
                batch, temperature = [prompts[i] for i in todo], 0.0
            else:
                batch = [prompts[i] + self.retry_suffix() for i in todo]
                temperature = RETRY_TEMPERATURES[attempt - 1]
            got = judge.complete(batch, temperature=temperature, max_tokens=JUDGE_MAX_TOKENS, parse=parse_score)
            for i, reply in zip(todo, got):
                replies[i].append(reply.text)
                scores[i] = parse_score(reply.text)
            todo = [i for i in todo if scores[i] is None]
        per_sample = []
        for i, (s, answer) in enumerate(zip(samples, answers)):
            per_sample.append({"question_id": s.question_id, "key": s.meta["key"], "question": s.question,
                               "answer": answer, "label": s.meta["answer"], "capability": s.meta["capability"],
                               "score": scores[i] if scores[i] is not None else 0.0,
                               "judge_replies": replies[i], "unparsed": scores[i] is None})
        return Scored(self.aggregate(per_sample), per_sample)

    def replay(self, root: Path, replies: Path, answers: list[dict]) -> Scored:
        """Grades stored by mm-vet_evaluator.py (`<model>_<gpt>-grade-<N>runs.json`: {"v1_<id>":
        {"content": [reply per run], ...}}) read by `parse_score` (an unreadable stored reply scores 0,
        as MM-Vet recorded after its retries) and aggregated per run as MM-Vet does; no judge is asked.
        Capabilities come from `mm-vet/mm-vet.json` when it is there; without it only the totals."""
        replies = Path(replies)
        try:
            grades = json.loads(require(replies, "MM-Vet's grade file").read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise BenchmarkFileError(f"{replies}: not valid JSON ({e.msg}); expected MM-Vet's grade file") from None
        if not isinstance(grades, dict) or not all(isinstance(g, dict) and isinstance(g.get("content"), list)
                                                   for g in grades.values()):
            raise BenchmarkFileError(f'{replies}: expected {{"v1_<id>": {{"content": [reply, ...], ...}}}} '
                                     "(mm-vet_evaluator.py's grade file)")
        runs = {len(g["content"]) for g in grades.values()}
        if len(runs) != 1 or 0 in runs:
            raise BenchmarkFileError(f"{replies}: the questions were graded {sorted(runs)} times; expected the "
                                     "same number of runs for every question")
        n_runs = runs.pop()
        tfile = Path(root) / "mm-vet" / TRUTH_FILE
        notes = []
        truth = None
        if tfile.exists():
            truth = json.loads(tfile.read_text(encoding="utf-8"))
            ungraded = sorted(set(truth) - set(grades))
            if ungraded:
                raise BenchmarkFileError(f"{replies}: no grade for {len(ungraded)} questions of {tfile} "
                                         f"(first: {ungraded[0]})")
        else:
            notes.append(f"{tfile} not found: totals only (per-capability scores need MM-Vet's ground truth)")
        by_id = {str(a["question_id"]): a["text"] for a in answers}
        rows = []
        for key in (truth if truth is not None else grades):
            qid = key.removeprefix("v1_")
            if qid not in by_id:
                raise BenchmarkFileError(f"{replies}: grades question {key}, which the answer file lacks")
            parsed = [parse_score(c) for c in grades[key]["content"]]
            rows.append({"question_id": qid, "key": key, "answer": by_id[qid],
                         "capability": list(truth[key]["capability"]) if truth is not None else [],
                         "scores": [p if p is not None else 0.0 for p in parsed],
                         "unparsed_runs": [p is None for p in parsed], "judge_replies": grades[key]["content"]})
        per_run = [self.aggregate([{**r, "score": r["scores"][k], "unparsed": r["unparsed_runs"][k]} for r in rows])
                   for k in range(n_runs)]
        metrics = {name: sum(m[name] for m in per_run) / n_runs for name in per_run[0] if name != "runs"}
        metrics["unparsed"] = float(sum(m["unparsed"] for m in per_run))
        if n_runs > 1:  # MM-Vet's `std` (numpy's, over the runs' totals) and each run's total
            mean = metrics["total"]
            metrics["std"] = (sum((m["total"] - mean) ** 2 for m in per_run) / n_runs) ** 0.5
            for k, m in enumerate(per_run, 1):
                metrics[f"total_run{k}"] = m["total"]
        metrics["runs"] = float(n_runs)
        for r in rows:
            r["score"] = sum(r["scores"]) / n_runs
            r["unparsed"] = any(r["unparsed_runs"])
        return Scored(metrics, rows, notes)

    @staticmethod
    def aggregate(rows: list[dict]) -> dict[str, float]:
        metrics = {"total": 100 * ratio(sum(r["score"] for r in rows), len(rows))}
        caps = [c for c in CAPABILITIES if any(c in r["capability"] for r in rows)]
        caps += sorted({c for r in rows for c in r["capability"]} - set(CAPABILITIES))
        for cap in caps:
            having = [r["score"] for r in rows if cap in r["capability"]]
            metrics[f"cap_{cap}"] = 100 * ratio(sum(having), len(having))
        metrics["unparsed"] = float(sum(r["unparsed"] for r in rows))
        metrics["runs"] = 1.0
        return metrics
