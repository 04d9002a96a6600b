"""`nsft` (negative SFT, arXiv 2411.14797): L = L_sft(ground truth) + L_sft(G(rejected; ground truth, codebook)).

The rejected answer is the base model's greedy answer (the shared `greedy` generate stage, as GT-DPO).
Both terms are plain SFT on answer tokens, so an example is one conversation per record: the
record's ground-truth turns followed by the constructed turns (the paper: "concatenated with original
GT to form the total question-answer pairs for each image").

Two construction paths, chosen per record (`params.path`: "auto" | "rule" | "llm"; auto = rule when
every question of the record has LLaVA's short-answer suffix or every answer has at most
`short_words` (3) words, as in OCRVQA):

* rule (short answers, Sec. 4.1): for each wrong answer Y to a question with truth X, two turns are
  appended: the question with X proposed, answered "Yes", and with Y proposed, answered "No" (the
  paper's "Is this a travel book? Yes / Is this a recipe book? No"). Right answers add nothing.
  One Yes and one No per mistake: balanced by construction.
* llm (captions, detailed descriptions): per image (record), the judge LLM reads every question of the
  record with its ground truth and the model's answer, and the vision error codebook (the nine instance-
  and image-level error types of the paper's Fig. 9, in our own words), and writes ONE five-turn
  corrective conversation (appendix B.1: 5 per image); no error -> a conversation from the ground truth. A reply that does not parse into exactly five question-answer turns is dropped
  and counted, never repaired. Yes/No balance (appendix C.5: "randomly erase some 'No' answers"):
  while No-answered turns outnumber Yes-answered ones, a random No turn is erased (seeded).

Ablations (Table 6): `nsft-no-codebook` leaves the codebook out of the judge prompt; `nsft-no-chosen`
drops the ground-truth turns (only G(...) is supervised). `nsft-kl` adds λ·per-token KL (trainer).
"""
from __future__ import annotations

import copy
import random
import re

from matrix.models.conversation import IMAGE_PLACEHOLDER
from matrix.world.language import SHORT_ANSWER_SUFFIX
from matrix.methods.base import METHODS, SEVA_SCHEDULE, Env, Item, Method, Responses, question_items, record_id

TURNS = 5  # appendix B.1: "we constructed 5 conversations per image"

# ---- the vision error codebook (paper Fig. 9: 3 instance-level + 6 image-level types), our wording ----
CODEBOOK_INSTANCE = (
    ("Object identity", "an object is named as the wrong class or category, or an object is mentioned that is not there"),
    ("Object attributes", "an object's colour, shape, size, material or number of instances is wrong"),
    ("Object actions", "what an object or person is doing is described wrongly"),
)
CODEBOOK_IMAGE = (
    ("Object location", "an object is placed in the wrong part of the image"),
    ("Relative position", "the spatial relation between two objects (left of, above, next to) is wrong"),
    ("Surroundings", "the background, setting or context around the objects is wrong"),
    ("Scene and events", "the overall scene, atmosphere or what is happening in the image as a whole is wrong"),
    ("Predicted motion", "an expectation of how objects will move or what will happen next is unsupported"),
    ("Reasoning", "a conclusion drawn about the image contradicts the reference description"),
)


def codebook_text() -> str:
    lines = ["Check the model's description for these kinds of error.", "Instance level:"]
    lines += [f"  {i}. {name}: {what}." for i, (name, what) in enumerate(CODEBOOK_INSTANCE, 1)]
    lines.append("Image level:")
    lines += [f"  {i}. {name}: {what}." for i, (name, what) in enumerate(CODEBOOK_IMAGE, 1)]
    return "\n".join(lines)


def judge_prompt(question: str, ground_truth: str, rejected: str, codebook: bool = True) -> str:
    """The construction prompt G(y_r; y_c, Q) for one question (`image_prompt` with one exchange)."""
    return image_prompt([(question, ground_truth, rejected)], codebook)


def image_prompt(exchanges: list[tuple[str, str, str]], codebook: bool = True) -> str:
    """The construction prompt G(y_r; y_c, Q) sends to the judge LLM for one image (our own text): every
    (question, ground truth, model answer) of the image's record, and one five-pair conversation asked
    for (appendix B.1: "we constructed 5 conversations per image"; Fig. 9: "one conversation")."""
    parts = [
        "You help correct a vision-language model. You cannot see the image; each REFERENCE below is an "
        "accurate statement about it. Each MODEL ANSWER is what the model said when asked the QUESTION above it.",
    ]
    for question, ground_truth, rejected in exchanges:
        parts += [f"QUESTION: {question}", f"REFERENCE: {ground_truth}", f"MODEL ANSWER: {rejected}"]
    if codebook:
        parts.append(codebook_text())
    parts.append(
        "First list the errors you find in the MODEL ANSWERS (compare each with its REFERENCE), or write "
        "'none'. Then write one conversation about the image between a User and you (GPT) with exactly "
        f"{TURNS} question-answer pairs that teach the correct facts where the model was wrong; if it "
        "made no error, base the conversation on the REFERENCE. Rules: ask only questions with a definite "
        "answer in the REFERENCE; answer as if looking at the image; never mention a reference or a "
        "description; keep each answer under 20 words; vary the questions (not all yes/no); have no more "
        "answers starting with 'No' than starting with 'Yes'.\n"
        "Reply in exactly this format and nothing after it:\n"
        "Errors: <the errors, or none>\n"
        "User: <question 1>\nGPT: <answer 1>\n...\nUser: <question 5>\nGPT: <answer 5>"
    )
    return "\n\n".join(parts)


