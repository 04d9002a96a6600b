"""The model family owns loading: which family a directory has, the dtype and device it loads in, and
the LoRA targets and projector that training takes from it."""
import json
import shutil

import pytest
from PIL import Image

from matrix.models import handle, tiny
from matrix.models.families.llava import LlavaFamily
from matrix.models.families.llava_next import LlavaNextFamily
from matrix.models.family import family_for


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny") / "model"
    tiny.build(d, ["USER: <image>\nIs there a red circle? ASSISTANT: Yes</s>"] * 8, tiny.TinyArch(), seed=0)
    handle.write_meta(d, "tiny", "plain_v1")
    return d


def test_a_directory_finds_its_family(model_dir, tmp_path):
    assert family_for(model_dir).id == "tiny"  # what matrix wrote beside it
    assert family_for(model_dir, "llava").id == "llava"  # a name given wins
    bare = tmp_path / "hf"
    shutil.copytree(model_dir, bare)
    (bare / handle.META_FILE).unlink()
    assert type(family_for(bare)) is LlavaFamily  # llava-hf without metadata: the general llava family
    config = json.loads((bare / "config.json").read_text())
    (bare / "config.json").write_text(json.dumps({**config, "model_type": "llava_next"}))
    assert type(family_for(bare)) is LlavaNextFamily
    (bare / "config.json").write_text(json.dumps({**config, "model_type": "qwen2_vl"}))
    with pytest.raises(ValueError, match="qwen2_vl.*belongs to no model family"):
        family_for(bare)


def test_load_puts_the_model_in_the_dtype_asked_for(model_dir):
    import torch

    h = handle.load(model_dir, dtype="bfloat16")
    assert {p.dtype for p in h.model.parameters()} == {torch.bfloat16} and h.model.device.type == "cpu"
    assert h.num_image_tokens == 9  # 48-pixel images in 16-pixel patches (TinyArch): 3 x 3
    pixels = h.vision_inputs([Image.new("RGB", (30, 20))])["pixel_values"]
    assert pixels.dtype == torch.bfloat16 and tuple(pixels.shape[-2:]) == (48, 48)


def test_training_wraps_the_modules_the_family_names(model_dir):
    """A family with other LoRA targets gets LoRA exactly there: the trainer asks the family."""
    from matrix.methods._setup import prepare_model

    class QueryOnly(LlavaFamily):
        lora_targets = r".*language_model.*\.q_proj"

    hp = {"lora": {"r": 2, "alpha": 4, "dropout": 0.0}, "train_projector": True}
    for family, targets in ((LlavaFamily(), {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                            "down_proj"}), (QueryOnly(), {"q_proj"})):
        h = handle.load(model_dir, dtype="bfloat16")
        wrapped = prepare_model(h.model, hp, "sft", family)
        trained = [n for n, p in wrapped.named_parameters() if p.requires_grad]
        assert {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in trained if ".lora_" in n} == targets
        assert any(".multi_modal_projector." in n for n in trained)
        # trained tensors in fp32 (AdamW on bf16 loses small updates); the frozen rest stays bf16
        assert all(p.dtype.is_floating_point and str(p.dtype) == "torch.float32"
                   for p in wrapped.parameters() if p.requires_grad)
        assert {str(p.dtype) for p in wrapped.parameters() if not p.requires_grad} == {"torch.bfloat16"}


def test_a_tiny_model_folder_given_by_path_is_used_as_it_is(model_dir, tmp_path):
    """`path` for the tiny family (a bootstrap candidate tried before shipping): the model stage points at
    that folder instead of building or copying the recipe's model; with `recipe` as well it is refused."""
    from pydantic import ValidationError

    from matrix.models.families.tiny import TinyFamily
    from matrix.spec import BaseModelSpec

    family = TinyFamily()
    given = BaseModelSpec(family="tiny", path=model_dir)
    params = family.stage_params(given)
    assert "recipe" not in params and params["path"] == str(model_dir.resolve())
    assert family.missing_files(given) == []
    assert family.materialise(params, tmp_path) == {"source": "external", "path": str(model_dir.resolve())}
    assert family.model_dir(params, tmp_path) == model_dir.resolve()
    assert not (tmp_path / "model").exists()  # nothing copied or built
    assert family.missing_files(BaseModelSpec(family="tiny", path=tmp_path / "nowhere"))[0].endswith(
        "put a llava-hf or original LLaVA checkpoint (config.json, weights, tokenizer) there")
    built = family.stage_params(BaseModelSpec(family="tiny"))  # without: the recipe, as before
    assert set(built) == {"recipe"} and family.model_dir(built, tmp_path) == tmp_path / "model"
    with pytest.raises(ValidationError, match="give 'path'.*or 'recipe'.*not both"):
        BaseModelSpec(family="tiny", path=model_dir, recipe={"steps": 10})
