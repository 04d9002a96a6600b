"""LLaVA-Bench (in-the-wild): open questions scored by an LLM judge relative to a reference answer.

Files, under the eval folder (LLaVA's `scripts/v1_5/eval/llavabench.sh` layout):

- `llava-bench-in-the-wild/questions.jsonl`: `{"question_id", "image", "text", "category"}` per line,
  `category` = conv | detail | complex;
- `llava-bench-in-the-wild/answers_gpt4.jsonl`: the reference answers, `{"question_id", "text"}` per line;
- `llava-bench-in-the-wild/context.jsonl`: `{"id", "image", "caption"}` per line, the image's
  description the judge reads (it cannot see the image);
- `llava-bench-in-the-wild/images/<image>`.

Asked as is (`model_vqa`, greedy, `max_new_tokens=1024`). Grading (LLaVA's `eval_gpt_review_bench.py`
and `summarize_gpt_review.py` rules, our own prompts): the judge (temperature 0.2, max_tokens 1024)
gets a system message and one user message with the context, the question, the reference answer as
assistant 1 and the model's answer as assistant 2, plus the category's rule; the first line of its
reply holds the two scores (1-10), "ref model". They are read as LLaVA does: commas become spaces,
and the line must hold exactly two numbers (we split on any whitespace, so "8, 9" reads as 8 and 9;
LLaVA's split on single spaces would not read it). An unreadable reply gets LLaVA's (-1, -1), which
LLaVA then averages in like any other pair; we do the same, so the numbers match LLaVA's, and count
it in `unparsed` (it is not asked again).

Metrics: `relative` = mean(model score) / mean(reference score) x100 over all questions (the number
papers print), `relative_<category>` likewise per category, `model_score` / `reference_score` = the
means x10 (LLaVA's second and third printed numbers), `unparsed` (a count).

The rules are ours, in LLaVA's `rule.json` shape: `{"llava_bench_<category>": {"role", "prompt"}}`.
To use another rule file (LLaVA's own), set `LlavaWild.rules_path` (or `LlavaWild(rules_path=...)`);
its `role` and `prompt` for each category replace ours (the message layout around them stays ours).
The rules are not part of the evaluate stage's key: clear that stage when you switch.
"""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import ClassVar

from benchmarks.base import (
    BENCHMARKS,
    Benchmark,
    BenchmarkFileError,
    Sample,
    Scored,
    check_answers,
    ratio,
    read_jsonl,
    require,
    write_jsonl,
)
from matrix.world import language
from matrix.world.datasets import unique_named
from matrix.world.scene import SHAPES, draw_scene, render

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
    """The two scores on the reply's first line (commas count as spaces), or None."""
    first = (text or "").split("\n")[0].replace(",", " ").split()
    if len(first) != 2:
        return None
    try:
        return float(first[0]), float(first[1])
    except ValueError:
        return None


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
    rules_path: ClassVar[Path | None] = None  # a rule.json-shaped file whose entries replace RULES

    def __init__(self, rules_path: Path | None = None):
        if rules_path is not None:
            self.rules_path = Path(rules_path)

    def rules(self) -> dict:
        if self.rules_path is None:
            return RULES
        path = require(Path(self.rules_path), 'a rule.json: {"llava_bench_<category>": {"role", "prompt"}}')
        try:
            rules = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise BenchmarkFileError(f"{path}: not valid JSON ({e.msg}); expected LLaVA's rule.json shape") from None
        return {**RULES, **rules}

    # ---- files ---------------------------------------------------------------------------------------
    def synthesize(self, root: Path, size: int, seed: int) -> None:
        """`size` images, one question each, categories cycling conv, detail, complex."""
        rng = random.Random(f"llava-wild:{seed}")
        base = Path(root) / FOLDER
        (base / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
        questions, answers, contexts = [], [], []
        for i in range(size):
            category = CATEGORIES[i % len(CATEGORIES)]
            scene = draw_scene(rng)
            while not unique_named(scene):
                scene = draw_scene(rng)
            name = f"shapes_{i:03d}.png"
            render(scene).save(base / IMAGE_DIR / name)
            if category == "conv":
                obj = rng.choice(unique_named(scene))
                question = language.colour_question(obj)
                reference = f"The {obj.shape} at the {obj.position} is {obj.colour}."
            elif category == "detail":
                question = language.DETAIL_PROMPT
                reference = f"{language.caption(scene)} {language.inventory(scene)} The background is plain and light."
            else:
                shape = rng.choice(SHAPES)
                left = len(scene.objects) - scene.count(shape)
                question = f"If every {shape} were removed, how many shapes would be left?"
                reference = (f"The image has {len(scene.objects)} shapes, {scene.count(shape)} of them "
                             f"{language.plural(shape, 2)}, so {left} would be left.")
            questions.append({"question_id": i, "image": name, "text": question, "category": category})
            answers.append({"question_id": i, "text": reference, "answer_id": f"ref-{i}", "model_id": "world"})
            contexts.append({"id": f"shapes_{i:03d}", "image": name,
                             "caption": f"{language.caption(scene)}\n{language.inventory(scene)}",
                             "scene": scene.to_json()})
        write_jsonl(base / QUESTION_FILE, questions)
        write_jsonl(base / ANSWER_FILE, answers)
        write_jsonl(base / CONTEXT_FILE, contexts)

    def load(self, root: Path, limit: int | None = None) -> list[Sample]:
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
            image = require(base / IMAGE_DIR / row["image"], f"the LLaVA-Bench image {row['image']}")
            samples.append(Sample(qid, image, row["text"], {
                "category": row["category"], "reference": refs[qid],
                "context": "\n".join(context) if isinstance(context, list) else str(context)}))
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

    @staticmethod
    def aggregate(rows: list[dict]) -> dict[str, float]:
        def relative(group: list[dict]) -> float:
            return 100 * ratio(sum(r["model_score"] for r in group), sum(r["reference_score"] for r in group))

        metrics = {"relative": relative(rows)}
        cats = [c for c in CATEGORIES if any(r["category"] == c for r in rows)]
        cats += sorted({r["category"] for r in rows} - set(CATEGORIES))
        for c in cats:
            metrics[f"relative_{c}"] = relative([r for r in rows if r["category"] == c])
        metrics["model_score"] = 10 * ratio(sum(r["model_score"] for r in rows), len(rows))
        metrics["reference_score"] = 10 * ratio(sum(r["reference_score"] for r in rows), len(rows))
        metrics["unparsed"] = float(sum(r["unparsed"] for r in rows))
        return metrics
