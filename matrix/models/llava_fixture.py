"""A scaled-down LLaVA-1.5 with the real architecture, for tests: built offline in seconds, random weights.

What a user loads as `llava-hf/llava-1.5-7b-hf`, at toy widths: `LlavaForConditionalGeneration` with a CLIP
vision tower at 336 px / patch 14 (576 image tokens, features from the second-to-last layer, CLS
dropped), LLaVA-1.5's two-layer GELU projector, a Llama text model, and the llava-1.5 processor (CLIP's
mean/std; the model handle pads images to square as LLaVA-1.5 does). The tokenizer is LLaMA's kind: a
SentencePiece BPE model trained here with LLaMA's settings (dummy prefix, byte fallback, identity
normalisation, split digits; <unk> <s> </s> = 0 1 2), converted by transformers as LLaMA's is, with
LLaVA's vocabulary layout on top: `<image>` and `<pad>` added after the base vocabulary and the
embedding matrix padded to a multiple of 64 (llava-1.5-7b-hf: 32000 + 2 tokens, 32064 rows).

`--format original` writes the same model as the original LLaVA code saves it (`LlavaLlamaForCausalLM`,
the layout of `liuhaotian/llava-v1.5-7b`): see `matrix.models.llava_original`, whose conversion gives
back this module's llava-hf form exactly. The rows of the added tokens hold the mean of the base
vocabulary's rows, which is what that conversion writes, so the two forms are the same model.
"""
from __future__ import annotations

import io
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

# OpenAI CLIP's normalisation (the processor of openai/clip-vit-large-patch14-336 and of llava-hf).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGE_TOKEN = "<image>"
PAD_TOKEN = "<pad>"
VOCAB_PAD_MULTIPLE = 64  # llava-hf pads the embeddings to a multiple of 64 rows


@dataclass(frozen=True)
class FixtureArch:
    image_size: int = 336
    patch_size: int = 14
    vision_hidden: int = 64  # one head of 64: CLIP's head width, so an embedded tower's heads can be inferred
    vision_heads: int = 1
    vision_layers: int = 2  # LLaVA-1.5 reads the second-to-last layer
    text_hidden: int = 64
    text_intermediate: int = 128
    text_layers: int = 2
    text_heads: int = 4
    base_vocab: int = 800
    max_positions: int = 2048


def _corpus(seed: int) -> list[str]:
    """Text the tokenizer is trained on: the synthetic world's phrasings and LLaVA's prompt words."""
    from matrix.models.bootstrap_mix import tokenizer_corpus
    from matrix.models.conversation import TEMPLATES
    from matrix.world.scene import COLOURS, SHAPES

    lines = [t.replace(IMAGE_TOKEN, "").replace("</s>", "").strip() for t in tokenizer_corpus("vicuna_v1", seed, 300)]
    lines += [t.system for t in TEMPLATES.values() if t.system]
    lines += ["Yes", "No", *SHAPES, *COLOURS] * 50  # short answers are frequent in LLaMA's training text too
    return [line for line in lines if line]


def train_sentencepiece(seed: int, vocab_size: int) -> bytes:
    """A SentencePiece BPE model with LLaMA's trainer settings (its serialised bytes)."""
    import sentencepiece as spm

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_corpus(seed)), model_writer=buf, model_type="bpe", vocab_size=vocab_size,
        byte_fallback=True, add_dummy_prefix=True, normalization_rule_name="identity",
        remove_extra_whitespaces=False, split_digits=True, character_coverage=1.0, allow_whitespace_only_pieces=True,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, num_threads=1, minloglevel=2, seed_sentencepiece_size=100_000,
        shuffle_input_sentence=False, hard_vocab_limit=True)
    return buf.getvalue()


