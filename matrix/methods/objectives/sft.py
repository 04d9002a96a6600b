"""Supervised fine-tuning: next-token cross-entropy on the answer tokens, optionally plus a per-token KL
to the initial model (`kl_lambda`, the -kl method variants)."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from matrix.methods.objectives.base import OBJECTIVES, Objective, ObjectiveSettings
from matrix.methods.objectives.losses import sft_loss, topk_kl, topk_reference

# The reference pass keeps the top-KL_TOPK tokens per supervised position (see losses.topk_kl for why
# not the sampled-token estimator). 16 ids + log-probs per token is 128 bytes: 10k five-turn
# conversations of ~200 answer tokens take ~0.26 GB of CPU memory.
KL_TOPK = 16


class SFTSettings(ObjectiveSettings):
    kl_lambda: float = Field(0.0, ge=0)
    reference: Literal["precomputed", "adapters_off"] = "precomputed"


@OBJECTIVES.register("sft")
class SFT(Objective):
    id = "sft"
    Settings = SFTSettings

    def __init__(self, settings: SFTSettings):
        super().__init__(settings)
        self.ref_topk: list | None = None  # per example: (ids, log-probs) of the reference's top-k tokens
        self.ref_s = 0.0
        self.kl_sum = 0.0  # KL summed over the current step's examples

    def check(self, hp: dict[str, Any]) -> None:
        if self.settings.kl_lambda and self.settings.reference == "adapters_off":
            raise ValueError("reference: adapters_off is implemented for DPO; the KL objective's reference is "
                             "precomputed (set reference: precomputed)")

    def prepare(self, loop) -> None:
        """With a KL term: the un-adapted model's top-k next-token log-probs at every supervised position,
        from one no-grad pass before the first step (LoRA B = 0 then: the policy is the reference)."""
        if not self.settings.kl_lambda:
            return
        import torch

        self.ref_topk = [None] * len(loop.encoded)
        with loop.timed() as clock, loop.evaluating(), torch.no_grad():
            for idxs in loop.micro_batches():
                logits, batch = loop.logits([loop.encoded[i][0] for i in idxs])
                for i, entry in zip(idxs, topk_reference(logits, batch["labels"], KL_TOPK)):
                    self.ref_topk[i] = entry
        self.ref_s = clock.seconds

    def loss(self, loop, idxs: list[int]):
        logits, batch = loop.logits([loop.encoded[i][0] for i in idxs], train=True)
        loss = sft_loss(logits, batch["labels"])
        if self.ref_topk is not None:
            kl = topk_kl(logits, batch["labels"], [self.ref_topk[i] for i in idxs])
            self.kl_sum += float(kl.detach()) * len(idxs)
            loss = loss + self.settings.kl_lambda * kl
        return loss

    def end_step(self, examples: int) -> dict[str, float]:
        if self.ref_topk is None:
            return {}
        entry = {"kl": self.kl_sum / examples}
        self.kl_sum = 0.0
        return entry

    def result(self, steps: list[dict]) -> dict[str, Any]:
        if self.ref_topk is None:
            return {}
        return {"ref_s": self.ref_s, "kl_lambda": self.settings.kl_lambda, "kl_topk": KL_TOPK,
                "kl_first": steps[0]["kl"], "kl_final": steps[-1]["kl"]}
