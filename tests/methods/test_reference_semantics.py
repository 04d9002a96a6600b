"""The trainer as the authors' codes run it: the projector at its own lr (LLaVA's mm_projector_lr, a
parameter group of its own), on the tiny model and on the real-architecture fixture."""
from __future__ import annotations

import pytest
import torch

from matrix.models.handle import load
from matrix.methods.base import METHODS
from matrix.methods.trainer import train_model
from tests.methods.conftest import make_records


def _max_change(before: dict, model, part: str) -> float:
    return max(float((p.detach() - before[n]).abs().max()) for n, p in model.named_parameters()
               if part in n and p.requires_grad)


def _one_adam_step(base, records, image_root, tmp_path, **hp) -> tuple[dict, object]:
    """Train one optimizer step and return (the trainable tensors before it, the trained model).

    Adam's first step moves every parameter by lr * g / (|g| + eps) (m-hat = g, v-hat = g^2), i.e. by its
    group's lr wherever |g| >> eps: the largest change of a group's parameters IS that group's lr, whatever
    the gradients' size (clipping scales m and sqrt(v) alike). Worked by hand from AdamW's update rule."""
    from matrix.methods._setup import prepare_model

    handle = load(base)
    initial = prepare_model(handle.model, hp, "sft", handle.family)
    before = {n: p.detach().clone() for n, p in initial.named_parameters() if p.requires_grad}
    examples, _ = METHODS.get("cont-sft")().construct(records, {}, {})
    torch.manual_seed(0)
    _, model = train_model(base, examples, image_root, "sft", hp, tmp_path)
    return before, model


def _hp(hp, n, **kw):
    return hp(**{"lr": 1e-4, "epochs": 1, "batch_size": n, "micro_batch_size": n, "scheduler": "constant",
                 "warmup_ratio": 0.0, "max_length": 1024, "lora": {"r": 4, "alpha": 8, "dropout": 0.0}, **kw})


def test_projector_trains_at_its_own_lr_in_a_group_of_its_own(tiny_world, hp, tmp_path):
    records = tiny_world.records[:8]
    before, model = _one_adam_step(tiny_world.base, records, tiny_world.image_root, tmp_path / "sep",
                                   **_hp(hp, 8, projector_lr=1e-2))
    assert _max_change(before, model, "multi_modal_projector") == pytest.approx(1e-2, rel=1e-3)
    assert _max_change(before, model, "lora_B") == pytest.approx(1e-4, rel=1e-3)
    before, model = _one_adam_step(tiny_world.base, records, tiny_world.image_root, tmp_path / "same", **_hp(hp, 8))
    assert _max_change(before, model, "multi_modal_projector") == pytest.approx(1e-4, rel=1e-3)  # null: at lr


def test_param_groups_put_the_projector_in_its_own_groups(tiny_world, hp):
    from matrix.methods._setup import param_groups, prepare_model, submodule

    handle = load(tiny_world.base)
    model = prepare_model(handle.model, _hp(hp, 8), "sft", handle.family)
    projector = submodule(model, handle.family.projector)
    groups = param_groups(model, 0.1, 1e-7, 2e-5, projector)
    mine = {id(p) for p in projector.parameters()}
    assert [(g.get("name"), g["lr"], g["weight_decay"]) for g in groups] == [
        (None, 1e-7, 0.1), ("projector", 2e-5, 0.1), ("projector", 2e-5, 0.0)]  # LoRA has no 1-D tensors
    assert all((id(p) in mine) == (g.get("name") == "projector") for g in groups for p in g["params"])
    assert sum(len(g["params"]) for g in groups) == sum(p.requires_grad for p in model.parameters())


def test_projector_lr_on_the_real_architecture(llava_hf, hp, tmp_path):
    """The llava-hf fixture (LLaMA tokenizer, 576 image tokens): the same group lrs under ZeRO-2."""
    root = tmp_path / "data"
    records = make_records(root, 2, seed=3)
    before, model = _one_adam_step(llava_hf, records, root, tmp_path / "ckpt",
                                   **_hp(hp, 2, projector_lr=1e-2, deepspeed={"stage": 2}))
    assert _max_change(before, model, "multi_modal_projector") == pytest.approx(1e-2, rel=1e-3)
    assert _max_change(before, model, "lora_B") == pytest.approx(1e-4, rel=1e-3)


