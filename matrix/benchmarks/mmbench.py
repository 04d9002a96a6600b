"""MMBench and MMBench-CN (dev): multiple-choice questions, scored with CircularEval.

Files, under the eval folder (LLaVA's `scripts/v1_5/eval/mmbench.sh` / `mmbench_cn.sh` layout):

- `mmbench/mmbench_dev_20230712.tsv` (CN: `mmbench_cn/mmbench_dev_cn_20231003.tsv`, its own folder as
  in LLaVA's `mmbench_cn.sh`): one row per question
  with the columns index, question, hint, A, B, C, D, answer, category, image (base64), source,
  l2-category, comment, split. Missing cells (no hint, fewer options) are empty, "nan" or "none".
  Images are decoded once into `mmbench/<tsv stem>_images/` (a temporary folder when that one cannot
  be written); an image cell that is a short row index instead of base64 means that row's image.
  Scoring alone (`load(images=False)`) decodes and writes nothing.

Prompts follow `model_vqa_mmbench.py --single-pred-prompt`: "[hint\\n]question\\nA. ...\\nB. ..." (the
options up to the first missing one) + the multiple-choice suffix (CN: "\\n请直接回答选项字母。");
max_new_tokens 1024.

CircularEval, as we read the OpenCompass files and VLMEvalKit's scorer: the TSV carries each question
once per rotation of its options. The rotated copies are rows of their own whose index is the original
index + k * 1,000,000 (k = 1, 2, 3; the options and the answer letter rotated), so a row belongs to the
question `index % 1,000,000`. A question counts as right only when every one of its rows is answered
right. When no index reaches 1,000,000 the file has no copies and accuracy is plain per-row accuracy
(`circular` = 0 in the metrics says which was done). `limit` keeps the first `limit` questions with all
their copies.

Answers are read by VLMEvalKit's rule step `can_infer` (`vlmeval/utils/matching_util.py`, rules as at
VLMEvalKit c026693, unchanged from Dec 2023 to Aug 2025), reimplemented in `extract_letter`: the
refusal phrases give "Z"; else, with `.()[],:;!*#{}` made spaces, exactly one option letter among the
words gives it; else no option letter but a word "Z" gives "Z"; else the single option whose text
(lowercased) the lowercased answer contains. Otherwise the answer is unreadable: `mmbench` and
`mmbench-cn` count it wrong (`unparsed` counts those answers); `mmbench-extract` and
`mmbench-cn-extract` (the same files, judged: `{id: mmbench, benchmark: mmbench-extract}` with a judge)
first ask the judge, as VLMEvalKit's GPT step does (see `_Extracting`). "Z" is never an option, so it
is counted wrong.
"""
from __future__ import annotations

import base64
import csv
import sys
import tempfile
from pathlib import Path

from matrix.benchmarks.base import (
    BENCHMARKS,
    Benchmark,
    BenchmarkFileError,
    GradingTemplate,
    Sample,
    Scored,
    check_answers,
    ratio,
    require,
)
from matrix.benchmarks.prompts import MULTIPLE_CHOICE_SUFFIX, MULTIPLE_CHOICE_SUFFIX_CN

LETTERS = ("A", "B", "C", "D")
COPY_STRIDE = 1_000_000
COLUMNS = ("index", "question", "hint", "A", "B", "C", "D", "answer", "category", "image", "source",
           "l2-category", "comment", "split")
# VLMEvalKit's can_infer_option: these characters count as spaces, no others (not "?", quotes, CJK)
_SPACED = ".()[],:;!*#{}"
REFUSALS = ("Sorry, I can't help with images of people yet.", "I can't process this file.",
            "I'm sorry, but without the image provided", "Cannot determine the answer")


def is_none(value: str | None) -> bool:
    return value is None or value.strip() == "" or value.strip().lower() in ("nan", "none")


def build_prompt(row: dict, suffix: str) -> tuple[str, dict[str, str]]:
    """model_vqa_mmbench.py's prompt and the options it shows ({letter: text})."""
    options = {}
    for letter in LETTERS:
        if is_none(row.get(letter)):
            break
        options[letter] = row[letter]
    question = row["question"]
    if not is_none(row.get("hint")):
        question = row["hint"] + "\n" + question
    for letter, text in options.items():
        question += f"\n{letter}. {text}"
    return question + suffix, options


def extract_letter(answer: str, options: dict[str, str]) -> str | None:
    """VLMEvalKit's `can_infer(answer, options)`: an option letter, "Z" (a refusal), or None where it
    returns False. Official quirks kept: "B?" and '"B"' find nothing (only `_SPACED` are separators);
    "B, not A" names two letters, so the option texts decide."""
    answer = str(answer)
    if "Failed to obtain answer via API" in answer:
        return _by_text(answer, options)  # can_infer_option gives False; can_infer_text still runs
    if any(r in answer for r in REFUSALS):
        return "Z"
    answer_mod = answer
    for c in _SPACED:
        answer_mod = answer_mod.replace(c, " ")
    words = [w.strip() for w in answer_mod.split()]
    letters = [c for c in options if c in words]
    if len(letters) == 1:
        return letters[0]
    if not letters and "Z" in words:
        return "Z"
    return _by_text(answer, options)


