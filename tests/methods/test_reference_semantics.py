"""The trainer as the authors' codes run it: the projector at its own lr (LLaVA's mm_projector_lr, a
parameter group of its own), on the tiny model and on the real-architecture fixture."""
from __future__ import annotations

import pytest
import torch

from matrix.models.handle import load
from methods.base import METHODS
from methods.trainer import train_model
from tests.methods.conftest import make_records


def _max_change(before: dict, model, part: str) -> float:
    return max(float((p.detach() - before[n]).abs().max()) for n, p in model.named_parameters()
               if part in n and p.requires_grad)


def _one_adam_step(base, records, image_root, tmp_path, **hp) -> tuple[dict, object]:
    """Train one optimizer step and return (the trainable tensors before it, the trained model).

    Adam's first step moves every parameter by lr * g / (|g| + eps) (m-hat = g, v-hat = g^2), i.e. by its
    group's lr wherever |g| >> eps: the largest change of a group's parameters IS that group's lr, whatever
    the gradients' size (clipping scales m and sqrt(v) alike). Worked by hand from AdamW's update rule."""
    from methods._setup import prepare_model

    handle = load(base)
    initial = prepare_model(handle.model, hp, "sft", handle.family)
    before = {n: p.detach().clone() for n, p in initial.named_parameters() if p.requires_grad}
    examples, _ = METHODS.get("cont-sft")().construct(records, {}, {})
    torch.manual_seed(0)
    _, model = train_model(base, examples, image_root, "sft", hp, tmp_path)
    return before, model


def _hp(hp, n, **kw):
    return hp(lr=1e-4, epochs=1, batch_size=n, micro_batch_size=n, scheduler="constant", warmup_ratio=0.0,
              max_length=1024, lora={"r": 4, "alpha": 8, "dropout": 0.0}, **kw)


def test_projector_trains_at_its_own_lr_in_a_group_of_its_own(tiny_world, hp, tmp_path):
    records = tiny_world.records[:8]
    before, model = _one_adam_step(tiny_world.base, records, tiny_world.image_root, tmp_path / "sep",
                                   **_hp(hp, 8, projector_lr=1e-2))
    assert _max_change(before, model, "multi_modal_projector") == pytest.approx(1e-2, rel=1e-3)
    assert _max_change(before, model, "lora_B") == pytest.approx(1e-4, rel=1e-3)
    before, model = _one_adam_step(tiny_world.base, records, tiny_world.image_root, tmp_path / "same", **_hp(hp, 8))
    assert _max_change(before, model, "multi_modal_projector") == pytest.approx(1e-4, rel=1e-3)  # null: at lr


def test_param_groups_put_the_projector_in_its_own_groups(tiny_world, hp):
    from methods._setup import param_groups, prepare_model, submodule

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
