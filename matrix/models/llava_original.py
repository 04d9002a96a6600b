"""Original-LLaVA checkpoints (`LlavaLlamaForCausalLM`, the layout of `liuhaotian/llava-v1.5-7b` and of the
released SeVa / SIMA / CSR weights) <-> the llava-hf layout the model handle loads.

The two layouts, as documented by LLaVA's `llava/model/` and by transformers' llava-hf models:

| original (LLaVA repo)                                  | llava-hf (`LlavaForConditionalGeneration`)         |
|--------------------------------------------------------|----------------------------------------------------|
| `model.embed_tokens`, `model.layers.*`, `model.norm`   | `model.language_model.*` (same names below)        |
| `lm_head` (32000 rows)                                 | `lm_head` (32064 rows: + `<image>`, `<pad>`, to 64) |
| `model.mm_projector.0` / `.2` (`mlp2x_gelu`)           | `model.multi_modal_projector.linear_1` / `linear_2` |
| `model.vision_tower.vision_tower.vision_model.*`, or   | `model.vision_tower.*`                             |
| the CLIP model that `mm_vision_tower` names            |                                                    |
| `mm_vision_select_layer` (-2)                          | `vision_feature_layer`                             |
| `mm_vision_select_feature` `patch` / `cls_patch`       | `vision_feature_select_strategy` `default` / `full` |
| `tokenizer.model`, pad = `<unk>`, image = index -200   | + `<image>` (id 32000), `<pad>` (32001)            |

The rows of the added tokens are set to the mean of the base vocabulary's rows (llava-hf's own
conversion samples them close to that mean; the mean keeps the conversion deterministic).

Where the CLIP tower comes from, in this order: weights embedded in the checkpoint
(`model.vision_tower.vision_tower.*`); else the folder `mm_vision_tower` names (a path, absolute or
relative to the checkpoint folder); else that name as a model in the local Hugging Face cache (never
downloaded). An embedded tower's shape is read from its weights; its head count comes from the named
folder's config when there is one, else CLIP's head width of 64.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

ARCHITECTURE = "LlavaLlamaForCausalLM"
VISION_PREFIX = "model.vision_tower.vision_tower."
# Llama fields of an original config that carry over to the llava-hf text config.
TEXT_FIELDS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
               "num_key_value_heads", "hidden_act", "max_position_embeddings", "rms_norm_eps", "rope_theta",
               "rope_scaling", "attention_bias", "initializer_range", "pretraining_tp", "bos_token_id", "eos_token_id")


def is_original(config: dict) -> bool:
    """An original-LLaVA config (its `model_type` is "llava" too, so the architecture and mm_* keys tell)."""
    return ARCHITECTURE in (config.get("architectures") or []) or "mm_projector_type" in config or \
        "mm_vision_tower" in config


def checkpoint_format(model_dir: Path) -> str:
    """'original' or 'hf' for a model folder with a config.json."""
    return "original" if is_original(json.loads((Path(model_dir) / "config.json").read_text())) else "hf"


# ---- writing (the test fixture's original form) -----------------------------------------------------
def save_original(model, out: Path, base_vocab: int, vision_tower_dir: Path | None = None) -> None:
    """Write a llava-hf `model` as the original LLaVA code saves it (weights and config; the tokenizer is
    the caller's). The tower is embedded, or written to `vision_tower_dir` and named by `mm_vision_tower`."""
    from safetensors.torch import save_file

    cfg = model.config
    text, vision = cfg.text_config, cfg.vision_config
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    weights = {}
    for name, tensor in model.state_dict().items():
        if name.startswith("model.language_model."):
            key = "model." + name[len("model.language_model."):]
        elif name.startswith("model.multi_modal_projector."):
            key = name.replace("multi_modal_projector.linear_1", "mm_projector.0").replace(
                "multi_modal_projector.linear_2", "mm_projector.2")
        elif name.startswith("model.vision_tower."):
            if vision_tower_dir is not None:
                continue
            key = VISION_PREFIX + "vision_model." + name[len("model.vision_tower."):]
        else:
            key = name
        if key in ("model.embed_tokens.weight", "lm_head.weight"):
            tensor = tensor[:base_vocab]
        weights[key] = tensor.detach().clone().contiguous()
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    tower_name = "openai/clip-vit-large-patch14-336"
    if vision_tower_dir is not None:
        from transformers import CLIPImageProcessorPil, CLIPVisionModel

        from matrix.models.llava_fixture import CLIP_MEAN, CLIP_STD

        tower = CLIPVisionModel(vision)
        tower.load_state_dict({k[len("model.vision_tower."):]: v for k, v in model.state_dict().items()
                               if k.startswith("model.vision_tower.")})
        tower.save_pretrained(vision_tower_dir)
        size = vision.image_size
        CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size},
                              image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD)).save_pretrained(vision_tower_dir)
        tower_name = str(Path(vision_tower_dir).resolve())
    config = {
        "architectures": [ARCHITECTURE], "model_type": "llava",
        **{k: getattr(text, k) for k in TEXT_FIELDS if getattr(text, k, None) is not None
           and k not in ("vocab_size", "rope_theta", "rope_scaling")},
        "vocab_size": base_vocab, "rope_scaling": None,  # LLaMA-2's default rotary base, as in LLaVA-1.5's config
        "pad_token_id": 0, "tie_word_embeddings": False, "torch_dtype": "float32",
        "use_cache": True, "freeze_mm_mlp_adapter": False, "tune_mm_mlp_adapter": False, "use_mm_proj": True,
        "image_aspect_ratio": "pad", "mm_hidden_size": vision.hidden_size, "mm_projector_type": "mlp2x_gelu",
        "mm_use_im_patch_token": False, "mm_use_im_start_end": False, "mm_vision_select_feature": "patch",
        "mm_vision_select_layer": cfg.vision_feature_layer, "mm_vision_tower": tower_name,
        "unfreeze_mm_vision_tower": False,
    }
    (out / "config.json").write_text(json.dumps(config, indent=1, default=str))


