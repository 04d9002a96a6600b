"""`seva`: DPO with chosen = greedy answer on the image, rejected = greedy answer on the augmented image.

Faithful to SeVa (REFERENCE §1.1): both answers are the base model's greedy decodes; the chosen one is
the shared `greedy` generate stage (the same answers GT-DPO and nSFT use), the rejected one comes from
an `augmented` generate stage whose pixel tensor goes through an augmentation of
`matrix.methods.augmentations` (default: diffusion noise, step 800 for 7B / 500 for 13B). Pairs whose two
answers are exactly equal (after stripping `</s>` and whitespace) are dropped and counted, as SeVa's
step 3 does. SeVa duplicates its pair list (`list_data_dict += data * 2`, train_dpo_ours.py:213,218):
`repeat: 2` does the same. SeVa asks at most two random questions per image (`questions_per_image: 2`;
null: all of them).
Questions are asked and trained on without LLaVA's short-answer instruction (SeVa's step 1), with
SeVa's own generation template (llava_v1). `max_pairs` optionally downsamples (SeVa keeps 4300 OCR / 6500 text pairs at diffu800), seeded.
"""
from __future__ import annotations

import copy
import random
from dataclasses import replace

from matrix.methods.augmentations import AUGMENTATIONS
from matrix.methods.augmentations.diffusion import default_step
from matrix.methods.base import METHODS, SEVA_GENERATION, SEVA_SCHEDULE, Env, Method, Responses, preference_example, question_items


# SeVa's step 1 (data/step1/make_ocrvqa_data.py:26) asks OCRVQA's questions without LLaVA's short-answer
# instruction (and the newline before it), so both answers are free-form (the paper's Fig. 4 shows bare
# questions); its TextVQA script keeps the question whole. `params.strip_suffix: false` keeps it.
SHORT_ANSWER = "Answer the question using a single word or phrase."
STRIP = [SHORT_ANSWER]


def seva_question(question: str, strip: list[str]) -> str:
    """The question SeVa asks and trains on: `question` with each text of `strip` removed."""
    for text in strip:
        question = question.replace(text, "")
    return question.strip()


def _strip(params: dict) -> list[str]:
    return list(STRIP) if params.get("strip_suffix", True) else []


def per_image(items: list, k: int | None, seed: int) -> list:
    """At most `k` questions of each record (image), drawn at random as SeVa's step 1 does
    (make_ocrvqa_data.py:28, `random.sample(questions, min(len, 2))`), seeded per record and kept in
    their record's order; None: every question."""
    if k is None:
        return items
    by_record: dict[str, list] = {}
    for it in items:
        by_record.setdefault(it.record_id, []).append(it)
    keep = set()
    for rid, its in by_record.items():
        keep |= {it.item_id for it in random.Random(f"seva:{seed}:{rid}").sample(its, min(len(its), int(k)))}
    return [it for it in items if it.item_id in keep]


def _clean(answer: str) -> str:
    return answer.replace("</s>", "").replace("\n", " ").strip()


@METHODS.register("seva")
class SeVa(Method):
    id = "seva"
    objective = "dpo"
    responses = ("greedy", "augmented")
    # Reference: SeVa's frozen copy of the initial LLM, fed by the policy's own (trained) projector
    # (seva/trainer/llava_dpo_trainer.py: both embed through self.model.prepare_inputs_labels_for_multimodal).
    defaults = {**copy.deepcopy(SEVA_SCHEDULE), "beta": 0.1, "reference": "adapters_off"}
    # data/step2/generate_with_aug.py:90 asks with LLaVA's llava_v1 conversation (its system sentence
    # speaks of a "human"), where LLaVA-1.5 trains and evaluates with vicuna_v1.
    generation_defaults = {**copy.deepcopy(SEVA_GENERATION), "template": "llava_v1"}
    version = "2"  # questions stripped of the short-answer instruction; at most 2 questions per image

    def generation_params(self, mode: str, params: dict, base_model: str) -> dict:
        strip = {"strip": _strip(params)} if _strip(params) else {}
        if mode != "augmented":
            return strip
        name = params.get("augmentation", "diffusion")
        aug_params = dict(params.get("augmentation_params", {}))
        if name == "diffusion":
            aug_params.setdefault("step", default_step(base_model))
        AUGMENTATIONS.get(name)(aug_params)  # unknown names and parameters fail at plan time
        return {**strip, "augmentation": name, "augmentation_params": aug_params}

    def construct(self, records: list[dict], responses: Responses, params: dict, env: Env | None = None):
        clean, noisy = responses.get("greedy", {}), responses.get("augmented", {})
        items = per_image(question_items(records), params.get("questions_per_image", 2), int(params.get("seed", 0)))
        strip = _strip(params)
        pairs: list[dict] = []
        equal = missing = 0
        for item in items:
            if item.item_id not in clean or item.item_id not in noisy:
                missing += 1
                continue
            chosen, rejected = _clean(clean[item.item_id]), _clean(noisy[item.item_id])
            if chosen == rejected:
                equal += 1
                continue
            pairs.append(preference_example(replace(item, question=seva_question(item.question, strip)), chosen,
                                            rejected))
        if params.get("max_pairs") is not None and len(pairs) > int(params["max_pairs"]):
            pairs = random.Random(int(params.get("seed", 0))).sample(pairs, int(params["max_pairs"]))
        examples = pairs * int(params.get("repeat", 2))
        stats = {"records": len(records), "items": len(items), "pairs": len(pairs), "examples": len(examples),
                 "dropped_equal": equal, "missing_response": missing}
        return examples, stats