def _by_text(answer: str, options: dict[str, str]) -> str | None:
    """can_infer_text: the one option whose lowercased text is inside the lowercased answer."""
    lowered = answer.lower()
    found = [k for k, text in options.items() if str(text).lower() in lowered]
    return found[0] if len(found) == 1 else None


class _MMBench(Benchmark):
    headline = "accuracy"
    max_new_tokens = 1024  # model_vqa_mmbench.py
    folder: str = ""
    tsv: str = ""
    suffix: str = ""
    cn: bool = False  # the Chinese edition

    def load(self, root: Path, limit: int | None = None, images: bool = True) -> list[Sample]:
        path = require(Path(root) / self.folder / self.tsv,
                       f"the {self.id} dev TSV from OpenCompass (index, question, hint, A-D, answer, category, "
                       "base64 image, ...)")
        rows = _read_tsv(path)
        folder = _image_folder(path) if images else None
        by_index = {row["index"]: row for row in rows}
        order: dict[int, int] = {}  # question id (index % 1e6) -> its rank of first appearance
        samples = []
        for n, row in enumerate(rows, 2):
            try:
                index = int(float(row["index"]))
            except ValueError:
                raise BenchmarkFileError(f"{path}: line {n}: index {row['index']!r} is not a number") from None
            group = index % COPY_STRIDE
            order.setdefault(group, len(order))
            if limit is not None and order[group] >= limit:
                continue
            if is_none(row.get("answer")):
                raise BenchmarkFileError(f"{path}: line {n}: question {index} has no answer (dev split expected)")
            question, options = build_prompt(row, self.suffix)
            if row["answer"] not in options:
                raise BenchmarkFileError(f"{path}: line {n}: answer {row['answer']!r} is not one of the options "
                                         f"{', '.join(options)}")
            image = _decode_image(row, by_index, folder, path, n) if images else None
            samples.append(Sample(str(index), image, question, {
                "label": row["answer"], "options": options, "group": group, "circular_copy": index >= COPY_STRIDE,
                "raw_question": row["question"],
                "category": row.get("category"), "l2_category": row.get("l2-category")}, official_id=index))
        return samples

    def score(self, samples: list[Sample], answers: list[str], judge=None) -> Scored:
        check_answers(samples, answers)
        parsed = [extract_letter(a, s.meta["options"]) for s, a in zip(samples, answers)]
        replies = self._extract(samples, answers, parsed, judge)
        per_sample = []
        groups: dict[int, list[bool]] = {}
        for i, (s, answer) in enumerate(zip(samples, answers)):
            correct = parsed[i] == s.meta["label"]
            groups.setdefault(s.meta["group"], []).append(correct)
            per_sample.append({"question_id": s.question_id, "group": s.meta["group"],
                               "category": s.meta.get("category"), "question": s.question, "answer": answer,
                               "parsed": parsed[i], "label": s.meta["label"], "correct": correct,
                               **({"judge_replies": replies[i]} if replies.get(i) else {})})
        circular = any(s.meta["circular_copy"] for s in samples)
        main = [r for r, s in zip(per_sample, samples) if not s.meta["circular_copy"]]
        metrics = {
            # CircularEval when the file has the copies: a question is right only if all its rows are
            "accuracy": 100 * ratio(sum(all(v) for v in groups.values()), len(groups)),
            "plain_accuracy": 100 * ratio(sum(r["correct"] for r in main), len(main)),
            "circular": float(circular),
            "unparsed": float(sum(r["parsed"] is None for r in per_sample)),
        }
        if self.needs_judge:  # read by the extractor (its reply matched by the same rules)
            metrics["extracted"] = float(sum(1 for i in replies if parsed[i] is not None))
        # per category and l2-category (VLMEvalKit's report), CircularEval over the groups of each
        for key, prefix in (("l2_category", "l2"), ("category", "category")):
            names = {s.meta["group"]: s.meta.get(key) for s in samples if not is_none(s.meta.get(key))}
            for name in sorted(set(names.values())):
                in_it = [ok for g, ok in groups.items() if names.get(g) == name]
                metrics[f"{prefix}_{name}"] = 100 * ratio(sum(all(v) for v in in_it), len(in_it))
        return Scored(metrics, per_sample)

    def _extract(self, samples, answers, parsed: list, judge) -> dict[int, list[str]]:
        """The rule-based step only (`parsed` as is); the extracting plug-ins override this."""
        return {}

    def official_prompt(self, sample: Sample) -> str:
        """model_vqa_mmbench.py records the prompt without the answer-format suffix."""
        q = sample.question
        return q[: -len(self.suffix)] if self.suffix and q.endswith(self.suffix) else q