def write_original_tokenizer(out: Path, sp_model: bytes) -> None:
    """The tokenizer files of an original LLaVA / Vicuna checkpoint: the SentencePiece model, no `<image>`."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "tokenizer.model").write_bytes(sp_model)
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "LlamaTokenizer", "add_bos_token": True, "add_eos_token": False, "legacy": False,
        "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": None,
        "model_max_length": 2048, "padding_side": "right", "clean_up_tokenization_spaces": False}, indent=1))
    # LLaVA's v1 conversations pad with <unk> (train.py sets pad_token = unk_token).
    (out / "special_tokens_map.json").write_text(json.dumps(
        {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<unk>"}, indent=1))


def _sentencepiece_pipeline(tok) -> None:
    """Give a tokenizer converted from a SentencePiece model the pipeline of LLaMA's published
    tokenizer.json (and of llava-hf's): the dummy prefix prepended to every text piece and spaces as `▁`,
    no pre-tokenizer, byte fallback; it tokenises as SentencePiece itself does. (transformers 5's
    LlamaTokenizer builds a Metaspace pre-tokenizer instead, which tokenises some texts differently.)"""
    from tokenizers import decoders, normalizers, processors

    raw = tok._tokenizer
    raw.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    raw.pre_tokenizer = None
    raw.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    bos = (tok.bos_token, tok.bos_token_id)
    raw.post_processor = processors.TemplateProcessing(single=f"{bos[0]}:0 $A:0",
                                                       pair=f"{bos[0]}:0 $A:0 {bos[0]}:1 $B:1", special_tokens=[bos])


def llava_tokenizer(tokenizer_dir: Path):
    """LLaMA's tokenizer from `tokenizer_dir` (a SentencePiece model, converted by transformers, with
    SentencePiece's own pipeline) with the tokens llava-hf adds after the base vocabulary: `<image>`, then
    `<pad>` as the padding token."""
    from transformers import AddedToken, LlamaTokenizer

    tok = LlamaTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)
    _sentencepiece_pipeline(tok)  # original LLaVA trains and evaluates with the SentencePiece tokenizer itself
    base = len(tok)
    tok.add_tokens(AddedToken(IMAGE_TOKEN, special=True, normalized=False), special_tokens=True)
    tok.add_special_tokens({"pad_token": PAD_TOKEN})
    tok.padding_side = "left"
    if tok.convert_tokens_to_ids(IMAGE_TOKEN) != base or tok.pad_token_id != base + 1:
        raise ValueError(f"{tokenizer_dir}: <image> and <pad> did not land right after the base vocabulary ({base})")
    return tok


def llava_processor(tokenizer, image_size: int, patch_size: int, mean=CLIP_MEAN, std=CLIP_STD):
    """The llava-1.5 processor: CLIP preprocessing at `image_size` (PIL backend: no torchvision needed)."""
    from transformers import CLIPImageProcessorPil, LlavaProcessor

    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size},
        image_mean=list(mean), image_std=list(std))
    return LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=patch_size,
                          vision_feature_select_strategy="default", num_additional_image_tokens=1)


def padded_vocab(n_tokens: int) -> int:
    return -(-n_tokens // VOCAB_PAD_MULTIPLE) * VOCAB_PAD_MULTIPLE


def fill_added_rows(model, base_vocab: int) -> None:
    """Rows past the base vocabulary (`<image>`, `<pad>`, the padding to 64) := the mean of the base rows,
    in the input embeddings and the LM head. (llava-hf's conversion samples them near that mean; the
    mean itself keeps the conversion deterministic, and its logit never beats the largest one.)"""
    import torch

    with torch.no_grad():
        for weight in (model.get_input_embeddings().weight, model.get_output_embeddings().weight):
            weight[base_vocab:] = weight[:base_vocab].mean(0, keepdim=True)


def build_hf_model(arch: FixtureArch, tokenizer, seed: int):
    import torch
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    torch.manual_seed(seed)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=arch.vision_hidden, intermediate_size=4 * arch.vision_hidden,
            num_hidden_layers=arch.vision_layers, num_attention_heads=arch.vision_heads,
            image_size=arch.image_size, patch_size=arch.patch_size, projection_dim=arch.vision_hidden),
        text_config=LlamaConfig(
            vocab_size=padded_vocab(len(tokenizer)), hidden_size=arch.text_hidden,
            intermediate_size=arch.text_intermediate, num_hidden_layers=arch.text_layers,
            num_attention_heads=arch.text_heads, num_key_value_heads=arch.text_heads,
            max_position_embeddings=arch.max_positions, rms_norm_eps=1e-5, tie_word_embeddings=False,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id),
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        vision_feature_select_strategy="default", vision_feature_layer=-2,
        projector_hidden_act="gelu", tie_word_embeddings=False)
    model = LlavaForConditionalGeneration(config)
    fill_added_rows(model, arch.base_vocab)
    gen = model.generation_config
    gen.bos_token_id, gen.eos_token_id, gen.pad_token_id = (
        tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id)
    return model


def build(out: Path, fmt: str = "hf", seed: int = 0, arch: FixtureArch = FixtureArch(),
          vision_tower_dir: Path | None = None) -> Path:
    """Write the fixture to `out` in llava-hf form (`fmt="hf"`) or original-LLaVA form (`"original"`).

    The original form embeds the CLIP tower in its weights, unless `vision_tower_dir` is given: the tower
    is then written there as a CLIP model folder and the config's `mm_vision_tower` names that path.
    """
    if fmt not in ("hf", "original"):
        raise ValueError(f"unknown fixture format {fmt!r}; expected 'hf' or 'original'")
    out = Path(out)
    sp_model = train_sentencepiece(seed, arch.base_vocab)
    with tempfile.TemporaryDirectory() as tmp:
        write_original_tokenizer(Path(tmp), sp_model)
        tokenizer = llava_tokenizer(Path(tmp))
    if len(tokenizer) != arch.base_vocab + 2:
        raise ValueError(f"tokenizer has {len(tokenizer)} tokens; expected {arch.base_vocab} + 2")
    model = build_hf_model(arch, tokenizer, seed)
    if out.exists():
        shutil.rmtree(out)
    if fmt == "hf":
        model.save_pretrained(out)
        llava_processor(tokenizer, arch.image_size, arch.patch_size).save_pretrained(out)
        (out / "tokenizer.model").write_bytes(sp_model)  # llava-hf ships it beside tokenizer.json
    else:
        from matrix.models.llava_original import save_original

        save_original(model, out, arch.base_vocab, vision_tower_dir)
        write_original_tokenizer(out, sp_model)
    return out


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="folder to write (replaced if it exists)")
    parser.add_argument("--format", choices=("hf", "original"), default="hf",
                        help="llava-hf layout (default) or original LLaVA (LlavaLlamaForCausalLM)")
    parser.add_argument("--seed", type=int, default=0, help="weights' seed (same seed, same files)")
    parser.add_argument("--vision-tower-dir", type=Path, default=None,
                        help="original format: write the CLIP tower to this folder and reference it from "
                             "mm_vision_tower, instead of embedding it in the weights")
    args = parser.parse_args(argv)
    if args.vision_tower_dir is not None and args.format != "original":
        parser.error("--vision-tower-dir applies to --format original")
    path = build(args.out, args.format, args.seed, vision_tower_dir=args.vision_tower_dir)
    print(f"wrote {args.format} LLaVA fixture to {path}")
