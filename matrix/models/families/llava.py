"""LLaVA-1.5 checkpoints in the llava-hf layout, read from a local directory (never downloaded)."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from matrix.models.family import FAMILIES, ModelFamily


@FAMILIES.register("llava")
class LlavaFamily(ModelFamily):
    id = "llava"
    default_template = "vicuna_v1"

    def stage_params(self, entry) -> dict[str, Any]:
        path = Path(entry.path).expanduser().resolve() if entry.path else None
        config = path / "config.json" if path else None
        # The config's content stands in for the weights' identity: hashing 14 GB per plan is too slow.
        fingerprint = hashlib.sha256(config.read_bytes()).hexdigest()[:16] if config and config.exists() else None
        return {"path": str(path), "config_sha": fingerprint, "dtype": entry.dtype}

    def missing_files(self, entry) -> list[str]:
        if entry.path is None:
            return ["'path' is required: a local llava-hf model directory (e.g. llava-1.5-7b-hf)"]
        config = Path(entry.path).expanduser() / "config.json"
        if not config.exists():
            return [f"{config} not found: put a llava-hf checkpoint (config.json, weights, processor) there"]
        return []

    def materialise(self, params: dict[str, Any], out_dir: Path) -> dict[str, Any]:
        config = Path(params["path"]) / "config.json"
        if not config.exists():
            raise FileNotFoundError(f"{config} not found: expected a llava-hf model directory")
        return {"source": "external", "path": params["path"]}

    def model_dir(self, params: dict[str, Any], artifact_dir: Path) -> Path:
        return Path(params["path"])