# ---- the DPO reference: precomputed (initial projector) or adapters_off (current projector) ----------
def _loop(base, records, image_root, hp, reference):
    """A trainer loop on gt-dpo pairs, as `_train` builds it (plain PyTorch, fp32)."""
    from matrix.methods._data import BatchMaker, encode_examples
    from matrix.methods._setup import prepare_model
    from matrix.methods.engine import PlainEngine
    from matrix.methods.objectives.base import OBJECTIVES
    from matrix.methods.trainer import Loop

    greedy = {f"{r['id']}:{q}": "purple" for r in records for q in (0, 1)}  # always wrong: every pair kept
    examples, _ = METHODS.get("gt-dpo")().construct(records, {"greedy": greedy}, {"repeat": 1})
    handle = load(base)
    h = {**hp, "reference": reference}
    objective = OBJECTIVES.get("dpo").from_hp(h)
    encoded, _ = encode_examples(handle, examples, objective, h["max_length"], image_root)
    model = prepare_model(handle.model, h, objective, handle.family)
    engine = PlainEngine(model, None, None, torch.device("cpu"), torch.float32, bf16=False, max_grad_norm=1.0)
    loop = Loop(objective, h, encoded, engine, BatchMaker(handle, image_root, h["max_length"], engine.device, engine.dtype))
    return loop, handle


def _policy_logps(loop, idxs):
    with torch.no_grad():
        logits, batch = loop.logits(loop.objective.pairs(loop, idxs))
        from matrix.methods.objectives.losses import sequence_logps

        return sequence_logps(logits, batch["labels"]).view(2, -1)


