"""Sigmoid DPO on (chosen, rejected) pairs against a reference: precomputed before the first step, or
`reference: adapters_off`, the policy with its LoRA adapters switched off at every step."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from matrix.methods.objectives.base import OBJECTIVES, Objective, ObjectiveSettings
from matrix.methods.objectives.losses import dpo_loss, sequence_logps, top_other_logps


class DPOSettings(ObjectiveSettings):
    beta: float = Field(0.1, gt=0)
    reference: Literal["precomputed", "adapters_off"] = "precomputed"
    rejected_logps: Literal["rejected_tokens", "top_other_token"] = "rejected_tokens"
    kl_lambda: float = Field(0.0, ge=0)  # read only to refuse it: DPO has its own reference


@OBJECTIVES.register("dpo")
class DPO(Objective):
    id = "dpo"
    Settings = DPOSettings
    conversations = ("conversations", "rejected_conversations")
    deterministic = True  # SeVa's disable_dropout, and LoRA dropout 0

    def __init__(self, settings: DPOSettings):
        super().__init__(settings)
        self.ref = None  # (N, 2) reference log-probs of chosen / rejected, precomputed reference only
        self.ref_s = 0.0  # time in reference passes (adapters_off: inside the training loop)
        self.rewards: list = []  # this step's (m, 2) rewards per micro-batch

    def check(self, hp: dict[str, Any]) -> None:
        if self.settings.kl_lambda:
            raise ValueError("kl_lambda (per-token KL to the reference) applies to SFT objectives; "
                             "DPO has its own reference")
        if self.settings.reference == "adapters_off" and not hp.get("lora"):
            raise ValueError("reference: adapters_off switches LoRA off for the reference pass; without LoRA "
                             "(lora: null) use reference: precomputed")

    @staticmethod
    def pairs(loop, idxs: list[int]) -> list:
        """Chosen then rejected in one batch of 2m (SeVa's layout): one forward per micro-batch."""
        return [loop.encoded[i][0] for i in idxs] + [loop.encoded[i][1] for i in idxs]

    def pair_logps(self, logits, labels):
        """(2, m) summed log-probs of chosen / rejected from one batch of 2m (chosen first). The rejected
        half is scored by `rejected_logps`: its own tokens (standard DPO), or `top_other_token`, SIMA's
        trainer's rule (`losses.top_other_logps`)."""
        import torch

        logps = sequence_logps(logits, labels).view(2, -1)
        if self.settings.rejected_logps == "top_other_token":
            m = logps.shape[1]
            logps = torch.stack([logps[0], top_other_logps(logits[m:], labels[m:])])
        return logps

    def prepare(self, loop) -> None:
        """Precomputed reference: before the first step the policy IS the un-adapted model (LoRA B = 0,
        nothing trained yet), so one no-grad pass over it gives the reference log-probs, in training's
        own precision, without a second resident model."""
        if self.settings.reference != "precomputed":
            return
        import torch

        self.ref = torch.zeros(len(loop.encoded), 2)
        with loop.timed() as clock, loop.evaluating(), torch.no_grad():
            for idxs in loop.micro_batches():
                logits, batch = loop.logits(self.pairs(loop, idxs))
                self.ref[idxs] = self.pair_logps(logits, batch["labels"]).t().float().cpu()
        self.ref_s = clock.seconds

    def reference_logps(self, loop, idxs: list[int]):
        """(2, m) reference log-probs of chosen / rejected of pairs `idxs`. `adapters_off`: a no-grad pass of
        the policy with its LoRA adapters switched off, so the base LLM with the CURRENT projector, as SIMA's
        and CSR's trainers (`disable_adapter()`, tool/dpo_trainer.py) and SeVa's (the policy's
        `prepare_inputs_labels_for_multimodal` feeds its frozen reference) compute it; `precomputed`: the
        rows `prepare` stored before the first step (the initial projector)."""
        import torch

        if self.settings.reference != "adapters_off":
            return self.ref[idxs].t()
        with loop.timed() as clock, torch.no_grad(), loop.model.disable_adapter():
            logits, batch = loop.logits(self.pairs(loop, idxs))
            out = self.pair_logps(logits, batch["labels"]).float()
        self.ref_s += clock.seconds
        return out

    def loss(self, loop, idxs: list[int]):
        import torch

        logits, batch = loop.logits(self.pairs(loop, idxs), train=True)
        chosen, rejected = self.pair_logps(logits, batch["labels"])
        ref_chosen, ref_rejected = self.reference_logps(loop, idxs).to(chosen.device)
        loss, cr, rr = dpo_loss(chosen, rejected, ref_chosen, ref_rejected, self.settings.beta)
        self.rewards.append(torch.stack([cr, rr], 1).float().cpu())
        return loss

    def end_step(self, examples: int) -> dict[str, float]:
        import torch

        if not self.rewards:
            return {}
        r = torch.cat(self.rewards)
        self.rewards = []
        return {
            "chosen_reward": float(r[:, 0].mean()),
            "rejected_reward": float(r[:, 1].mean()),
            "margin": float((r[:, 0] - r[:, 1]).mean()),
            "accuracy": float((r[:, 0] > r[:, 1]).float().mean()),
        }

    def result(self, steps: list[dict]) -> dict[str, Any]:
        return {
            "ref_s": self.ref_s,  # adapters_off: reference passes inside train_s
            "reference": self.settings.reference,
            "reward_margin_first": steps[0]["margin"],
            "reward_margin_final": steps[-1]["margin"],
            "reward_accuracy_final": steps[-1]["accuracy"],
            "chosen_reward_final": steps[-1]["chosen_reward"],
            "rejected_reward_final": steps[-1]["rejected_reward"],
        }
