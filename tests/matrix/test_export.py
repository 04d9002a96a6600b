"""`matrix export`: a trained cell as a llava-hf checkpoint that transformers alone loads and that answers
as the run did; `--adapter`: the PEFT adapter, which merged into the base model gives the same weights."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from tests.runner.sweeps import matrix

pytestmark = pytest.mark.slow

# Runs in a fresh interpreter: transformers, torch and PIL only. Left-padded batches of 16, greedy, as the
# evaluate stage decodes (matrix/models/handle.py), with LLaVA-1.5's pad-to-square of the image.
STANDALONE = r"""
import json, sys
import torch
from PIL import Image
from transformers import AutoProcessor, LlavaForConditionalGeneration

model_dir, questions_file = sys.argv[1], sys.argv[2]
job = json.load(open(questions_file))
model = LlavaForConditionalGeneration.from_pretrained(model_dir, local_files_only=True).eval()
processor = AutoProcessor.from_pretrained(model_dir, local_files_only=True)
tok, ip = processor.tokenizer, processor.image_processor

def square(im):
    w, h = im.size
    if w == h:
        return im
    canvas = Image.new(im.mode, (max(w, h),) * 2, tuple(int(x * 255) for x in ip.image_mean))
    canvas.paste(im, ((max(w, h) - w) // 2, (max(w, h) - h) // 2))
    return canvas

answers = []
items = job["items"]
for lo in range(0, len(items), 16):
    batch = items[lo:lo + 16]
    width = max(len(q["ids"]) for q in batch)
    ids = torch.full((len(batch), width), tok.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, q in enumerate(batch):
        ids[i, width - len(q["ids"]):] = torch.tensor(q["ids"])
        mask[i, width - len(q["ids"]):] = 1
    pixels = ip(images=[square(Image.open(q["image"]).convert("RGB")) for q in batch], return_tensors="pt")
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=mask, pixel_values=pixels["pixel_values"],
                             max_new_tokens=job["max_new_tokens"], do_sample=False,
                             pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    answers += [t.strip() for t in tok.batch_decode(out[:, width:], skip_special_tokens=True)]
ours = sorted(m for m in sys.modules if m.split(".")[0] in ("matrix",))
print(json.dumps({"answers": answers, "project_modules": ours}))
"""


def answers(store, stage) -> list[str]:
    with open(store.artifact_dir(stage.key, "evaluate") / "answers.jsonl") as f:
        return [json.loads(line)["text"] for line in f if line.strip()]


def cell_evaluation(run_dir: Path, bench_id: str):
    """(questions with prompt ids and image paths, max_new_tokens, the run's own answers) of the gt-dpo
    cell's evaluation on `bench_id`."""
    from matrix.benchmarks.base import BENCHMARKS
    from matrix import api
    from matrix.export import find_cell
    from matrix.models.handle import load
    from matrix.runner.kinds.data import resolve
    from matrix.runner.stage import StageInput

    spec, store = api.open_run(run_dir)
    try:
        cs = find_cell(api.plan(spec), store, "gt-dpo")
        stage = cs.evaluate[bench_id]
        records = store.stages()
        bench = stage.deps["bench"]
        root = resolve(StageInput(store.artifact_dir(bench.key, bench.kind), records[bench.key].result), "root")
        plugin = BENCHMARKS.get(stage.params["benchmark"])()
        samples = plugin.load(root, limit=stage.params.get("limit"))
        theirs = answers(store, stage)
        model = cs.train.deps["model"]
        handle = load(store.artifact_dir(model.key, model.kind) / records[model.key].result["model_dir"],
                      template=records[model.key].result["template"])
    finally:
        store.close()
    from PIL import Image

    items = [{"ids": handle.encode_prompt(s.question, Image.open(s.image).size), "image": str(s.image)}
             for s in samples]
    return items, stage.params.get("max_new_tokens") or plugin.max_new_tokens, theirs


def test_exported_cell_loads_with_transformers_alone_and_answers_as_the_run_did(tracked_sweep, tmp_path):
    spec, run_dir, _ = tracked_sweep
    out = tmp_path / "export"
    matrix("export", run_dir, "gt-dpo", out)
    assert (out / "config.json").exists() and (out / "model.safetensors").exists()
    assert (out / "tokenizer.json").exists() and (out / "processor_config.json").exists()
    items, max_new_tokens, theirs = cell_evaluation(run_dir, "pope")
    assert len(items) == len(theirs) > 16  # more than one batch
    job = tmp_path / "questions.json"
    job.write_text(json.dumps({"items": items, "max_new_tokens": max_new_tokens}))
    proc = subprocess.run([sys.executable, "-c", STANDALONE, str(out), str(job)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["project_modules"] == []
    assert got["answers"] == theirs


def test_export_refuses_an_existing_folder_and_an_untrained_cell(tracked_sweep, tmp_path):
    _, run_dir, _ = tracked_sweep
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep me")
    proc = matrix("export", run_dir, "gt-dpo", tmp_path / "full", check=False)
    assert proc.returncode == 2 and "not an empty folder" in proc.stderr
    assert (tmp_path / "full" / "x").read_text() == "keep me"
    proc = matrix("export", run_dir, "baseline", tmp_path / "b", check=False)
    assert proc.returncode == 2 and "trains nothing" in proc.stderr and not (tmp_path / "b").exists()
    proc = matrix("export", run_dir, "sima", tmp_path / "c", check=False)
    assert proc.returncode == 2 and "gt-dpo/tiny/shapes-40" in proc.stderr


def test_adapter_export_merged_into_the_base_model_equals_the_merged_export(tracked_sweep, tmp_path):
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import LlavaForConditionalGeneration

    _, run_dir, _ = tracked_sweep
    matrix("export", run_dir, "gt-dpo", tmp_path / "merged")
    matrix("export", run_dir, "gt-dpo", tmp_path / "adapter", "--adapter")
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    base = LlavaForConditionalGeneration.from_pretrained(config["base_model_name_or_path"], local_files_only=True)
    trained = load_file(str(tmp_path / "adapter" / "non_lora_trainables.safetensors"))
    assert any("projector" in k for k in trained)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    missing = base.load_state_dict(trained, strict=False)
    assert not missing.unexpected_keys
    model = PeftModel.from_pretrained(base, tmp_path / "adapter").merge_and_unload()
    merged = LlavaForConditionalGeneration.from_pretrained(tmp_path / "merged", local_files_only=True)
    ours, theirs = model.state_dict(), merged.state_dict()
    assert set(ours) == set(theirs)
    changed = [k for k in ours if not torch.equal(before[k], ours[k])]
    # The projector was trained and the LoRA merged into the language model.
    assert any("projector" in k for k in changed) and any("language_model" in k for k in changed)
    for k in ours:
        torch.testing.assert_close(ours[k], theirs[k], rtol=0, atol=1e-6, msg=k)
