"""Training objectives on causal-LM logits: SFT cross-entropy, summed sequence log-probs, sigmoid DPO.

All take `labels` aligned with `input_ids` (IGNORE_INDEX on everything but answer tokens) and do
the one-position shift themselves: the logit at position t predicts the token at t+1. Losses are
computed in float32 whatever the model's dtype, since bf16 log-softmax sums lose several digits.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from matrix.models.conversation import IGNORE_INDEX

if TYPE_CHECKING:
    import torch


def _shift(logits: "torch.Tensor", labels: "torch.Tensor") -> tuple["torch.Tensor", "torch.Tensor"]:
    return logits[:, :-1, :].float(), labels[:, 1:]


def token_logps(logits: "torch.Tensor", labels: "torch.Tensor") -> tuple["torch.Tensor", "torch.Tensor"]:
    """(log p(label_t | <t) per shifted position, mask of labelled positions); both (B, T-1)."""
    import torch

    logits, labels = _shift(logits, labels)
    mask = labels != IGNORE_INDEX
    safe = torch.where(mask, labels, torch.zeros_like(labels))  # IGNORE_INDEX is no valid index
    # log_softmax gathered at the label, without materialising a second (B, T, V) tensor
    picked = logits.gather(-1, safe.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)
    return picked * mask, mask


def sft_loss(logits: "torch.Tensor", labels: "torch.Tensor") -> "torch.Tensor":
    """Mean next-token cross-entropy over labelled tokens of the batch (LLaVA's SFT loss).

    A batch without any labelled token gives a zero loss that still depends on the logits, so a
    backward pass stays valid (the loss would be NaN otherwise).
    """
    import torch.nn.functional as F

    logits, labels = _shift(logits, labels)
    if not bool((labels != IGNORE_INDEX).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=IGNORE_INDEX)


def sequence_logps(logits: "torch.Tensor", labels: "torch.Tensor") -> "torch.Tensor":
    """Per-sequence SUM of the labelled tokens' log-probs, shape (B,) — SeVa's average_log_prob=False."""
    picked, _ = token_logps(logits, labels)
    return picked.sum(-1)


def dpo_loss(
    policy_chosen: "torch.Tensor",
    policy_rejected: "torch.Tensor",
    ref_chosen: "torch.Tensor",
    ref_rejected: "torch.Tensor",
    beta: float,
) -> tuple["torch.Tensor", "torch.Tensor", "torch.Tensor"]:
    """Sigmoid DPO: mean of -log σ(β·[(πc − πr) − (refc − refr)]).

    Returns (loss, chosen_reward, rejected_reward) with rewards β·(π − ref) per pair, detached:
    they are what is logged (margin = chosen − rejected), not what is optimised.
    """
    import torch.nn.functional as F

    logits = (policy_chosen - policy_rejected) - (ref_chosen - ref_rejected)
    loss = -F.logsigmoid(beta * logits).mean()
    chosen_reward = beta * (policy_chosen - ref_chosen).detach()
    rejected_reward = beta * (policy_rejected - ref_rejected).detach()
    return loss, chosen_reward, rejected_reward