@torch.no_grad()
def _perturb(model, part: str, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        if part in name and p.requires_grad:
            p.add_(torch.randn(p.shape, generator=g) * 0.05)


def _check_reference_semantics(base, records, image_root, hp):
    idxs = [0, 1, 2]
    pre, _ = _loop(base, records, image_root, hp, "precomputed")
    pre.objective.prepare(pre)
    off, _ = _loop(base, records, image_root, hp, "adapters_off")
    start_pre, start_off = pre.objective.reference_logps(pre, idxs).clone(), off.objective.reference_logps(off, idxs).clone()
    # Before any step the two agree: LoRA B = 0, so the policy with or without adapters is the initial model.
    assert torch.allclose(start_pre, start_off, atol=1e-4)
    # LoRA moves: the policy changes, neither reference does (adapters_off switches LoRA off).
    for loop in (pre, off):
        _perturb(loop.model, "lora_B", seed=1)
    assert not torch.allclose(_policy_logps(off, idxs), start_off, atol=1e-2)
    assert torch.allclose(off.objective.reference_logps(off, idxs), start_off, atol=1e-5)
    assert torch.equal(pre.objective.reference_logps(pre, idxs), start_pre)
    # The projector moves: adapters_off's reference follows it (the current projector), precomputed's does not.
    for loop in (pre, off):
        _perturb(loop.model, "multi_modal_projector", seed=2)
    assert not torch.allclose(off.objective.reference_logps(off, idxs), start_off, atol=1e-2)
    assert torch.equal(pre.objective.reference_logps(pre, idxs), start_pre)
    # ...and equals the base model with that projector and no LoRA at all.
    with off.model.disable_adapter():
        assert torch.allclose(_policy_logps(off, idxs), off.objective.reference_logps(off, idxs), atol=1e-5)


def test_adapters_off_reference_follows_the_projector_and_precomputed_does_not(tiny_world, hp):
    _check_reference_semantics(tiny_world.base, tiny_world.records[:4], tiny_world.image_root,
                               _hp(hp, 4))


def test_reference_semantics_on_the_real_architecture(llava_hf, hp, tmp_path):
    root = tmp_path / "data"
    records = make_records(root, 2, seed=4)
    _check_reference_semantics(llava_hf, records, root, _hp(hp, 2))


def test_adapters_off_training_records_its_reference_and_first_loss_is_ln2(tiny_world, hp, tmp_path):
    import math

    records = tiny_world.records[:4]
    greedy = {f"{r['id']}:{q}": "purple" for r in records for q in (0, 1)}
    examples, _ = METHODS.get("gt-dpo")().construct(records, {"greedy": greedy}, {"repeat": 1})
    result, _ = train_model(tiny_world.base, examples, tiny_world.image_root, "dpo",
                            _hp(hp, 8, reference="adapters_off"), tmp_path)
    assert result["reference"] == "adapters_off" and result["ref_s"] > 0
    assert result["final_loss"] == pytest.approx(math.log(2), abs=1e-5)  # one step: policy == reference
    with pytest.raises(ValueError, match="without LoRA"):
        train_model(tiny_world.base, examples, tiny_world.image_root, "dpo",
                    {**_hp(hp, 8, reference="adapters_off"), "lora": None}, tmp_path / "full")


def test_adapters_off_reference_under_zero3_on_the_real_architecture(llava_hf, hp, tmp_path):
    """disable_adapter() inside a ZeRO-3 engine's forward (parameters gathered per layer): two steps, the
    first at ln 2 (policy == reference), the second moved by the first step."""
    import math

    root = tmp_path / "data"
    records = make_records(root, 2, seed=5)
    for r in records:
        rejected = [dict(t) for t in r["conversations"]]
        rejected[1]["value"] = "purple" if rejected[1]["value"] != "purple" else "red"
        r["rejected_conversations"] = rejected
    result, _ = train_model(llava_hf, records, root, "dpo",
                            _hp(hp, 2, epochs=2, lr=1e-3, deepspeed={"stage": 3}, reference="adapters_off"),
                            tmp_path / "ckpt")
    assert (result["steps"], result["deepspeed_stage"], result["reference"]) == (2, 3, "adapters_off")
    assert result["reward_margin_first"] == 0.0
    assert math.isfinite(result["final_loss"]) and result["final_loss"] != pytest.approx(math.log(2), abs=1e-6)


# ---- SIMA's rejected-answer scoring (rejected_logps: top_other_token) --------------------------------
def test_top_other_logps_worked_by_hand():
    """Two scored positions: at the first the top-1 token IS the label (2), so the top-2 one (0) is
    scored; at the second the top-1 (3) is not the label (1), so it is scored."""
    from matrix.methods.objectives.losses import top_other_logps

    logits = torch.tensor([[[1.0, 0.0, 3.0, -1.0],    # predicts labels[1] = 2: top-1 = 2 = label -> token 0
                            [0.0, 1.0, 0.5, 2.0],     # predicts labels[2] = 1: top-1 = 3 -> token 3
                            [9.0, 9.0, 9.0, 9.0]]])   # predicts nothing (no label after it)
    labels = torch.tensor([[-100, 2, 1]])
    by_hand = (1.0 - torch.logsumexp(torch.tensor([1.0, 0.0, 3.0, -1.0]), 0)) \
        + (2.0 - torch.logsumexp(torch.tensor([0.0, 1.0, 0.5, 2.0]), 0))
    assert float(top_other_logps(logits, labels)[0]) == pytest.approx(float(by_hand), abs=1e-6)
    # by hand: 1 - ln(e + 1 + e^3 + e^-1) = 1 - ln 24.1717 = -2.1852; 2 - ln(1 + e + e^0.5 + e^2) =
    # 2 - ln 12.7561 = -0.5460
    assert float(by_hand) == pytest.approx(-2.1852 - 0.5460, abs=1e-3)


def test_sima_scoring_applies_to_the_rejected_half_for_policy_and_reference(tiny_world, hp):
    from matrix.methods.objectives.losses import sequence_logps, top_other_logps

    records = tiny_world.records[:4]
    for reference in ("precomputed", "adapters_off"):
        loop, _ = _loop(tiny_world.base, records, tiny_world.image_root,
                        _hp(hp, 4, rejected_logps="top_other_token"), reference)
        idxs = [0, 1, 2]
        with torch.no_grad():
            logits, batch = loop.logits(loop.objective.pairs(loop, idxs))
        got = loop.objective.pair_logps(logits, batch["labels"])
        assert torch.allclose(got[0], sequence_logps(logits[:3], batch["labels"][:3]))
        assert torch.allclose(got[1], top_other_logps(logits[3:], batch["labels"][3:]))
        assert not torch.allclose(got[1], sequence_logps(logits[3:], batch["labels"][3:]), atol=1e-3)
        if reference == "precomputed":
            loop.objective.prepare(loop)
        # before any step the reference is the initial policy: it scores the rejected half the same way
        assert torch.allclose(loop.objective.reference_logps(loop, idxs), got, atol=1e-5)


def test_sima_in_context_critic_runs_on_the_real_architecture(llava_hf, tmp_path):
    """SIMA's critic prompt with its two in-context examples, asked of the llava-hf fixture (LLaMA
    tokenizer, 576 image tokens): it fits the context and yields one reply per pair."""
    from matrix.methods.base import Env

    root = tmp_path / "data"
    records = make_records(root, 2, seed=6)
    items = [f"{r['id']}:{q}" for r in records for q in (0, 1)]
    greedy = dict.fromkeys(items, "red")
    sampled = dict.fromkeys(items, "A blue square.\nIt is large.")
    env = Env(image_root=root, model_dir=llava_hf, template="vicuna_v1")
    examples, stats = METHODS.get("sima")().construct(records, {"greedy": greedy, "sampled": sampled},
                                                      {"critic_max_new_tokens": 3}, env)
    assert stats["judged"] == 4 and stats["verdict_1"] + stats["verdict_2"] + stats["dropped_unparseable"] == 4
    from matrix.methods.sima import critic_prompt

    text = critic_prompt("What color is the circle?", "red", sampled[items[0]], "red", examples=True)
    n = len(env.loaded.encode_prompt(text, (32, 32)))
    assert 576 + 300 < n < env.loaded.model.config.text_config.max_position_embeddings  # both examples, in context
