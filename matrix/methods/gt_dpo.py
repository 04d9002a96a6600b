"""`gt-dpo`: DPO with chosen = ground-truth answer, rejected = the base model's greedy answer.

No public code exists (REFERENCE §1.2); this follows the faithful reconstruction: SeVa's greedy
generation without augmentation gives the rejected answer, SeVa's trainer settings train it.
Our decision (the paper is silent): pairs whose rejected answer equals the chosen one after
stripping whitespace are dropped and counted, as SeVa does for its own pairs — such a pair has a
zero DPO gradient and only dilutes the batch. Set `params.drop_equal: false` to keep them. "The same
setting as SeVa" (nSFT paper): the pair list is repeated twice as SeVa's trainer repeats its own
(`params.repeat`, default 2); every question of a record is used (the paper names no selection).
"""
from __future__ import annotations

import copy

from matrix.methods.base import METHODS, SEVA_GENERATION, SEVA_SCHEDULE, Method, Responses, preference_example, question_items


@METHODS.register("gt-dpo")
class GTDPO(Method):
    id = "gt-dpo"
    version = "2"  # pairs repeated x2, as SeVa's trainer repeats its own (`repeat`)
    objective = "dpo"
    responses = ("greedy",)
    defaults = {**copy.deepcopy(SEVA_SCHEDULE), "beta": 0.1, "reference": "adapters_off"}  # SeVa's trainer
    generation_defaults = copy.deepcopy(SEVA_GENERATION)  # SeVa's step 2 without augmentation

    def construct(self, records: list[dict], responses: Responses, params: dict, env=None) -> tuple[list[dict], dict]:
        greedy = responses.get("greedy", {})
        drop_equal = bool(params.get("drop_equal", True))
        items = question_items(records)
        examples: list[dict] = []
        equal = missing = 0
        for item in items:
            if item.item_id not in greedy:
                missing += 1
                continue
            chosen, rejected = item.answer.strip(), greedy[item.item_id].strip()
            if drop_equal and chosen == rejected:
                equal += 1
                continue
            examples.append(preference_example(item, chosen, rejected))
        pairs = len(examples)
        examples = examples * int(params.get("repeat", 2))
        stats = {
            "records": len(records),
            "items": len(items),
            "pairs": pairs,
            "examples": len(examples),
            "dropped_equal": equal,
            "missing_response": missing,
        }
        return examples, stats
