"""The `llava` family through training on the real-architecture fixture (576 image tokens per example,
LLaMA's tokenizer): SFT and DPO with LoRA under DeepSpeed ZeRO-2 and ZeRO-3, the checkpoint loaded back,
and a `merge` stage's whole model answering as the checkpoint does."""
import math
from types import SimpleNamespace

import pytest

from matrix.models.handle import load
from tests.methods.conftest import make_records


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("llava-data")
    records = make_records(root, 4, seed=2)
    for r in records:  # a DPO pair: ground truth chosen, a wrong first answer rejected
        rejected = [dict(t) for t in r["conversations"]]
        rejected[1]["value"] = "purple" if rejected[1]["value"] != "purple" else "red"
        r["rejected_conversations"] = rejected
    return root, records


def _hp(hp, stage, objective):
    # SFT: one micro-batch, so the step's loss is a token mean over the whole batch (as transformers' is).
    return hp(deepspeed={"stage": stage}, epochs=1, batch_size=4, micro_batch_size=4 if objective == "sft" else 2,
              max_length=1024, lr=1e-3, lora={"r": 4, "alpha": 8, "dropout": 0.0})


def _hf_loss(base_dir, records, root):
    """transformers' own loss of the base model on the same examples (mean over supervised tokens)."""
    import torch

    from matrix.methods._data import BatchMaker, encode_examples

    handle = load(base_dir)
    encoded, dropped = encode_examples(handle, records, "sft", 1024, root)
    assert dropped == 0
    batch = BatchMaker(handle, root, 1024, torch.device("cpu"), torch.float32)([e[0] for e in encoded])
    with torch.no_grad():
        return float(handle.model(**batch).loss)


@pytest.mark.parametrize("objective,stage", [("sft", 2), ("sft", 3), ("dpo", 2), ("dpo", 3)])
def test_lora_training_under_zero(llava_hf, data, hp, tmp_path, objective, stage):
    from matrix.methods.checkpoint import load_trained
    from matrix.methods.trainer import train

    root, records = data
    result = train(llava_hf, records, root, objective, _hp(hp, stage, objective), tmp_path / "ckpt", template="vicuna_v1")
    assert (result["deepspeed_stage"], result["steps"], result["examples"]) == (stage, 1, 4)
    assert result["dropped_truncated"] == 0 and result["trainable_params"] > 0
    if objective == "dpo":
        # At the first step the policy is the reference (LoRA B = 0): the loss is -log sigmoid(0) = ln 2.
        assert result["final_loss"] == pytest.approx(math.log(2), abs=1e-5)
    else:
        # The first step's loss is the base model's mean answer-token loss as transformers computes it.
        assert result["final_loss"] == pytest.approx(_hf_loss(llava_hf, records, root), rel=1e-4)
    handle = load_trained(llava_hf, tmp_path / "ckpt", template="vicuna_v1")
    from PIL import Image

    with Image.open(root / records[0]["image"]) as im:
        answer = handle.generate([im.convert("RGB")], ["What color is the circle?"], max_new_tokens=4)
    assert len(answer) == 1


def test_merge_stage_answers_as_the_checkpoint(llava_hf, data, hp, tmp_path):
    from PIL import Image

    from matrix.methods.checkpoint import load_trained
    from matrix.methods.trainer import train
    from matrix.runner.kinds.merge import MergeStage

    root, records = data
    cfg = hp(deepspeed=None, epochs=2, batch_size=4, micro_batch_size=4, max_length=1024, lr=5e-2,
             lora={"r": 4, "alpha": 8, "dropout": 0.0})
    train(llava_hf, records, root, "sft", cfg, tmp_path / "ckpt", template="vicuna_v1")
    model_input = SimpleNamespace(dir=llava_hf.parent, result={"model_dir": llava_hf.name, "template": "vicuna_v1"})
    out = tmp_path / "merged"
    out.mkdir()
    from matrix.runner.stage import StageContext

    MergeStage().execute({}, {"model": model_input, "checkpoint": SimpleNamespace(dir=tmp_path / "ckpt")}, out,
                         StageContext(tmp_path, 1, 0, "k", "merge"))
    merged, trained, base = load(out), load_trained(llava_hf, tmp_path / "ckpt", template="vicuna_v1"), load(llava_hf)
    assert merged.template.name == "vicuna_v1" and merged.tokenizer.pad_token_id == 801
    images = []
    for r in records:
        with Image.open(root / r["image"]) as im:
            images.append(im.convert("RGB"))
    questions = [r["conversations"][0]["value"].replace("<image>\n", "") for r in records]
    answers = merged.generate(images, questions, max_new_tokens=6)
    assert answers == trained.generate(images, questions, max_new_tokens=6)
    q = "model.language_model.layers.0.self_attn.q_proj.weight"
    assert not bool((merged.model.state_dict()[q] == base.model.state_dict()[q]).all())  # LoRA was merged in
