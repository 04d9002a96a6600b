"""`cont-sft`: continual SFT on the ground-truth conversations (nSFT paper's baseline, REFERENCE §1.5).

Whole multi-turn records are kept as they are, so every answer of a record is supervised in one
sequence, exactly as LLaVA's own SFT consumed them.
"""
from __future__ import annotations

import copy

from matrix.methods.base import METHODS, SEVA_SCHEDULE, Method, Responses, record_id


@METHODS.register("cont-sft")
class ContSFT(Method):
    id = "cont-sft"
    objective = "sft"
    responses = ()
    # "The same data and schedule as DPO" (paper): SeVa's schedule; beta does not apply.
    defaults = copy.deepcopy(SEVA_SCHEDULE)

    def construct(self, records: list[dict], responses: Responses, params: dict, env=None) -> tuple[list[dict], dict]:
        examples: list[dict] = []
        no_answer = 0
        for index, record in enumerate(records):
            turns = record.get("conversations", [])
            if not any(t.get("from") == "gpt" for t in turns):
                no_answer += 1  # nothing to supervise: the sample would carry zero loss
                continue
            ex = {"id": record_id(record, index)}
            if record.get("image"):
                ex["image"] = record["image"]
            ex["conversations"] = copy.deepcopy(turns)
            examples.append(ex)
        return examples, {"records": len(records), "examples": len(examples), "dropped_no_answer": no_answer}


@METHODS.register("cont-sft-kl")
class ContSFTKL(ContSFT):
    """Continual SFT + λ·per-token KL to the frozen base model (the nSFT paper's KL ablation applied
    to plain SFT); λ = 0.1 is our choice (LLaVA-RLHF's KL coefficient; the paper gives none)."""

    id = "cont-sft-kl"
    defaults = {**copy.deepcopy(SEVA_SCHEDULE), "kl_lambda": 0.1}