# ---- reading: conversion to llava-hf ----------------------------------------------------------------
def _read_weights(src: Path) -> dict:
    import torch
    from safetensors.torch import load_file

    files = sorted(src.glob("*.safetensors")) or sorted(src.glob("pytorch_model*.bin"))
    if not files:
        raise FileNotFoundError(f"{src}: no *.safetensors or pytorch_model*.bin weights")
    weights: dict = {}
    for f in files:
        part = load_file(str(f)) if f.suffix == ".safetensors" else torch.load(f, map_location="cpu", weights_only=True)
        weights.update(part)
    return weights


def _check_supported(src: Path, cfg: dict) -> None:
    problems = []
    if cfg.get("mm_projector_type", "linear") != "mlp2x_gelu":
        problems.append(f"mm_projector_type {cfg.get('mm_projector_type', 'linear')!r} (llava-hf LLaVA-1.5 has "
                        "the two-layer 'mlp2x_gelu' projector)")
    if cfg.get("mm_use_im_start_end") or cfg.get("mm_use_im_patch_token"):
        problems.append("mm_use_im_start_end / mm_use_im_patch_token (image start/end tokens)")
    if cfg.get("image_aspect_ratio", "pad") != "pad":
        problems.append(f"image_aspect_ratio {cfg.get('image_aspect_ratio')!r} (the handle pads to square: 'pad')")
    if cfg.get("mm_vision_select_feature", "patch") not in ("patch", "cls_patch"):
        problems.append(f"mm_vision_select_feature {cfg.get('mm_vision_select_feature')!r}")
    if problems:
        raise ValueError(f"{src / 'config.json'}: not a LLaVA-1.5 checkpoint this converter maps: "
                         + "; ".join(problems))


def _tower_folder(src: Path, name: str | None) -> Path | None:
    """The local folder `mm_vision_tower` names, or None."""
    if not name:
        return None
    for candidate in (Path(name).expanduser(), src / name):
        if (candidate / "config.json").exists():
            return candidate
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, local_files_only=True))
    except Exception:  # not a hub id, or not in the cache
        return None


