"""Model families: how a base model named in a spec becomes a model directory, and how that directory
becomes a loaded model the stages can feed.

A family turns its spec entry into the normalised parameters of the `model` stage (what its cache key
hashes), materialises the model (build it, or check an external checkpoint), says where the model
directory is, and owns everything architecture-specific about using it: loading it onto a device in
a dtype (`load`), how many image tokens an image becomes (`image_tokens`), what the vision tower is
fed (`vision_inputs`), and which modules LoRA wraps (`lora_targets`) beside the projector trained in
full (`projector`). `matrix.models.handle` only calls these, so adding a family is one new file in
`matrix/models/families/`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from matrix.registry import FAMILIES  # noqa: F401  (the core's registry; families register into it)

if TYPE_CHECKING:
    from matrix.models.handle import ModelHandle

# REFERENCE §0: LLaVA's LoRA wraps every Linear of the LLM except lm_head; the anchor on
# `language_model` keeps the CLIP tower's same-named projections out (STACK_NOTES §4).
LLAMA_LORA_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


class ModelFamily:
    id: ClassVar[str] = ""
    default_template: ClassVar[str] = "vicuna_v1"
    #: `model_type` in the family's config.json: how a directory without matrix's metadata finds its family.
    model_type: ClassVar[str] = ""
    #: PEFT `target_modules` (a regex over module names) of LoRA training.
    lora_targets: ClassVar[str] = LLAMA_LORA_TARGETS
    #: The module trained in full beside LoRA (LLaVA re-enables its projector after LoRA froze it).
    projector: ClassVar[str] = "multi_modal_projector"
    #: Whether an image's token count depends on its size (LLaVA-NeXT's anyres tiling).
    anyres: ClassVar[bool] = False

    # ---- the model stage ----------------------------------------------------------------------
    def stage_params(self, entry) -> dict[str, Any]:
        """Normalised inputs of this base model's `model` stage (hashed into its key)."""
        raise NotImplementedError

    def missing_files(self, entry) -> list[str]:
        """Problems with files the entry points at, as sentences naming the path; empty when fine."""
        return []

    def materialise(self, params: dict[str, Any], out_dir: Path) -> dict[str, Any]:
        """Build or check the model; write what later stages need into `out_dir`; return a small result."""
        raise NotImplementedError

    def model_dir(self, params: dict[str, Any], artifact_dir: Path) -> Path:
        """Where the loadable model directory is once `materialise` has run."""
        return artifact_dir / "model"

    # ---- using the model directory ------------------------------------------------------------
    def load(self, model_dir: Path, device: str = "cpu", dtype: str = "float32") -> tuple[Any, Any]:
        """(model, processor) of a model directory (local files only), the model on `device` in `dtype`."""
        raise NotImplementedError

    def num_image_tokens(self, model) -> int:
        """Image tokens of one image when the count does not depend on its size (0 when it does)."""
        return 0

    def image_tokens(self, handle: "ModelHandle", size: tuple[int, int] | None) -> int:
        """Image tokens of one image of `size` (width, height)."""
        return handle.num_image_tokens

    def vision_inputs(self, handle: "ModelHandle", images: list) -> dict:
        """What the model's forward takes for `images` (pixel values, and whatever else the family needs)."""
        raise NotImplementedError


def template_for(entry) -> str:
    return entry.template or FAMILIES.get(entry.family).default_template


def family_for(model_dir: Path, name: str | None = None) -> ModelFamily:
    """The family of a model directory: `name` if given, else the one matrix wrote beside it, else the
    most general family registered for its config's `model_type` (e.g. `llava` for a llava-hf folder)."""
    from matrix.models.handle import read_meta

    name = name or read_meta(model_dir).get("family")
    if name:
        return FAMILIES.get(name)()
    config = Path(model_dir) / "config.json"
    if not config.exists():
        raise FileNotFoundError(f"{model_dir}: no config.json; expected a llava-hf model directory")
    model_type = json.loads(config.read_text()).get("model_type")
    matches = [FAMILIES.get(n) for n in FAMILIES if FAMILIES.get(n).model_type == model_type]
    roots = [c for c in matches if all(issubclass(m, c) for m in matches)]
    if not roots:
        known = sorted({FAMILIES.get(n).model_type for n in FAMILIES} - {""})
        raise ValueError(f"{config}: model_type {model_type!r} belongs to no model family; known: {', '.join(known)}")
    return roots[0]()
