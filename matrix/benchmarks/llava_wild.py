"""LLaVA-Bench (in-the-wild): open questions scored by an LLM judge relative to a reference answer.

Files, under the eval folder (LLaVA's `scripts/v1_5/eval/llavabench.sh` layout):

- `llava-bench-in-the-wild/questions.jsonl`: `{"question_id", "image", "text", "category"}` per line,
  `category` = conv | detail | complex;
- `llava-bench-in-the-wild/answers_gpt4.jsonl`: the reference answers, `{"question_id", "text"}` per line;
- `llava-bench-in-the-wild/context.jsonl`: `{"id", "image", "caption"}` per line, the image's
  description the judge reads (it cannot see the image);
- `llava-bench-in-the-wild/images/<image>`.

Asked as is (`model_vqa`, greedy, `max_new_tokens=1024`). Grading (LLaVA's `eval_gpt_review_bench.py`
and `summarize_gpt_review.py` rules): the judge (temperature 0.2, max_tokens 1024) gets a system
message and one user message with the context, the question, the reference answer as assistant 1 and
the model's answer as assistant 2, plus the category's rule; the first line of its reply holds the two
scores (1-10), "ref model". They are read by `parse_pair`, LLaVA's rule exactly: commas become
spaces, the line is split on single spaces and must give exactly two numbers ("8, 9" gives three
pieces, so it is unreadable, as in LLaVA). An unreadable reply gets LLaVA's (-1, -1), which LLaVA then
averages in like any other pair; we do the same, so the numbers match LLaVA's, and count it in
`unparsed` (it is not asked again).

Metrics: `relative` = mean(model score) / mean(reference score) x100 over all questions (the number
papers print; both means rounded to 3 decimals first, as `summarize_gpt_review.py` does),
`relative_<category>` likewise per category, `model_score` / `reference_score` = the means x10,
`unparsed` (a count).

Two prompt sets, both in LLaVA's `rule.json` shape `{"llava_bench_<category>": {"role", "prompt"}}`:
- ours (the default, `RULES`, with our own message layout and system line), for offline use: its
  scores are not comparable with published numbers;
- a rule file (`benchmarks: [{id: llava-wild, template: rule.json}]`, or `LlavaWild(template_path=...)`):
  LLaVA's own `llava/eval/table/rule.json` is then sent in LLaVA's layout byte for byte: its system
  line and its `[Context]` ... `[System]` user message (`official_messages`).

`replay` reads LLaVA's stored review files (`reviews/*.jsonl`: question_id, category, content) through
the same parsing and aggregation, asking no judge.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

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

FOLDER = "llava-bench-in-the-wild"
QUESTION_FILE = "questions.jsonl"
ANSWER_FILE = "answers_gpt4.jsonl"
CONTEXT_FILE = "context.jsonl"
IMAGE_DIR = "images"
CATEGORIES = ("conv", "detail", "complex")
JUDGE_TEMPERATURE = 0.2
JUDGE_MAX_TOKENS = 1024
UNPARSED = (-1.0, -1.0)

SYSTEM = "You are a careful, impartial reviewer of answers to questions about images."
# eval_gpt_review_bench.py's system line, sent with a rule file
OFFICIAL_SYSTEM = "You are a helpful and precise assistant for checking the quality of the answer."
_SCORING = (
    "Score each assistant's answer from 1 to 10 for {what}; a higher score is a better answer. "
    "Put the two scores alone on the first line, assistant 1 first, separated by a space. From the "
    "second line on, explain your scores in a few sentences, judging the answers on their content only, "
    "not on the order in which they are given or on their length."
)
RULES = {
    "llava_bench_conv": {"role": "Assistant", "prompt": (
        "Two AI assistants answered the user's question about the image described above. Judge how well "
        "each one helps the user: "
        + _SCORING.format(what="helpfulness, relevance, accuracy and level of detail"))},
    "llava_bench_detail": {"role": "Assistant", "prompt": (
        "Two AI assistants were asked to describe the image described above. Judge each description "
        "against the context, and count any object, attribute or relation not in the context against it: "
        + _SCORING.format(what="accuracy, completeness and level of detail"))},
    "llava_bench_complex": {"role": "Assistant", "prompt": (
        "Two AI assistants answered a question that needs reasoning about the image described above. "
        "Judge whether each one's reasoning is sound and grounded in the context: "
        + _SCORING.format(what="helpfulness, relevance, accuracy and soundness of reasoning"))},
}


def parse_pair(text: str | None) -> tuple[float, float] | None:
    """eval_gpt_review_bench.py's `parse_score`: the first line, commas made spaces, split on single
    spaces, must be two numbers; None where LLaVA records (-1, -1). Official quirks, kept: "8, 9",
    "8  9", " 8 9", "8 9 " and "8\t9" are all unreadable (the split gives empty or joined pieces)."""
    pieces = (text or "").split("\n")[0].replace(",", " ").split(" ")
    if len(pieces) != 2:
        return None
    try:
        return float(pieces[0]), float(pieces[1])
    except ValueError:
        return None


def official_messages(context: str, question: str, reference: str, answer: str, rule: dict) -> list[dict]:
    """The messages eval_gpt_review_bench.py sends, byte for byte (context: the caption lines joined)."""
    role = rule["role"]
    content = (f"[Context]\n{context}\n\n"
               f"[Question]\n{question}\n\n"
               f"[{role} 1]\n{reference}\n\n[End of {role} 1]\n\n"
               f"[{role} 2]\n{answer}\n\n[End of {role} 2]\n\n"
               f"[System]\n{rule['prompt']}\n\n")
    return [{"role": "system", "content": OFFICIAL_SYSTEM}, {"role": "user", "content": content}]


def review_message(context: str, question: str, reference: str, answer: str, rule: dict) -> str:
    role = rule["role"]
    return (f"Context (what the image shows):\n{context}\n\nQuestion:\n{question}\n\n"
            f"### {role} 1\n{reference}\n### End of {role} 1\n\n"
            f"### {role} 2\n{answer}\n### End of {role} 2\n\n"
            f"Instructions:\n{rule['prompt']}")


@BENCHMARKS.register("llava-wild")
class LlavaWild(Benchmark):
    id = "llava-wild"
    headline = "relative"
    max_new_tokens = 1024  # llavabench.sh runs model_vqa
    needs_judge = True
    template_path: ClassVar[Path | None] = None  # LLaVA's rule.json (or one in its shape)

    def __init__(self, template_path: Path | None = None, rules_path: Path | None = None):
        if (template_path or rules_path) is not None:
            self.template_path = Path(template_path or rules_path)

    def rules(self) -> dict:
        if self.template_path is None:
            return RULES
        path = require(Path(self.template_path), 'a rule.json: {"llava_bench_<category>": {"role", "prompt"}}')
        try:
            rules = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise BenchmarkFileError(f"{path}: not valid JSON ({e.msg}); expected LLaVA's rule.json shape") from None
        return rules

    # ---- files ---------------------------------------------------------------------------------------
    def load(self, root: Path, limit: int | None = None, images: bool = True) -> list[Sample]:
        base = Path(root) / FOLDER
        qfile = base / QUESTION_FILE
        rows = read_jsonl(qfile, 'LLaVA-Bench questions, one {"question_id", "image", "text", "category"} per line')
        refs = {str(r.get("question_id")): r.get("text") for r in
                read_jsonl(base / ANSWER_FILE, 'reference answers, one {"question_id", "text"} per line')}
        contexts = {r.get("image"): r.get("caption") for r in
                    read_jsonl(base / CONTEXT_FILE, 'image contexts, one {"id", "image", "caption"} per line')}
        samples = []
        for n, row in enumerate(rows if limit is None else rows[:limit], 1):
            missing = [k for k in ("question_id", "image", "text", "category") if k not in row]
            if missing:
                raise BenchmarkFileError(f"{qfile}: question {n} lacks {', '.join(missing)}")
            qid = str(row["question_id"])
            if refs.get(qid) is None:
                raise BenchmarkFileError(f"{base / ANSWER_FILE}: no reference answer for question {qid}")
            if contexts.get(row["image"]) is None:
                raise BenchmarkFileError(f"{base / CONTEXT_FILE}: no context for image {row['image']}")
            context = contexts[row["image"]]
            image = image_file(base / IMAGE_DIR / row["image"], f"the LLaVA-Bench image {row['image']}",
                               images)
            samples.append(Sample(qid, image, row["text"], {
                "category": row["category"], "reference": refs[qid],
                "context": "\n".join(context) if isinstance(context, list) else str(context)},
                official_id=row["question_id"]))
        return samples

    # ---- grading -------------------------------------------------------------------------------------
    def score(self, samples: list[Sample], answers: list[str], judge=None) -> Scored:
        check_answers(samples, answers)
        if judge is None:
            raise ValueError("llava-wild is reviewed by an LLM judge: pass judge=Judge(...)")
        rules = self.rules()
        prompts = []
        for s, a in zip(samples, answers):
            key = f"llava_bench_{s.meta['category']}"
            if key not in rules:
                raise BenchmarkFileError(f"no rule {key!r} for question {s.question_id}; rules: {sorted(rules)}")
            if self.template_path is not None:
                prompts.append(official_messages(s.meta["context"], s.question, s.meta["reference"], a, rules[key]))
            else:
                prompts.append([{"role": "system", "content": SYSTEM},
                                {"role": "user", "content": review_message(
                                    s.meta["context"], s.question, s.meta["reference"], a, rules[key])}])
        replies = judge.complete(prompts, temperature=JUDGE_TEMPERATURE, max_tokens=JUDGE_MAX_TOKENS, parse=parse_pair)
        per_sample = []
        for s, answer, reply in zip(samples, answers, replies):
            pair = parse_pair(reply.text)
            ref, model = pair if pair is not None else UNPARSED
            per_sample.append({"question_id": s.question_id, "category": s.meta["category"], "question": s.question,
                               "answer": answer, "label": s.meta["reference"], "reference_score": ref,
                               "model_score": model, "judge_reply": reply.text, "unparsed": pair is None})
        return Scored(self.aggregate(per_sample), per_sample)

    def replay(self, root: Path, replies: Path, answers: list[dict]) -> Scored:
        """LLaVA's stored reviews (`eval_gpt_review_bench.py` output: question_id, category, content per
        line) read by `parse_pair` and aggregated as `summarize_gpt_review.py` does; no judge is asked.
        The answer file must be the one reviewed: every reviewed question answered, and where both
        files carry answer ids, the review's `answer2_id` is the answer's."""
        rows = read_jsonl(Path(replies), "LLaVA-Bench reviews, one {question_id, category, content} per line")
        by_id = {str(a["question_id"]): a for a in answers}
        per_sample = []
        for n, review in enumerate(rows, 1):
            if not all(k in review for k in ("question_id", "category", "content")):
                raise BenchmarkFileError(f"{replies}:{n}: a review needs question_id, category and content")
            qid = str(review["question_id"])
            answer = by_id.get(qid)
            if answer is None:
                raise BenchmarkFileError(f"{replies}:{n}: reviews question {qid}, which the answer file lacks")
            if "answer2_id" in review and "answer_id" in answer and review["answer2_id"] != answer["answer_id"]:
                raise BenchmarkFileError(f"{replies}:{n}: reviews answer {review['answer2_id']} of question {qid}, "
                                         f"but the answer file has answer {answer['answer_id']}: not these answers")
            pair = parse_pair(review["content"])
            ref, model = pair if pair is not None else UNPARSED
            category = str(review["category"]).removeprefix("llava_bench_")
            per_sample.append({"question_id": qid, "category": category, "question": answer.get("prompt"),
                               "answer": answer["text"], "reference_score": ref, "model_score": model,
                               "judge_reply": review["content"], "unparsed": pair is None})
        return Scored(self.aggregate(per_sample), per_sample)

    @staticmethod
    def aggregate(rows: list[dict]) -> dict[str, float]:
        def relative(group: list[dict]) -> float:
            # summarize_gpt_review.py rounds both means to 3 decimals before dividing; so do we
            ref = round(ratio(sum(r["reference_score"] for r in group), len(group)), 3)
            model = round(ratio(sum(r["model_score"] for r in group), len(group)), 3)
            return 100 * ratio(model, ref)

        metrics = {"relative": relative(rows)}
        cats = [c for c in CATEGORIES if any(r["category"] == c for r in rows)]
        cats += sorted({r["category"] for r in rows} - set(CATEGORIES))
        for c in cats:
            metrics[f"relative_{c}"] = relative([r for r in rows if r["category"] == c])
        metrics["model_score"] = 10 * ratio(sum(r["model_score"] for r in rows), len(rows))
        metrics["reference_score"] = 10 * ratio(sum(r["reference_score"] for r in rows), len(rows))
        metrics["unparsed"] = float(sum(r["unparsed"] for r in rows))
        return metrics
