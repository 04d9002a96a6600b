"""In-domain evaluation (nSFT paper, Table 3): each model answers held-out questions of the alignment
source it was trained on, and a judge scores instruction following and accuracy from 0 to 10.

The questions are not a benchmark's files: they are a held-out slice of a spec dataset, the last
`heldout` records (500 by default) of the seeded shuffle whose prefixes are the training subsets, so
the slice never overlaps any subset (the data stage refuses a dataset too small for both). A spec
entry names the dataset: `{id: indomain-ocrvqa, benchmark: indomain, dataset: ocrvqa}`; only cells
trained on that dataset (and untrained rows: the baseline, external models) are evaluated on it.

Each held-out record contributes its first question; the reference is that question's ground-truth
answer. The judge sees the question, the reference and the model's answer (our own template; a file
can replace it: `benchmarks[].template`, a format string with three `{}` fields: question, reference,
answer) and ends with the lines `Instruction following: N` and `Accuracy: N`. A reply without both (integers 0-10) is left out of
the means and counted in `unparsed`.

Metrics (Table 3's columns): `if_score` and `accuracy` (means), `acc10_best` / `acc10_worst` (the
mean of the 10 highest / lowest accuracy scores), `unparsed`.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from matrix.benchmarks.base import BENCHMARKS, Benchmark, GradingTemplate, Sample, Scored, check_answers, ratio, require

FILE = "indomain.json"
TAIL = 10  # ACC10: the best / worst ten
JUDGE_MAX_TOKENS = 512

TEMPLATE = """\
You grade an AI assistant's answer to a question about an image. You cannot see the image; a reference
answer written from it is given instead and is correct. Give two scores from 0 to 10:
- instruction following: does the answer do what the question asks, in the form it asks for (a word or a
  phrase when it asks for one, a full description when it asks for one)?
- accuracy: are the answer's statements about the image correct and complete with respect to the reference?
  Every detail that contradicts the reference, or that the reference does not support, lowers it.

Explain briefly, then end with two lines:
Instruction following: N
Accuracy: N

Question: {}
Reference answer: {}
Answer: {}"""

_IF = re.compile(r"instruction following:\s*([0-9]+)\s*$", re.I | re.M)
_ACC = re.compile(r"accuracy:\s*([0-9]+)\s*$", re.I | re.M)


def parse_scores(text: str | None) -> tuple[int, int] | None:
    """(instruction following, accuracy) from the reply's last two score lines, each 0-10; else None."""
    ifs, accs = _IF.findall(text or ""), _ACC.findall(text or "")
    if not ifs or not accs:
        return None
    a, b = int(ifs[-1]), int(accs[-1])
    return (a, b) if 0 <= a <= 10 and 0 <= b <= 10 else None


def write_slice(out: Path, records: list[dict], image_root: Path) -> None:
    """The held-out records in the file `load` reads (the data stage writes it)."""
    (Path(out) / FILE).write_text(json.dumps({"image_root": str(image_root), "records": records}))


@BENCHMARKS.register("indomain")
class InDomain(GradingTemplate, Benchmark):
    id = "indomain"
    headline = "accuracy"
    max_new_tokens = 512
    needs_judge = True
    default_template = TEMPLATE
    template_what = "a grading template with three {} fields: question, reference answer, answer"

    def load(self, root: Path, limit: int | None = None, images: bool = True) -> list[Sample]:
        from matrix.methods.base import question_items

        data = json.loads(require(Path(root) / FILE, "the held-out slice the data stage writes").read_text())
        image_root = Path(data["image_root"])
        firsts = {}
        for item in question_items(data["records"]):
            firsts.setdefault(item.record_id, item)
        samples = [Sample(it.item_id, image_root / it.image, it.question, {"answer": it.answer})
                   for it in firsts.values()]
        return samples[:limit] if limit else samples

    def score(self, samples: list[Sample], answers: list[str], judge=None) -> Scored:
        check_answers(samples, answers)
        if judge is None:
            raise ValueError("indomain is scored by a judge: pass judge=Judge(...)")
        template = self.template()
        replies = judge.complete([template.format(s.question, s.meta["answer"], a) for s, a in zip(samples, answers)],
                                 temperature=0.0, max_tokens=JUDGE_MAX_TOKENS, parse=parse_scores)
        rows = []
        for s, answer, reply in zip(samples, answers, replies):
            scores = parse_scores(reply.text)
            rows.append({"question_id": s.question_id, "question": s.question, "answer": answer,
                         "label": s.meta["answer"], "if_score": scores[0] if scores else None,
                         "accuracy": scores[1] if scores else None, "judge_reply": reply.text,
                         "unparsed": scores is None})
        return Scored(self.aggregate(rows), rows)

    @staticmethod
    def aggregate(rows: list[dict]) -> dict[str, float]:
        read = [r for r in rows if not r["unparsed"]]
        acc = sorted(r["accuracy"] for r in read)
        return {"if_score": ratio(sum(r["if_score"] for r in read), len(read)),
                "accuracy": ratio(sum(acc), len(acc)),
                "acc10_best": ratio(sum(acc[-TAIL:]), len(acc[-TAIL:])),
                "acc10_worst": ratio(sum(acc[:TAIL]), len(acc[:TAIL])),
                "unparsed": float(len(rows) - len(read))}
