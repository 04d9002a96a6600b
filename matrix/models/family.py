"""Model families: how a base model named in a spec becomes a model directory the stages can load.

A family turns its spec entry into the normalised parameters of the `model` stage (what its cache key
hashes), materialises the model (build it, or check an external checkpoint), and says where the
model directory is. Adding a family is one new file in `matrix/models/families/`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from matrix.registry import Registry

FAMILIES: Registry["ModelFamily"] = Registry("model family", "matrix.models.families")


class ModelFamily:
    id: str = ""
    default_template: str = "vicuna_v1"

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


def template_for(entry) -> str:
    return entry.template or FAMILIES.get(entry.family).default_template
