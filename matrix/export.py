"""`matrix export RUN CELL OUT`: a cell's trained model as a checkpoint other tools load without matrix.

- default: the whole model in the llava-hf layout (the cell's train checkpoint applied to the model it
  started from: trained non-LoRA tensors such as the projector loaded, the LoRA adapter merged), with
  the tokenizer and processor: `LlavaForConditionalGeneration.from_pretrained(OUT)` loads it;
- `--adapter`: the PEFT LoRA adapter (`PeftModel.from_pretrained(base, OUT)`), with the other trained
  tensors in LLaVA's `non_lora_trainables.safetensors` beside it (load them into the base model first,
  as LLaVA's builder does); `adapter_config.json` names the base model directory it applies to.

The cell is found by label, as `external`'s `from_run` finds it (`matrix.methods.external`): the whole label, or
its first parts (`gt-dpo` when the run trained gt-dpo on one dataset and scale). The output folder is
written under a temporary name and renamed into place, so an interrupted export leaves no half model.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from matrix.errors import UserError


def find_cell(planned, store, cell: str, seed: int | None = None):
    """The one trained cell (CellStages) of the plan whose label is `cell` or starts with `cell/`."""
    def matches(cs) -> bool:
        label = cs.cell.label
        return (label == cell or label.startswith(f"{cell}/")) and (seed is None or cs.cell.seed == seed)

    found = [cs for cs in planned.graph.cells if matches(cs)]
    trained = [cs for cs in found if cs.train is not None]
    if not trained:
        if found:
            raise UserError(f"cell {cell!r} trains nothing (its model is the base model); nothing to export")
        labels = sorted({cs.cell.label for cs in planned.graph.cells if cs.train is not None})
        raise UserError(f"no trained cell of {store.run_dir} matches {cell!r}; trained cells: "
                        f"{', '.join(labels) or 'none'}")
    if len(trained) > 1:
        names = sorted(f"{cs.cell.label} (seed {cs.cell.seed})" for cs in trained)
        raise UserError(f"{len(trained)} cells match {cell!r}: {', '.join(names)}; give the whole label "
                        f"(and --seed when the run has several seeds)")
    return trained[0]


def export(run: str | Path, cell: str, out: str | Path, adapter: bool = False, seed: int | None = None) -> Path:
    """Write cell `cell` of run `run` to the new folder `out`; returns it."""
    from matrix.rundir import open_run
    from matrix.methods.checkpoint import ADAPTER_DIR, NON_LORA_FILE, load_trained, save_model_dir
    from matrix.runner.kinds.model import model_dir
    from matrix.runner.plan import plan
    from matrix.runner.stage import StageInput

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out}: exists and is not an empty folder; give a new output folder")
    spec, store = open_run(run)
    try:
        cs = find_cell(plan(spec), store, cell, seed)
        records = store.stages()
        rec = records.get(cs.train.key)
        if rec is None or rec.status != "done":
            raise UserError(f"cell {cs.cell.label}: its train stage is {rec.status if rec else 'not run'}; "
                            f"run `matrix run` on {store.run_dir} first")
        start = cs.train.deps["model"]  # the base model, or an iteration's merged predecessor
        start_rec = records.get(start.key)
        if start_rec is None or start_rec.status != "done":
            raise UserError(f"cell {cs.cell.label}: the model it trained from ({start.label}) is not in the run")
        src = model_dir(StageInput(store.artifact_dir(start.key, start.kind), start_rec.result))
        ckpt = store.artifact_dir(cs.train.key, "train")
        template = start_rec.result["template"]
        dtype = spec.base_models[cs.cell.base_model].dtype
    finally:
        store.close()
    tmp = out.parent / f".{out.name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        if adapter:
            if not (ckpt / ADAPTER_DIR).is_dir():
                raise UserError(f"cell {cs.cell.label} was trained without LoRA (no adapter); export the "
                                f"whole model instead (without --adapter)")
            for item in (ckpt / ADAPTER_DIR).iterdir():
                shutil.copy2(item, tmp / item.name)
            if (ckpt / NON_LORA_FILE).exists():
                shutil.copy2(ckpt / NON_LORA_FILE, tmp / NON_LORA_FILE)
            config = json.loads((tmp / "adapter_config.json").read_text())
            config["base_model_name_or_path"] = str(src.resolve())
            (tmp / "adapter_config.json").write_text(json.dumps(config, indent=2))
        else:
            # Merged in float32, then saved in the base model's dtype.
            save_model_dir(load_trained(src, ckpt, template=template), src, tmp, dtype=dtype)
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
