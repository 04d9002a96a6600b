"""Original-LLaVA checkpoints (LlavaLlamaForCausalLM, mm_projector) converted to llava-hf: the fixture's
original form converts back to exactly its llava-hf form, with the tower embedded or in a side folder."""
import json
import random
import shutil
from types import SimpleNamespace

import pytest

from matrix.models.handle import load
from matrix.models.llava_original import checkpoint_format, convert


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _same_model(a_dir, b_dir):
    """Same weights (bit for bit), same tokenizer ids, same greedy answers."""
    from matrix.world.scene import draw_scene, render

    a, b = load(a_dir), load(b_dir)
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sorted(sa) == sorted(sb)
    assert all(sa[k].dtype == sb[k].dtype and bool((sa[k] == sb[k]).all()) for k in sa)
    text = "USER: <image>\nIs there a red circle in the image? ASSISTANT: Yes</s>"
    assert a.tokenizer(text)["input_ids"] == b.tokenizer(text)["input_ids"]
    assert (a.tokenizer.pad_token_id, a.image_token_id, a.num_image_tokens) == \
        (b.tokenizer.pad_token_id, b.image_token_id, b.num_image_tokens)
    rng = random.Random(5)
    images = [render(draw_scene(rng)), render(draw_scene(rng)).resize((72, 40))]
    questions = ["Is there a red circle in the image?", "Describe the image."]
    assert a.generate(images, questions, max_new_tokens=8) == b.generate(images, questions, max_new_tokens=8)


def test_original_layout_as_llava_saves_it(llava_original):
    from safetensors import safe_open

    cfg = json.loads((llava_original / "config.json").read_text())
    assert cfg["architectures"] == ["LlavaLlamaForCausalLM"] and cfg["mm_projector_type"] == "mlp2x_gelu"
    assert cfg["image_aspect_ratio"] == "pad" and cfg["mm_vision_select_layer"] == -2 and cfg["vocab_size"] == 800
    with safe_open(str(llava_original / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
        assert f.get_slice("model.embed_tokens.weight").get_shape()[0] == 800  # no <image> / <pad> rows
    assert {"model.mm_projector.0.weight", "model.mm_projector.2.bias", "lm_head.weight", "model.norm.weight",
            "model.vision_tower.vision_tower.vision_model.embeddings.patch_embedding.weight"} <= keys
    assert not (llava_original / "tokenizer.json").exists() and (llava_original / "tokenizer.model").exists()
    assert checkpoint_format(llava_original) == "original"


def test_conversion_gives_back_the_llava_hf_model(llava_hf, llava_original, tmp_path):
    assert checkpoint_format(llava_hf) == "hf"
    summary = convert(llava_original, tmp_path / "converted")
    assert summary["vision_tower"] == "embedded" and summary["vocab_rows"] == 832
    _same_model(llava_hf, tmp_path / "converted")


def test_pytorch_bin_shards_as_llava_v1_5_7b_ships_them(llava_hf, llava_original, tmp_path):
    import torch
    from safetensors.torch import load_file

    src = tmp_path / "bin"
    shutil.copytree(llava_original, src)
    weights = load_file(str(src / "model.safetensors"))
    (src / "model.safetensors").unlink()
    keys = sorted(weights)
    shards = {"pytorch_model-00001-of-00002.bin": keys[::2], "pytorch_model-00002-of-00002.bin": keys[1::2]}
    for name, part in shards.items():
        torch.save({k: weights[k] for k in part}, src / name)
    (src / "pytorch_model.bin.index.json").write_text(json.dumps(
        {"weight_map": {k: name for name, part in shards.items() for k in part}}))
    convert(src, tmp_path / "converted")
    _same_model(llava_hf, tmp_path / "converted")


def test_a_vision_tower_in_a_side_folder(llava_hf, tmp_path):
    from matrix.models.llava_fixture import build

    src = build(tmp_path / "ckpt", "original", seed=0, vision_tower_dir=tmp_path / "clip-vit-336")
    from safetensors import safe_open

    with safe_open(str(src / "model.safetensors"), "pt") as f:
        assert not any(k.startswith("model.vision_tower") for k in f.keys())
    assert json.loads((src / "config.json").read_text())["mm_vision_tower"] == str(tmp_path / "clip-vit-336")
    convert(src, tmp_path / "converted")
    _same_model(llava_hf, tmp_path / "converted")
    shutil.rmtree(tmp_path / "clip-vit-336")
    with pytest.raises(FileNotFoundError, match="no vision tower weights and mm_vision_tower"):
        convert(src, tmp_path / "again")


def test_unmapped_variants_are_refused_by_name(llava_original, tmp_path):
    src = tmp_path / "linear"
    shutil.copytree(llava_original, src)
    cfg = json.loads((src / "config.json").read_text())
    (src / "config.json").write_text(json.dumps({**cfg, "mm_projector_type": "linear", "image_aspect_ratio": "square"}))
    with pytest.raises(ValueError, match="mm_projector_type 'linear'.*image_aspect_ratio 'square'"):
        convert(src, tmp_path / "out")


def test_the_llava_family_converts_in_its_model_stage(llava_hf, llava_original, tmp_path):
    from matrix.models.family import FAMILIES
    from matrix.spec import BaseModelSpec

    family = FAMILIES.get("llava")()
    hf_params = family.stage_params(BaseModelSpec(family="llava", path=llava_hf))
    assert "format" not in hf_params and family.model_dir(hf_params, tmp_path) == llava_hf
    params = {"family": "llava", "template": "vicuna_v1",
              **family.stage_params(BaseModelSpec(family="llava", path=llava_original))}
    assert params["format"] == "original"
    out = tmp_path / "artifact"
    result = family.materialise(params, out)
    assert result["source"] == "converted" and family.model_dir(params, out) == out / "model"
    assert json.loads((out / "model" / "matrix_model.json").read_text())["template"] == "vicuna_v1"
    _same_model(llava_hf, out / "model")
    # The runner's model stage records where the converted model is (inside its artifact).
    from matrix.runner.kinds.model import ModelStage

    stage_out = tmp_path / "stage"
    from matrix.runner.stage import StageContext

    rec = ModelStage().execute(params, {}, stage_out, StageContext(tmp_path, 1, 0, "k", "model"))
    assert rec["model_dir"] == "model" and rec["template"] == "vicuna_v1"


def test_a_spec_names_an_original_checkpoint_as_its_base_model(llava_original, tmp_path):
    from tests.runner.sweeps import matrix

    spec = tmp_path / "orig.yaml"
    spec.write_text(f"""\
name: orig
output_dir: {tmp_path / 'run'}
base_models:
  llava15: {{family: llava, path: {llava_original}}}
datasets:
  shapes: {{source: synthetic, kind: ocrvqa, size: 4}}
scales: [4]
methods: [baseline, gt-dpo]
benchmarks:
  - {{id: pope, synthetic: 4}}
tables:
  - id: main
    rows: [method]
    groups: [{{id: all, metrics: [{{id: pope, benchmark: pope, metric: f1}}]}}]
""")
    matrix("validate", spec)  # the family's file check accepts the original layout
    from matrix import api

    stages = {s.label: s for s in api.plan(api.load(spec)).graph.ordered()}
    model = stages["model llava15"]
    assert model.params["format"] == "original" and model.params["path"] == str(llava_original)
    # GT-DPO's training and the baseline's evaluation both start from that (converted) model stage.
    assert stages["train gt-dpo/llava15/shapes-4"].deps["model"].key == model.key
    assert stages["evaluate pope llava15 (base)"].deps["model"].key == model.key
