"""The tiny offline LLaVA: a CLIP tower + Llama small enough to train on 2 CPU cores.

Everything is built locally: a byte-level BPE tokenizer trained in-process on the synthetic world's
text, a `LlavaConfig`, and a `LlavaProcessor` around `CLIPImageProcessorPil` (no torchvision).
The randomly initialised model is then bootstrapped by SFT (see `matrix.models.bootstrap`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>", "<image>"]

# Per-channel pixel mean/std of the synthetic world's images (light backgrounds, small shapes). CLIP's
# defaults map those near-white images to one large constant feature that drowns the shapes, and the
# language model then takes thousands of steps to start reading the image (a long loss plateau).
WORLD_PIXEL_MEAN = (0.930, 0.913, 0.903)
WORLD_PIXEL_STD = (0.159, 0.178, 0.210)


@dataclass(frozen=True)
class TinyArch:
    image_size: int = 48
    patch_size: int = 16
    vision_hidden: int = 64
    vision_layers: int = 1
    vision_heads: int = 4
    text_hidden: int = 128
    text_layers: int = 2
    text_heads: int = 4
    text_kv_heads: int = 2
    text_mlp_ratio: int = 4
    vocab_size: int = 640
    max_positions: int = 512
    image_mean: tuple[float, ...] = WORLD_PIXEL_MEAN
    image_std: tuple[float, ...] = WORLD_PIXEL_STD
    init_std: float = 0.02
    tie_embeddings: bool = False

    @property
    def num_image_tokens(self) -> int:
        return (self.image_size // self.patch_size) ** 2


def build_tokenizer(corpus: list[str], vocab_size: int):
    """Train a byte-level BPE on `corpus` and wrap it as a transformers fast tokenizer (BOS added)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        extra_special_tokens={"image_token": "<image>"},
        padding_side="left",
    )


def build_processor(tokenizer, arch: TinyArch):
    from transformers import CLIPImageProcessorPil, LlavaProcessor

    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": arch.image_size},
        crop_size={"height": arch.image_size, "width": arch.image_size},
        image_mean=list(arch.image_mean),
        image_std=list(arch.image_std),
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=arch.patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    )


def build_model(tokenizer, arch: TinyArch, seed: int):
    import torch
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    torch.manual_seed(seed)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=arch.vision_hidden,
            intermediate_size=arch.vision_hidden * 4,
            num_hidden_layers=arch.vision_layers,
            num_attention_heads=arch.vision_heads,
            image_size=arch.image_size,
            patch_size=arch.patch_size,
        ),
        text_config=LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=arch.text_hidden,
            intermediate_size=arch.text_hidden * arch.text_mlp_ratio,
            num_hidden_layers=arch.text_layers,
            num_attention_heads=arch.text_heads,
            num_key_value_heads=arch.text_kv_heads,
            max_position_embeddings=arch.max_positions,
            initializer_range=arch.init_std,
            tie_word_embeddings=arch.tie_embeddings,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
        tie_word_embeddings=arch.tie_embeddings,
    )
    model = LlavaForConditionalGeneration(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    return model


def grow_text_layers(model, n: int, seed: int) -> None:
    """Append `n` decoder layers to the language model, each starting as the identity: its attention
    output and MLP down projections are zero, so the grown model computes exactly what it did, and
    training can give the new layers work the old ones have no depth for (a multiple-choice option's
    letter after working out the answer; DESIGN.md, the tiny model, says what that gave). As LLaMA
    Pro's block expansion; the other weights are drawn with std 0.02, as in the experiments that
    tried it (the recipe's larger `init_std` is for training from scratch)."""
    import torch
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    lm = model.model.language_model
    cfg = lm.config
    first = len(lm.layers)
    generator = torch.Generator().manual_seed(seed)
    for i in range(first, first + n):
        layer = LlamaDecoderLayer(cfg, i)
        with torch.no_grad():
            for name, weight in layer.named_parameters():
                if "norm" not in name:
                    weight.normal_(0.0, 0.02, generator=generator)
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        lm.layers.append(layer)
    cfg.num_hidden_layers = first + n
    model.config.text_config.num_hidden_layers = first + n


def build(out_dir: Path, corpus: list[str], arch: TinyArch, seed: int) -> None:
    """Write a randomly initialised tiny LLaVA (model + processor) to `out_dir`."""
    tokenizer = build_tokenizer(corpus, arch.vocab_size)
    processor = build_processor(tokenizer, arch)
    model = build_model(tokenizer, arch, seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
