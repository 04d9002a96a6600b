"""Adding a model family is one file: this module holds the whole of a toy family, `toy-gray` (the
LLaVA-1.5 architecture fed grayscale images, built as a small tiny model), registers it, and uses it
the way a shipped family is used: named by a spec, planned into a `model` stage, materialised by that
stage, then loaded and fed by the model handle. No other file of the project names it."""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from matrix import api
from matrix.errors import SpecError
from matrix.models import handle, tiny
from matrix.models.families.llava import LlavaFamily
from matrix.registry import FAMILIES
from matrix.runner.kinds.model import ModelStage, model_dir


class GrayFamily(LlavaFamily):
    """LLaVA-1.5's loading, with the vision tower fed the grayscale of each image."""

    id = "toy-gray"
    default_template = "plain_v1"

    def stage_params(self, entry) -> dict[str, Any]:
        return {"seed": 3}  # what the model stage's key hashes

    def missing_files(self, entry) -> list[str]:
        return []

    def materialise(self, params: dict[str, Any], out_dir: Path) -> dict[str, Any]:
        texts = ["USER: <image>\nIs there a red circle? ASSISTANT: Yes</s>"] * 8
        tiny.build(out_dir / "model", texts, tiny.TinyArch(), seed=params["seed"])
        handle.write_meta(out_dir / "model", self.id, params["template"])  # how a directory finds its family
        return {"source": "built"}

    def model_dir(self, params: dict[str, Any], artifact_dir: Path) -> Path:
        return artifact_dir / "model"  # built inside the stage's artifact (llava's points at a local folder)

    def vision_inputs(self, h, images: list) -> dict:
        return super().vision_inputs(h, [im.convert("L").convert("RGB") for im in images])


@pytest.fixture
def toy():
    FAMILIES.register("toy-gray")(GrayFamily)
    yield GrayFamily
    FAMILIES.unregister("toy-gray")  # the tests after this one see the shipped families only


SPEC = """\
name: toy
output_dir: {out}
base_models:
  g: {{family: toy-gray}}
methods: [baseline]
benchmarks:
  - {{id: pope, synthetic: 4}}
"""


def test_a_spec_names_the_toy_family_and_plans_its_model_stage(toy, tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(textwrap.dedent(SPEC.format(out=tmp_path / "runs")))
    planned = api.plan(api.load(path))
    models = [s for s in planned.graph.stages.values() if s.kind == "model"]
    assert [(s.params["family"], s.params["template"], s.params["seed"]) for s in models] == [("toy-gray", "plain_v1", 3)]


def test_without_the_file_the_family_is_unknown(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(textwrap.dedent(SPEC.format(out=tmp_path / "runs")))
    with pytest.raises(SpecError, match="unknown model family 'toy-gray'"):
        api.load(path)


def test_the_model_stage_builds_it_and_the_handle_loads_and_feeds_it(toy, tmp_path):
    import torch

    stage = ModelStage()
    result = stage.run(ModelStage.Params(family="toy-gray", template="plain_v1", seed=3), {}, tmp_path, None)
    folder = model_dir(type("Input", (), {"dir": tmp_path, "result": result})())
    h = handle.load(folder)
    assert type(h.family) is GrayFamily  # found from the metadata the toy wrote, not by name
    red = Image.new("RGB", (48, 48), (220, 40, 40))
    gray = red.convert("L").convert("RGB")
    fed = h.vision_inputs([red])["pixel_values"]
    assert torch.equal(fed, h.vision_inputs([gray])["pixel_values"])  # the toy's own feeding
    assert not torch.equal(fed, LlavaFamily().vision_inputs(h, [red])["pixel_values"])  # not llava's
    assert len(h.generate([red], ["Is there a red circle?"], max_new_tokens=2)) == 1
