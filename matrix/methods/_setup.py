"""What the trainer sets up before its loop: trainable parameters, optimizer groups, lr schedule."""
from __future__ import annotations

import math

from matrix.methods.objectives.base import objective_class


def submodule(model, suffix: str):
    for name, module in model.named_modules():
        if name == suffix or name.endswith("." + suffix):
            return module
    raise AttributeError(f"model has no {suffix!r} module")


def disable_dropout(model) -> None:
    """SeVa's disable_dropout: DPO log-prob ratios must not be noised by dropout."""
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        for attr in ("attention_dropout", "dropout"):  # attention modules keep a float, not a module
            if isinstance(getattr(module, attr, None), float):
                setattr(module, attr, 0.0)


def prepare_model(model, hp: dict, objective, family, gradient_checkpointing: bool = False):
    """Freeze the vision tower; LoRA on the LLM (or the whole LLM trainable); projector per hp. The
    model family (`matrix.models.family`) names LoRA's targets and the projector. Trainable tensors are
    kept in fp32 whatever the loaded dtype (AdamW on bf16 weights loses small updates); the frozen
    rest stays in the dtype it was loaded in.

    `objective` (an objective, its class or its registered name): a deterministic one (DPO) trains with
    every dropout off. Returns the model to train: a PEFT wrapper under LoRA, `model` itself for a full
    fine-tune.
    """
    import torch

    deterministic = objective_class(objective).deterministic
    model.requires_grad_(False)
    if deterministic:
        disable_dropout(model)
    if gradient_checkpointing:
        # Recompute activations in backward (LLaVA trains 7B with it on); non-reentrant needs no input grads.
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    lora = hp.get("lora")
    if lora:
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(
            r=int(lora["r"]),
            lora_alpha=lora["alpha"],
            lora_dropout=0.0 if deterministic else float(lora.get("dropout", 0.0)),
            target_modules=family.lora_targets,
            bias="none",
        )
        wrapped = get_peft_model(model, config)
    else:
        # LLaVA's full fine-tune trains the whole LLM, embeddings and lm_head included.
        submodule(model, "language_model").requires_grad_(True)
        model.get_output_embeddings().requires_grad_(True)
        wrapped = model
    # LLaVA re-enables the projector after LoRA froze it ("in case it is frozen by LoRA", REFERENCE §0).
    if hp.get("train_projector", True):
        submodule(model, family.projector).requires_grad_(True)
    for p in wrapped.parameters():  # PEFT already keeps LoRA in fp32 (autocast_adapter_dtype)
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.float()
    return wrapped


def param_groups(model, weight_decay: float, lr: float | None = None, projector_lr: float | None = None,
                 projector=None) -> list[dict]:
    """HF Trainer's convention: no weight decay on biases and norm weights (the 1-D tensors). With a
    `projector_lr`, the parameters of `projector` (a module of `model`) form groups of their own at that
    peak lr, the rest at `lr`: LLaVA's `mm_projector_lr` (llava/train/llava_trainer.py create_optimizer,
    which SIMA's and CSR's trainers use). The lr schedule scales every group by the same factor."""
    mine = {id(p) for p in projector.parameters()} if projector_lr is not None and projector is not None else set()
    groups: dict[tuple[bool, bool], list] = {}
    for p in model.parameters():
        if p.requires_grad:
            groups.setdefault((id(p) in mine, p.ndim >= 2), []).append(p)
    out = []
    for is_projector in (False, True):
        for decays in (True, False):
            params = groups.get((is_projector, decays))
            if params:
                group = {"params": params, "weight_decay": weight_decay if decays else 0.0}
                if is_projector:
                    group.update(lr=projector_lr, name="projector")
                elif lr is not None:
                    group["lr"] = lr
                out.append(group)
    return out


def lr_lambda(scheduler: str, warmup: int, total: int):
    """Multiplier of the peak lr at optimizer step `s` (0-based): linear warmup from 0, then decay to 0."""
    if scheduler not in ("cosine", "linear", "constant"):
        raise ValueError(f"unknown scheduler {scheduler!r}; known: cosine, linear, constant")

    def factor(s: int) -> float:
        if s < warmup:
            return s / max(1, warmup)
        progress = min(1.0, (s - warmup) / max(1, total - warmup))
        if scheduler == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0 - progress if scheduler == "linear" else 1.0

    return factor


def gather_trainable(model, use_deepspeed: bool) -> dict:
    """Full fp32 copies of the trained tensors (PEFT names): the optimizer's fp32 masters under
    DeepSpeed (ZeRO shards and bf16 copies reassembled), the parameters themselves otherwise."""
    out = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        full = None
        if use_deepspeed:
            from deepspeed.utils import safe_get_full_fp32_param

            full = safe_get_full_fp32_param(p)  # None for stage 0 without bf16: p is the master
        out[name] = (p.detach() if full is None else full).float().cpu().clone()
    return out