@BENCHMARKS.register("mmbench")
class MMBench(_MMBench):
    id = "mmbench"
    folder = "mmbench"
    tsv = "mmbench_dev_20230712.tsv"
    suffix = MULTIPLE_CHOICE_SUFFIX


@BENCHMARKS.register("mmbench-cn")
class MMBenchCN(_MMBench):
    id = "mmbench-cn"
    folder = "mmbench_cn"  # mmbench_cn.sh keeps the CN TSV in its own folder
    tsv = "mmbench_dev_cn_20231003.tsv"
    suffix = MULTIPLE_CHOICE_SUFFIX_CN
    cn = True


# ---- files --------------------------------------------------------------------------------------
def _read_tsv(path: Path) -> list[dict]:
    csv.field_size_limit(sys.maxsize)
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t")  # pandas quotes cells holding tabs, quotes or newlines
        missing = [c for c in ("index", "question", "A", "B", "answer", "image") if c not in (reader.fieldnames or [])]
        if missing:
            raise BenchmarkFileError(f"{path}: the header lacks the column(s) {', '.join(missing)}")
        return list(reader)


def _image_folder(tsv: Path) -> Path:
    folder = tsv.parent / f"{tsv.stem}_images"
    try:
        folder.mkdir(exist_ok=True)
        probe = folder / ".write-test"
        probe.touch()
        probe.unlink()
        return folder
    except OSError:
        return Path(tempfile.mkdtemp(prefix=f"{tsv.stem}_images_"))


def _decode_image(row: dict, by_index: dict, folder: Path, path: Path, line: int) -> Path:
    data, name = row["image"], row["index"]
    if len(data) <= 64 and data in by_index:  # a reference to another row's image
        data, name = by_index[data]["image"], data
    try:
        raw = base64.b64decode(data, validate=True)
    except ValueError:
        raise BenchmarkFileError(f"{path}: line {line}: the image cell is neither base64 nor a row index") from None
    ext = ".png" if raw[:8] == b"\x89PNG\r\n\x1a\n" else ".jpg"
    target = folder / f"{name}{ext}"
    if not target.exists() or target.stat().st_size != len(raw):
        tmp = target.with_suffix(target.suffix + ".tmp")
        tmp.write_bytes(raw)
        tmp.replace(target)
    return target


# ---- the answer extractor (VLMEvalKit's GPT step) --------------------------------------------------------
EXTRACT_ATTEMPTS = 3  # VLMEvalKit's `retry = 3`
EXTRACT_MAX_TOKENS = 128
EXTRACT_TEMPLATE = """\
A model answered a multiple-choice question in its own words. Decide which option its answer means.
Reply with one capital letter: the option the answer agrees with, or Z when it agrees with none of them
or refuses to answer.

Question: What colour is the square?
There are several options:
A. red
B. green
C. blue
Answer: It looks green to me.
Your output: B

Question: {}?
{}Answer: {}
Your output: """


def option_lines(options: dict[str, str]) -> str:
    """VLMEvalKit's `build_option_str`: a header line, then "A. text" per option, each ending in "\n"."""
    return "There are several options: \n" + "".join(f"{k}. {v}\n" for k, v in options.items())


class _Extracting(GradingTemplate):
    """MMBench with VLMEvalKit's second step: an answer the rules cannot read (`extract_letter` gives
    None) goes to the judge with the extraction template (ours; VLMEvalKit's `build_prompt` text as a
    file: its three `{}` are the question, the option lines, the answer), and the judge's reply is read
    by the same rules, up to 3 replies. Where VLMEvalKit then picks a random option, the answer stays
    unread and counts as wrong. `extracted` counts the answers the judge made readable."""

    needs_judge = True
    default_template = EXTRACT_TEMPLATE
    template_what = "an MMBench answer-extraction template (a format string: question, options, answer)"

    def _extract(self, samples, answers, parsed: list, judge) -> dict[int, list[str]]:
        if judge is None:
            raise ValueError(f"{self.id} asks a judge to read the answers the rules cannot: pass judge=Judge(...)")
        template = self.template()
        todo = [i for i, p in enumerate(parsed) if p is None]
        prompts = {i: template.format(samples[i].meta["raw_question"], option_lines(samples[i].meta["options"]),
                                      answers[i]) for i in todo}
        replies: dict[int, list[str]] = {i: [] for i in todo}
        for attempt in range(EXTRACT_ATTEMPTS):
            if not todo:
                break
            got = judge.complete([prompts[i] for i in todo], temperature=0.0, max_tokens=EXTRACT_MAX_TOKENS,
                                 attempt=attempt)
            for i, reply in zip(todo, got):
                replies[i].append(reply.text)
                parsed[i] = extract_letter(reply.text, samples[i].meta["options"])
            todo = [i for i in todo if parsed[i] is None]
        return replies


@BENCHMARKS.register("mmbench-extract")
class MMBenchExtract(_Extracting, MMBench):
    id = "mmbench-extract"


@BENCHMARKS.register("mmbench-cn-extract")
class MMBenchCNExtract(_Extracting, MMBenchCN):
    id = "mmbench-cn-extract"
