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


def top_other_logps(logits: "torch.Tensor", labels: "torch.Tensor") -> "torch.Tensor":
    """Per-sequence SUM over labelled positions of log p(the model's most likely token that is not the
    label) — SIMA's `_get_noisy_batch_logps` (umd-huang-lab/SIMA tool/dpo_trainer.py), with which SIMA scores
    its REJECTED answers, for policy and reference alike: at each position the top-1 token of these logits,
    or the top-2 one where the top-1 is the label itself. The rejected answer's own tokens are never scored."""
    import torch

    logits, labels = _shift(logits, labels)
    mask = labels != IGNORE_INDEX
    top2 = logits.topk(2, dim=-1).indices
    other = torch.where(top2[..., 0] == labels, top2[..., 1], top2[..., 0])
    picked = logits.gather(-1, other.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)
    return (picked * mask).sum(-1)


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


def topk_reference(logits: "torch.Tensor", labels: "torch.Tensor", k: int) -> list[tuple["torch.Tensor", "torch.Tensor"]]:
    """Per sequence, at each labelled (shifted) position: the reference's top-k token ids and their
    log-probs, as ((P, k) int32 ids, (P, k) float32 log-probs) on the CPU.

    The full next-token distributions of a training set do not fit in memory (N x T x V floats), so
    the reference pass keeps the k most likely tokens per supervised position; `topk_kl` then puts
    all remaining mass into one "rest" bin.
    """
    import torch

    logits, labels = _shift(logits, labels)
    mask = labels != IGNORE_INDEX
    out = []
    for b in range(logits.size(0)):
        logp = torch.log_softmax(logits[b][mask[b]], dim=-1)
        values, ids = logp.topk(min(k, logp.size(-1)), dim=-1)
        out.append((ids.to(torch.int32).cpu(), values.float().cpu()))
    return out


def _log_rest(top_logp: "torch.Tensor") -> "torch.Tensor":
    """log(1 - sum(exp(top_logp))) along the last axis, kept finite when the top-k hold all the mass."""
    import torch

    total = torch.logsumexp(top_logp, dim=-1).clamp(max=-1e-7)
    return torch.log(-torch.expm1(total))


def topk_kl(
    logits: "torch.Tensor", labels: "torch.Tensor", ref: list[tuple["torch.Tensor", "torch.Tensor"]]
) -> "torch.Tensor":
    """Mean over the batch's labelled tokens of KL(pi_theta || pi_ref), both distributions coarsened to
    the reference's top-k tokens plus one bin for the rest of the vocabulary.

    Coarsening can only lose divergence (data-processing inequality), so this is a lower bound of the
    full per-token KL, exact when the top-k carry all the reference mass; it is >= 0, zero when the
    policy equals the reference, and differentiable in the policy's logits at every position. (The
    one-sample estimator log pi_theta(y_t) - log pi_ref(y_t) on the supervised tokens would need
    tokens drawn from pi_theta; on ground-truth tokens it is biased and, minimised, fights the SFT term.)
    """
    import torch

    logits, labels = _shift(logits, labels)
    mask = labels != IGNORE_INDEX
    terms = []
    for b in range(logits.size(0)):
        ids, ref_logp = ref[b]
        logq = torch.log_softmax(logits[b][mask[b]], dim=-1)
        if logq.size(0) != ids.size(0):
            raise ValueError(f"reference has {ids.size(0)} supervised positions, the batch {logq.size(0)}")
        ids, ref_logp = ids.to(logq.device).long(), ref_logp.to(logq.device)
        q_top = logq.gather(-1, ids)
        q_rest, p_rest = _log_rest(q_top), _log_rest(ref_logp)
        kl = (q_top.exp() * (q_top - ref_logp)).sum(-1) + q_rest.exp() * (q_rest - p_rest)
        terms.append(kl)
    if not terms or sum(t.numel() for t in terms) == 0:
        return logits.sum() * 0.0
    return torch.cat(terms).mean()
