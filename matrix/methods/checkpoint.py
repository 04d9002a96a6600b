"""The train stage's checkpoint layout, and loading it back as a ready model.

    <ckpt>/adapter/                          PEFT LoRA adapter (absent for a full fine-tune)
    <ckpt>/non_lora_trainables.safetensors   every other trained tensor (the projector; the LM too
                                             when training without LoRA), named as in the base model
    <ckpt>/train.json                        hyper-parameters, per-step losses, the result dict

Loading follows LLaVA's builder order: base model, then the non-LoRA weights, then the adapter,
then merge, so the result is a plain `LlavaForConditionalGeneration` again.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from matrix.models.handle import ModelHandle, load

if TYPE_CHECKING:
    import torch

ADAPTER_DIR = "adapter"
NON_LORA_FILE = "non_lora_trainables.safetensors"
TRAIN_LOG = "train.json"
PEFT_PREFIX = "base_model.model."  # what PeftModel puts before the wrapped model's parameter names


def split_trainable(named: dict[str, "torch.Tensor"]) -> tuple[dict[str, "torch.Tensor"], dict[str, "torch.Tensor"]]:
    """Split trained tensors (PEFT-model names) into (LoRA tensors, others renamed to base-model names)."""
    lora, other = {}, {}
    for name, tensor in named.items():
        if ".lora_" in name:
            lora[name] = tensor
        else:
            other[name[len(PEFT_PREFIX):] if name.startswith(PEFT_PREFIX) else name] = tensor
    return lora, other


def save(out_dir: Path, peft_model, named: dict[str, "torch.Tensor"]) -> None:
    """Write the adapter (if `peft_model` is a PEFT model) and the non-LoRA trained tensors.

    `named` holds full fp32 tensors already gathered from wherever training kept them (ZeRO shards,
    bf16 masters), so saving never depends on the live model's partitioning or dtype.
    """
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    lora, other = split_trainable(named)
    if lora:
        peft_model.save_pretrained(out_dir / ADAPTER_DIR, state_dict=lora, safe_serialization=True)
    save_file({k: v.detach().float().contiguous().cpu() for k, v in other.items()}, str(out_dir / NON_LORA_FILE))


def load_trained(
    base_model_dir: Path,
    ckpt_dir: Path,
    template: str | None = None,
    *,
    dtype: str = "float32",
    device: str = "cpu",
    family: str | None = None,
) -> ModelHandle:
    """The base model (on `device`, in `dtype`) with the checkpoint's trained weights loaded and its
    LoRA adapter merged."""
    from safetensors.torch import load_file

    ckpt_dir = Path(ckpt_dir)
    weights = ckpt_dir / NON_LORA_FILE
    if not weights.exists():
        raise FileNotFoundError(f"{weights}: missing; expected a checkpoint written by matrix.methods.trainer.train")
    handle = load(Path(base_model_dir), template=template, dtype=dtype, device=device, family=family)
    model = handle.model
    state = load_file(str(weights))
    unknown = sorted(set(state) - set(model.state_dict()))
    if unknown:
        raise ValueError(f"{weights}: tensors not in the base model {base_model_dir}: {unknown[:5]}")
    target_dtype = next(model.parameters()).dtype
    model.load_state_dict({k: v.to(target_dtype) for k, v in state.items()}, strict=False)
    if (ckpt_dir / ADAPTER_DIR).exists():
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, ckpt_dir / ADAPTER_DIR, is_trainable=False).merge_and_unload()
    handle.model = model.to(device).eval()
    return handle


def save_model_dir(handle: ModelHandle, src_dir: Path, out_dir: Path, dtype: str | None = None) -> None:
    """Write a loaded (merged) model as a llava-hf model directory: weights and config, the tokenizer,
    processor and generation settings of the model directory it was loaded from, and matrix's family /
    template note (`matrix_model.json`, ignored by transformers). `dtype`: cast the weights first."""
    import shutil

    from matrix.models.handle import read_meta, write_meta

    model = handle.model
    if dtype is not None:
        import torch

        model = model.to(getattr(torch, dtype))
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir, safe_serialization=True)
    for item in Path(src_dir).iterdir():  # tokenizer, processor and generation settings of the input model
        if item.is_file() and not item.name.startswith("model") and item.name != "config.json":
            shutil.copy2(item, out_dir / item.name)
    meta = read_meta(src_dir)
    write_meta(out_dir, handle.family.id, handle.template.name,
               **{k: v for k, v in meta.items() if k not in ("family", "template")})

