"""The real-architecture LLaVA-1.5 fixture (matrix.models.llava_fixture): what transformers loads from it,
its LLaMA-style tokenizer, and the supervision tokens a conversation gets on that tokenizer."""
import random

import pytest

from matrix.models.conversation import IGNORE_INDEX, get_template, tokenize_prompt
from matrix.models.handle import load


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _images():
    from matrix.world.scene import draw_scene, render

    rng = random.Random(3)
    return [render(draw_scene(rng)), render(draw_scene(rng)).resize((80, 48)), render(draw_scene(rng)).resize((30, 64))]


def test_transformers_loads_it_as_llava_1_5(llava_hf):
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    model = LlavaForConditionalGeneration.from_pretrained(llava_hf)
    processor = AutoProcessor.from_pretrained(llava_hf)
    cfg, tok = model.config, processor.tokenizer
    assert (cfg.vision_config.image_size, cfg.vision_config.patch_size) == (336, 14)
    assert (cfg.vision_feature_layer, cfg.vision_feature_select_strategy) == (-2, "default")
    # LLaVA's vocabulary layout: <image> and <pad> right after the base vocabulary, rows padded to 64.
    assert len(tok) == 802 and tok.convert_tokens_to_ids("<image>") == 800 == cfg.image_token_id
    assert tok.pad_token == "<pad>" and tok.pad_token_id == 801
    assert cfg.text_config.vocab_size == 832 and model.get_input_embeddings().weight.shape[0] == 832
    assert (tok.bos_token_id, tok.eos_token_id, tok.unk_token_id) == (1, 2, 0)
    ip = processor.image_processor
    assert ip.image_mean == pytest.approx([0.48145466, 0.4578275, 0.40821073])
    assert ip.image_std == pytest.approx([0.26862954, 0.26130258, 0.27577711])
    image = _images()[1]
    out = processor(text="<image>\nWhat is it?", images=[image], return_tensors="pt")
    assert tuple(out["pixel_values"].shape) == (1, 3, 336, 336)
    # (336 / 14)^2 = 576 image tokens, as the processor expands them and as the handle counts them.
    assert int((out["input_ids"][0] == 800).sum()) == 576 == load(llava_hf).num_image_tokens


def test_same_seed_same_files_other_seed_other_weights(llava_hf, tmp_path):
    from matrix.models.llava_fixture import build

    again = build(tmp_path / "again", "hf", seed=0)
    names = sorted(p.name for p in llava_hf.iterdir())
    assert names == sorted(p.name for p in again.iterdir())
    assert all((llava_hf / n).read_bytes() == (again / n).read_bytes() for n in names)
    other = build(tmp_path / "other", "hf", seed=1)
    assert (other / "model.safetensors").read_bytes() != (llava_hf / "model.safetensors").read_bytes()


def test_tokenizer_tokenises_as_sentencepiece_does(llava_hf):
    """Golden ids from the official tool: the sentencepiece library on the same tokenizer.model."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(llava_hf / "tokenizer.model"))
    tok = load(llava_hf).tokenizer
    texts = ["USER: Is there a red circle in the image? ASSISTANT: Yes", " Yes", "  two  spaces",
             "Count 12 shapes.\nAnswer the question using a single word or phrase.", "请直接回答选项字母。"]
    for text in texts:
        assert tok(text, add_special_tokens=False)["input_ids"] == sp.encode(text), text


def test_an_answer_tokenised_alone_starts_with_a_stray_prefix(llava_hf):
    """What makes per-segment encoding wrong on LLaMA's tokenizer (and on this one)."""
    tok = load(llava_hf).tokenizer

    def pieces(text):
        return tok.convert_ids_to_tokens(tok(text, add_special_tokens=False)["input_ids"])

    assert pieces(" Yes</s>") == ["▁", "▁Yes", "</s>"]
    assert pieces("ASSISTANT: Yes</s>") == ["▁ASSISTANT", ":", "▁Yes", "</s>"]


def test_supervised_tokens_are_the_answers_in_the_whole_conversation(llava_hf):
    handle = load(llava_hf)
    tok = handle.tokenizer
    conversations = [
        [{"from": "human", "value": "<image>\nIs there a red circle in the image?"}, {"from": "gpt", "value": "Yes"}],
        [{"from": "human", "value": "<image>\nWhat color is the square?"}, {"from": "gpt", "value": "blue"},
         {"from": "human", "value": "Is there a red circle in the image?"},
         {"from": "gpt", "value": "Yes, at the top left.\nThere are 12 of them!"}],
    ]
    # Hand-worked: each answer's pieces in the whole text (no lone "▁" before them), then </s>.
    first_answers = [[["▁Yes", "</s>"]], [["▁blue", "</s>"]]]
    for conv, expected_first in zip(conversations, first_answers):
        ids, labels = handle.encode_conversation(conv)
        text = "".join(t for t, _ in handle.template.segments(conv))
        # The ids are the whole text's tokens (BOS first, <image> expanded): what generation reads too.
        assert ids == tokenize_prompt(tok, text, handle.image_token_id, handle.num_image_tokens)
        assert ids.count(handle.image_token_id) == 576
        runs, current = [], []
        for i, lab in zip(ids, labels):
            assert lab in (IGNORE_INDEX, i)
            if lab != IGNORE_INDEX:
                current.append(i)
            elif current:
                runs.append(current)
                current = []
        runs += [current] if current else []
        answers = [t["value"] for t in conv if t["from"] == "gpt"]
        assert len(runs) == len(answers)
        assert [tok.convert_ids_to_tokens(runs[0])] == expected_first
        for run, answer in zip(runs, answers):
            assert tok.convert_ids_to_tokens(run)[0] != "▁"
            assert tok.decode(run) == f"{answer}</s>"  # every character of the answer and nothing else


def test_generation_batched_equals_one_at_a_time(llava_hf):
    handle = load(llava_hf)
    images, questions = _images(), ["Is there a red circle in the image?", "What color is the square?", "Describe."]
    batched = handle.generate(images, questions, max_new_tokens=6, batch_size=3)
    single = [handle.generate([im], [q], max_new_tokens=6)[0] for im, q in zip(images, questions)]
    assert batched == single and all(isinstance(a, str) for a in batched)
    assert handle.template == get_template("vicuna_v1")
