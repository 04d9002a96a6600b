"""`seva`: DPO with chosen = greedy answer on the image, rejected = greedy answer on the augmented image.

Faithful to SeVa (REFERENCE §1.1): both answers are the base model's greedy decodes; the chosen one is
the shared `greedy` generate stage (the same answers GT-DPO and nSFT use), the rejected one comes from
an `augmented` generate stage whose pixel tensor goes through an augmentation of
`methods.augmentations` (default: diffusion noise, step 800 for 7B / 500 for 13B). Pairs whose two
answers are exactly equal (after stripping `</s>` and whitespace) are dropped and counted, as SeVa's
step 3 does. SeVa duplicates its pair list (`list_data_dict += data * 2`): `repeat: 2` does the same.
`max_pairs` optionally downsamples (SeVa keeps 4300 OCR / 6500 text pairs at diffu800), seeded.
"""
from __future__ import annotations

import copy
import random

from methods.augmentations import AUGMENTATIONS
from methods.augmentations.diffusion import default_step
from methods.base import METHODS, SEVA_GENERATION, SEVA_SCHEDULE, Env, Method, Responses, preference_example, question_items


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
    generation_defaults = copy.deepcopy(SEVA_GENERATION)
    version = "1"

    def generation_params(self, mode: str, params: dict, base_model: str) -> dict:
        if mode != "augmented":
            return {}
        name = params.get("augmentation", "diffusion")
        aug_params = dict(params.get("augmentation_params", {}))
        if name == "diffusion":
            aug_params.setdefault("step", default_step(base_model))
        AUGMENTATIONS.get(name)(aug_params)  # unknown names and parameters fail at plan time
        return {"augmentation": name, "augmentation_params": aug_params}

    def construct(self, records: list[dict], responses: Responses, params: dict, env: Env | None = None):
        clean, noisy = responses.get("greedy", {}), responses.get("augmented", {})
        items = question_items(records)
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
            pairs.append(preference_example(item, chosen, rejected))
        if params.get("max_pairs") is not None and len(pairs) > int(params["max_pairs"]):
            pairs = random.Random(int(params.get("seed", 0))).sample(pairs, int(params["max_pairs"]))
        examples = pairs * int(params.get("repeat", 2))
        stats = {"records": len(records), "items": len(items), "pairs": len(pairs), "examples": len(examples),
                 "dropped_equal": equal, "missing_response": missing}
        return examples, stats
