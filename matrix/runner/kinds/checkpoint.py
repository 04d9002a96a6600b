"""`checkpoint`: bring a train stage's output from elsewhere (another run, a colleague's folder) into
this run, for an `external` row: checked for the layout `matrix.methods.checkpoint` writes, then copied, so
the run keeps working if the source moves. Its key holds the folder's path and a fingerprint of its
files (names, sizes, modification times): a retrained source is a new stage."""
from __future__ import annotations

import shutil
from pathlib import Path

from matrix.runner.stage import KINDS, StageKind, StageParams


@KINDS.register("checkpoint")
class CheckpointStage(StageKind):
    VERSION = 1

    class Params(StageParams):
        path: str
        files: str | None = None  # fingerprint of the folder's files

    def run(self, params: Params, inputs, out: Path, ctx):
        from matrix.methods.checkpoint import ADAPTER_DIR, NON_LORA_FILE

        src = Path(params.path)
        if not (src / NON_LORA_FILE).exists():
            raise FileNotFoundError(f"{src}: no {NON_LORA_FILE}; expected the folder a train stage writes "
                                    "(artifacts/train/<key>), e.g. from another run")
        for item in src.iterdir():
            if item.name in (ADAPTER_DIR, NON_LORA_FILE) or item.suffix == ".json":
                (shutil.copytree if item.is_dir() else shutil.copy2)(item, out / item.name)
        return {"source": str(src), "adapter": (src / ADAPTER_DIR).exists()}