_LINE = re.compile(r"^\s*(?:\d+[.)]\s*)?\**(user|gpt)\**\s*(?:\d+)?\s*:\s*(.*)$", re.IGNORECASE)


def parse_conversation(text: str | None, turns: int = TURNS) -> list[tuple[str, str]] | None:
    """The User/GPT pairs of a judge reply, or None unless there are exactly `turns` well-formed ones.

    Lines before the first `User:` (the error list) are ignored; a line that is neither `User:` nor
    `GPT:` continues the turn above it. Malformed: an answer before any question, two questions in a
    row, an empty question or answer, a question without an answer, or another number of pairs.
    """
    if not text:
        return None
    pairs: list[list[str]] = []
    expect = "user"
    started = False
    for line in text.splitlines():
        m = _LINE.match(line)
        if m is None:
            if started and line.strip():
                pairs[-1][-1] = (pairs[-1][-1] + " " + line.strip()).strip()
            continue
        role, content = m.group(1).lower(), m.group(2).strip()
        if role != expect:
            return None
        started = True
        if role == "user":
            pairs.append([content])
            expect = "gpt"
        else:
            pairs[-1].append(content)
            expect = "user"
    if expect != "user" or len(pairs) != turns or any(not q or not a for q, a in pairs):
        return None
    return [(q, a) for q, a in pairs]


def _polarity(answer: str) -> str | None:
    word = re.split(r"[\s,.!]", answer.strip().lower(), maxsplit=1)[0] if answer.strip() else ""
    return "yes" if word == "yes" else "no" if word == "no" else None


def balance_yes_no(pairs: list[tuple[str, str]], rng: random.Random) -> tuple[list[tuple[str, str]], int]:
    """Erase random No-answered pairs until they do not outnumber Yes-answered ones; (kept, erased)."""
    kept = list(pairs)
    erased = 0
    while True:
        nos = [i for i, (_, a) in enumerate(kept) if _polarity(a) == "no"]
        yeses = sum(_polarity(a) == "yes" for _, a in kept)
        if len(nos) <= yeses:
            return kept, erased
        del kept[rng.choice(nos)]
        erased += 1


# ---- the rule path for short answers ------------------------------------------------------------------
def _norm(answer: str) -> str:
    return re.sub(r"\s+", " ", answer.replace("</s>", "")).strip().rstrip(".").strip().lower()


def check_question(question: str, proposed: str) -> str:
    """A yes/no turn proposing `proposed` as the answer to `question` (suffix dropped)."""
    core = question.replace(SHORT_ANSWER_SUFFIX, "").strip()
    return f"{core} Is the answer \"{proposed}\"? Please answer yes or no."


def rule_pairs(item: Item, rejected: str) -> list[tuple[str, str]]:
    """Two turns for a wrong short answer (truth -> Yes, the model's answer -> No); none for a right one."""
    if _norm(rejected) == _norm(item.answer) or not rejected.strip():
        return []
    wrong = rejected.replace("</s>", "").strip()
    return [(check_question(item.question, item.answer), "Yes"), (check_question(item.question, wrong), "No")]


def _turns(pairs: list[tuple[str, str]]) -> list[dict]:
    out: list[dict] = []
    for q, a in pairs:
        out += [{"from": "human", "value": q}, {"from": "gpt", "value": a}]
    return out


def _with_placeholder(turns: list[dict], has_image: bool) -> list[dict]:
    turns = copy.deepcopy(turns)
    if has_image and turns and not any(IMAGE_PLACEHOLDER in t["value"] for t in turns):
        turns[0]["value"] = f"{IMAGE_PLACEHOLDER}\n{turns[0]['value']}"
    return turns