def _vision_config(src: Path, cfg: dict, embedded: dict, folder: Path | None):
    from transformers import CLIPVisionConfig

    if folder is not None:
        return CLIPVisionConfig.from_pretrained(folder, local_files_only=True)
    if not embedded:
        raise FileNotFoundError(
            f"{src}: the checkpoint holds no vision tower weights and mm_vision_tower "
            f"{cfg.get('mm_vision_tower')!r} is neither a local folder (absolute, or relative to the checkpoint) "
            "nor in the local Hugging Face cache; put the CLIP model there")
    patch = embedded["embeddings.patch_embedding.weight"]
    positions = embedded["embeddings.position_embedding.weight"].shape[0]
    side = round((positions - 1) ** 0.5)
    layers = 1 + max(int(m.group(1)) for k in embedded if (m := re.match(r"encoder\.layers\.(\d+)\.", k)))
    hidden = patch.shape[0]
    return CLIPVisionConfig(hidden_size=hidden, intermediate_size=embedded["encoder.layers.0.mlp.fc1.weight"].shape[0],
                            num_hidden_layers=layers, num_attention_heads=max(1, hidden // 64),
                            image_size=side * patch.shape[2], patch_size=patch.shape[2], projection_dim=hidden)


def _processor_stats(folder: Path | None) -> tuple[list, list]:
    from matrix.models.llava_fixture import CLIP_MEAN, CLIP_STD

    pre = folder / "preprocessor_config.json" if folder is not None else None
    if pre is not None and pre.exists():
        data = json.loads(pre.read_text())
        return data.get("image_mean", list(CLIP_MEAN)), data.get("image_std", list(CLIP_STD))
    return list(CLIP_MEAN), list(CLIP_STD)


def convert(src: Path, out: Path) -> dict:
    """Write the original-LLaVA checkpoint `src` as a llava-hf model folder `out`; returns a summary."""
    import torch
    from safetensors.torch import save_file
    from transformers import GenerationConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    from matrix.models.llava_fixture import llava_processor, llava_tokenizer, padded_vocab

    src, out = Path(src), Path(out)
    cfg = json.loads((src / "config.json").read_text())
    if not is_original(cfg):
        raise ValueError(f"{src / 'config.json'}: not an original-LLaVA config (no {ARCHITECTURE} / mm_* keys)")
    _check_supported(src, cfg)
    weights = _read_weights(src)
    tokenizer = llava_tokenizer(src)
    base_vocab = len(tokenizer) - 2
    if weights["model.embed_tokens.weight"].shape[0] != base_vocab:
        raise ValueError(f"{src}: embeddings have {weights['model.embed_tokens.weight'].shape[0]} rows, the "
                         f"tokenizer {base_vocab} tokens")

    embedded = {}
    for k in [k for k in weights if k.startswith(VISION_PREFIX)]:
        rest = k[len(VISION_PREFIX):]
        embedded[rest[len("vision_model."):] if rest.startswith("vision_model.") else rest] = weights.pop(k)
    folder = _tower_folder(src, cfg.get("mm_vision_tower"))
    vision_config = _vision_config(src, cfg, embedded, folder)
    if not embedded:
        from transformers import CLIPVisionModel

        embedded = CLIPVisionModel.from_pretrained(folder, local_files_only=True).state_dict()
    dtype = weights["model.embed_tokens.weight"].dtype

    text = LlamaConfig(**{k: cfg[k] for k in TEXT_FIELDS if cfg.get(k) is not None})
    text.vocab_size = padded_vocab(len(tokenizer))
    text.pad_token_id, text.tie_word_embeddings = tokenizer.pad_token_id, False
    config = LlavaConfig(
        vision_config=vision_config, text_config=text, image_token_id=base_vocab,
        vision_feature_layer=cfg.get("mm_vision_select_layer", -2),
        vision_feature_select_strategy="full" if cfg.get("mm_vision_select_feature") == "cls_patch" else "default",
        projector_hidden_act="gelu", tie_word_embeddings=False)

    tensors = {}
    for k, v in weights.items():
        if k.startswith("model.mm_projector."):
            k = k.replace("model.mm_projector.0.", "model.multi_modal_projector.linear_1.").replace(
                "model.mm_projector.2.", "model.multi_modal_projector.linear_2.")
        elif k.startswith("model."):
            k = "model.language_model." + k[len("model."):]
        if k.endswith("rotary_emb.inv_freq"):
            continue
        tensors[k] = v
    tensors.update({"model.vision_tower." + k: v.to(dtype) for k, v in embedded.items()})
    if "lm_head.weight" not in tensors:  # a tied checkpoint saves the embeddings once
        tensors["lm_head.weight"] = tensors["model.language_model.embed_tokens.weight"].clone()
    for k in ("model.language_model.embed_tokens.weight", "lm_head.weight"):
        rows = tensors[k]
        extra = rows.float().mean(0, keepdim=True).to(rows.dtype).expand(text.vocab_size - base_vocab, -1)
        tensors[k] = torch.cat([rows, extra])

    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in LlavaForConditionalGeneration(config).state_dict().items()}
    got = {k: tuple(v.shape) for k, v in tensors.items()}
    if got != expected:
        missing, unexpected = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
        wrong = sorted(k for k in set(got) & set(expected) if got[k] != expected[k])
        raise ValueError(f"{src}: weights do not map onto llava-hf: missing {missing[:5]}, unexpected "
                         f"{unexpected[:5]}, wrong shapes {[(k, got[k], expected[k]) for k in wrong[:5]]}")

    out.mkdir(parents=True, exist_ok=True)
    config.dtype = dtype
    config.save_pretrained(out)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(out / "model.safetensors"), metadata={"format": "pt"})
    GenerationConfig(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                     pad_token_id=tokenizer.pad_token_id).save_pretrained(out)
    mean, std = _processor_stats(folder)
    llava_processor(tokenizer, vision_config.image_size, vision_config.patch_size, mean, std).save_pretrained(out)
    return {"converted_from": "original", "vision_tower": "embedded" if folder is None else str(folder),
            "base_vocab": base_vocab, "vocab_rows": text.vocab_size, "dtype": str(dtype).replace("torch.", "")}
