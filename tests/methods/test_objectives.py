import math

import pytest
import torch

from matrix.models.conversation import IGNORE_INDEX
from matrix.methods.objectives.losses import dpo_loss, sequence_logps, sft_loss


def test_dpo_loss_matches_hand_computation():
    beta = 0.5
    pc, pr = torch.tensor([-2.0, -1.0]), torch.tensor([-5.0, -1.0])
    rc, rr = torch.tensor([-3.0, -1.0]), torch.tensor([-4.0, -1.0])
    loss, chosen_reward, rejected_reward = dpo_loss(pc, pr, rc, rr, beta)
    # pair 1: (πc−πr) − (refc−refr) = (−2+5) − (−3+4) = 3 − 1 = 2; β·2 = 1; −log σ(1) = log(1 + e^−1)
    # pair 2: every term equal, so the argument is 0 and the loss is −log σ(0) = log 2
    expected = (math.log(1 + math.exp(-1)) + math.log(2)) / 2  # 0.50320...
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    # rewards β·(π − ref): pair 1 chosen 0.5·(−2+3) = 0.5, rejected 0.5·(−5+4) = −0.5; pair 2 zero
    assert chosen_reward.tolist() == pytest.approx([0.5, 0.0])
    assert rejected_reward.tolist() == pytest.approx([-0.5, 0.0])
    assert not chosen_reward.requires_grad


def test_dpo_loss_is_log2_when_policy_equals_reference():
    x, y = torch.tensor([-3.0, -7.0]), torch.tensor([-4.0, -2.0])
    loss, _, _ = dpo_loss(x, y, x.clone(), y.clone(), beta=0.1)
    assert loss.item() == pytest.approx(math.log(2))


def test_sequence_logps_sums_labelled_tokens():
    # One sequence of 3 tokens over a vocabulary of 2. The logit at t predicts the token at t+1.
    logits = torch.tensor([[[math.log(3.0), 0.0], [0.0, 0.0], [5.0, -5.0]]])
    # position 0 predicts labels[1] = 0: p = 3/(3+1) = 3/4; position 1 predicts labels[2] = 1: p = 1/2
    labels = torch.tensor([[IGNORE_INDEX, 0, 1]])
    assert sequence_logps(logits, labels).item() == pytest.approx(math.log(3 / 4) + math.log(1 / 2))
    # masking the first answer token leaves only log(1/2); the last logit never predicts anything
    masked = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 1]])
    assert sequence_logps(logits, masked).item() == pytest.approx(math.log(1 / 2))
    batch = sequence_logps(logits.repeat(2, 1, 1), torch.cat([labels, masked]))
    assert batch.shape == (2,)


def test_sft_loss_ignores_masked_tokens():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7)
    labels = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 3, 4, IGNORE_INDEX], [IGNORE_INDEX, 1, IGNORE_INDEX, IGNORE_INDEX, 6]])
    loss = sft_loss(logits, labels)
    # hand: mean over the 4 labelled targets of −log softmax(logits[b, t−1])[labels[b, t]]
    logp = torch.log_softmax(logits, -1)
    targets = [(0, 2, 3), (0, 3, 4), (1, 1, 1), (1, 4, 6)]
    expected = -sum(logp[b, t - 1, y] for b, t, y in targets) / len(targets)
    assert loss.item() == pytest.approx(expected.item(), abs=1e-6)
    # changing logits that predict masked targets changes nothing
    other = logits.clone()
    other[0, 0] += 100.0  # predicts labels[0, 1], masked
    other[1, 2] -= 50.0  # predicts labels[1, 3], masked
    other[:, -1] += 9.0  # the last position predicts nothing
    assert sft_loss(other, labels).item() == pytest.approx(loss.item(), abs=1e-6)


def test_sft_loss_without_labels_is_zero_and_differentiable():
    logits = torch.randn(1, 4, 3, requires_grad=True)
    loss = sft_loss(logits, torch.full((1, 4), IGNORE_INDEX))
    loss.backward()
    assert loss.item() == 0.0 and logits.grad is not None


def test_topk_kl_matches_hand_computation():
    import math

    import torch

    from matrix.models.conversation import IGNORE_INDEX
    from matrix.methods.objectives.losses import topk_kl

    # One supervised position (label at t=1 is predicted by the logits at t=0); policy uniform over 3
    # tokens; reference keeps top-1 = token 0 with p = 0.5, so its rest bin holds 0.5.
    logits = torch.zeros(1, 2, 3, requires_grad=True)
    labels = torch.tensor([[IGNORE_INDEX, 2]])
    ref = [(torch.tensor([[0]], dtype=torch.int32), torch.tensor([[math.log(0.5)]]))]
    kl = topk_kl(logits, labels, ref)
    # KL = 1/3 ln((1/3)/0.5) + 2/3 ln((2/3)/0.5) = -0.135155 + 0.191788 = 0.056633
    assert kl.item() == pytest.approx(1 / 3 * math.log(2 / 3) + 2 / 3 * math.log(4 / 3), abs=1e-6)
    assert kl.item() == pytest.approx(0.056633, abs=1e-6)
    kl.backward()
    assert logits.grad[0, 0].abs().sum() > 0 and logits.grad[0, 1].abs().sum() == 0  # only the supervised position


def test_topk_kl_is_exact_with_the_whole_vocabulary_and_a_lower_bound_otherwise():
    import torch

    from matrix.models.conversation import IGNORE_INDEX
    from matrix.methods.objectives.losses import topk_kl, topk_reference

    g = torch.Generator().manual_seed(0)
    ref_logits, pol_logits = torch.randn(2, 5, 7, generator=g), torch.randn(2, 5, 7, generator=g)
    labels = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 1, 2, 3], [IGNORE_INDEX, 4, 5, IGNORE_INDEX, IGNORE_INDEX]])
    mask = labels[:, 1:] != IGNORE_INDEX
    logq, logp = pol_logits[:, :-1].log_softmax(-1)[mask], ref_logits[:, :-1].log_softmax(-1)[mask]
    exact = (logq.exp() * (logq - logp)).sum(-1).mean()
    full = topk_kl(pol_logits, labels, topk_reference(ref_logits, labels, 7))
    assert full.item() == pytest.approx(exact.item(), abs=1e-5)
    partial = topk_kl(pol_logits, labels, topk_reference(ref_logits, labels, 2))
    assert 0.0 <= partial.item() <= exact.item() + 1e-6
    same = topk_kl(ref_logits, labels, topk_reference(ref_logits, labels, 2))
    assert same.item() == pytest.approx(0.0, abs=1e-6)