class _NSFTBase(Method):
    objective = "sft"
    responses = ("greedy",)
    needs = ("judge",)
    # The paper's schedule is SeVa's (bs 128, lr 2e-6, cosine, ZeRO-3); LoRA 1024/2048 for parity (REFERENCE §1.5).
    defaults = copy.deepcopy(SEVA_SCHEDULE)
    version = "2"  # one judge conversation per image (record), not per question
    codebook: bool = True
    with_chosen: bool = True

    def uses_judge(self, params: dict) -> bool:
        return params.get("path", "auto") != "rule"

    @staticmethod
    def _short(items: list[Item], short_words: int) -> bool:
        """Short-answer data: every question carries LLaVA's "single word or phrase" suffix (how
        mix665k marks OCRVQA, whose book titles can be long), or every answer has <= short_words words."""
        if not items:
            return False
        suffix = SHORT_ANSWER_SUFFIX.strip()
        return all(suffix in it.question for it in items) or all(len(it.answer.split()) <= short_words for it in items)

    def construct(self, records: list[dict], responses: Responses, params: dict, env: Env | None = None):
        path = params.get("path", "auto")
        if path not in ("auto", "rule", "llm"):
            raise ValueError(f"nsft: path must be auto, rule or llm, not {path!r}")
        short_words = int(params.get("short_words", 3))
        greedy = responses.get("greedy", {})
        seed = env.seed if env is not None else 0
        stats = {"records": len(records), "rule_records": 0, "llm_records": 0, "wrong_answers": 0, "rule_turns": 0,
                 "judge_prompts": 0, "dropped_unparseable": 0, "erased_no": 0, "missing_response": 0,
                 "dropped_empty": 0}
        plans: list[tuple[int, dict, list[Item], str]] = []
        prompts: list[str] = []
        prompt_of: list[tuple[int, Item]] = []
        by_record: dict[str, list[Item]] = {}
        for item in question_items(records):
            by_record.setdefault(item.record_id, []).append(item)
        for index, record in enumerate(records):
            items = by_record.get(record_id(record, index), [])
            use_rule = path == "rule" or (path == "auto" and self._short(items, short_words))
            stats["rule_records" if use_rule else "llm_records"] += 1
            plans.append((index, record, items, "rule" if use_rule else "llm"))
            if use_rule:
                continue
            answered = [it for it in items if it.item_id in greedy]
            stats["missing_response"] += len(items) - len(answered)
            if answered:  # one conversation per image (record), from all its answered questions
                prompts.append(image_prompt([(it.question, it.answer, greedy[it.item_id]) for it in answered],
                                            self.codebook))
                prompt_of.append((index, record_id(record, index)))
        replies: dict[str, str] = {}
        if prompts:
            if env is None or env.judge is None:
                raise ValueError(f"{self.id}: {len(prompts)} caption/detail answers need the judge LLM, but no judge "
                                 "is configured (spec `judge:`), or set params.path: rule")
            stats["judge_prompts"] = len(prompts)
            got = env.judge.complete(prompts, temperature=0.0, max_tokens=int(params.get("judge_max_tokens", 1024)),
                                     parse=parse_conversation)
            replies = {rid: r.text for (_, rid), r in zip(prompt_of, got)}

        examples: list[dict] = []
        for index, record, items, how in plans:
            rng = random.Random(f"nsft:{seed}:{record_id(record, index)}")
            extra: list[tuple[str, str]] = []
            if how == "rule":
                for item in items:
                    if item.item_id not in greedy:
                        stats["missing_response"] += 1
                        continue
                    new = rule_pairs(item, greedy[item.item_id])
                    stats["wrong_answers"] += bool(new)
                    stats["rule_turns"] += len(new)
                    extra += new
            elif record_id(record, index) in replies:
                parsed = parse_conversation(replies[record_id(record, index)])
                if parsed is None:
                    stats["dropped_unparseable"] += 1
                else:
                    kept, erased = balance_yes_no(parsed, rng)
                    stats["erased_no"] += erased
                    extra += kept
            turns = copy.deepcopy(record.get("conversations", [])) if self.with_chosen else []
            turns += _turns(extra)
            if not any(t.get("from") == "gpt" for t in turns):
                stats["dropped_empty"] += 1
                continue
            ex = {"id": record_id(record, index)}
            if record.get("image"):
                ex["image"] = record["image"]
            ex["conversations"] = _with_placeholder(turns, bool(record.get("image")))
            examples.append(ex)
        stats["examples"] = len(examples)
        return examples, stats


@METHODS.register("nsft")
class NSFT(_NSFTBase):
    id = "nsft"


@METHODS.register("nsft-no-codebook")
class NSFTNoCodebook(_NSFTBase):
    id = "nsft-no-codebook"
    codebook = False


@METHODS.register("nsft-no-chosen")
class NSFTNoChosen(_NSFTBase):
    id = "nsft-no-chosen"
    with_chosen = False


# λ is not given in the paper (REFERENCE §1.5); 0.1 is LLaVA-RLHF's KL coefficient, our choice.
KL_LAMBDA = 0.1


@METHODS.register("nsft-kl")
class NSFTKL(_NSFTBase):
    id = "nsft-kl"
    defaults = {**copy.deepcopy(SEVA_SCHEDULE), "kl_lambda": KL_LAMBDA}
