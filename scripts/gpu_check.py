"""The GPU path, end to end: the tiny world on CUDA (bf16, ZeRO-3, generation and evaluation on the GPU).

Runs a small sweep of `specs/quickstart.yaml` (GT-DPO and continual SFT at one scale, two benchmarks)
through `matrix.api.run`, with every model-loading stage holding one GPU, the base model in bf16,
training in bf16 under DeepSpeed ZeRO-3. Then prints, per model-loading stage, where and how it ran
(device, dtype, batch size: its recorded `runtime`) with its answers/s or train tokens/s and peak
memory; then answers/s of the base model answering the same questions batched and one by one. Exits 1
if any model-loading stage ran on the CPU (or failed). Not part of `make test`.

`--cpu` runs the same sweep with no GPU (every stage on the CPU, same dtype and DeepSpeed settings;
`--dtype float32` for fp32) and then exits 1 if any stage ran anywhere else. `--llava DIR` uses a
llava-hf model directory (e.g. a real-architecture checkpoint) as the base model instead of the tiny one.

    python scripts/gpu_check.py [--cpu] [--dtype bfloat16] [--batch-size 16] [--out runs/gpu-check]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SPEC = ROOT / "specs" / "quickstart.yaml"
BENCHMARKS = "[{id: pope, synthetic: 40}, {id: mmvet, synthetic: 16, max_new_tokens: 32}]"
MODEL_KINDS = ("generate", "construct", "train", "evaluate", "merge")


def overrides(args, gpus: int) -> list[str]:
    sets = [
        f"output_dir={args.out}",
        "scales=[200]",
        "datasets.shapes-vqa.size=400",
        f"benchmarks={BENCHMARKS}",
        "tables=[]",
        f"base_models.tiny.dtype={args.dtype}",
        f"generation.batch_size={args.batch_size}",
        f"evaluation.batch_size={args.batch_size}",
        f"training.bf16={'true' if args.dtype != 'float32' else 'false'}",
        "training.deepspeed.stage=3",
        "training.gradient_checkpointing=true",
        "ray.num_cpus=" + str(args.cpus),
    ]
    if args.llava:
        # A LLaVA-1.5 prompt holds 576 image tokens: the quickstart's max_length (256, for the tiny
        # model's 9) would drop every example. 2048 is LLaVA-1.5's own model_max_length.
        sets.append("training.max_length=2048")
        sets.append(f"base_models.tiny={{family: llava, path: {Path(args.llava).resolve()}, dtype: {args.dtype}}}")
    if gpus:
        sets.append(f"ray.num_gpus={gpus}")
        sets += [f"resources.{kind}.gpus=1" for kind in ("generate", "train", "evaluate", "merge")]
    return sets


def one_by_one(model_dir: Path, template: str, family: str | None, bench_root: Path, device: str, dtype: str,
               batch_size: int, n: int) -> dict:
    """answers/s of the base model on the first `n` POPE questions: batched, then one at a time."""
    from PIL import Image

    from matrix.benchmarks.base import BENCHMARKS as REGISTRY
    from matrix.models.handle import load

    bench = REGISTRY.get("pope")()
    samples = bench.load(bench_root)[:n]
    handle = load(model_dir, template=template, dtype=dtype, device=device, family=family)
    images = [Image.open(s.image).convert("RGB") for s in samples]
    questions = [s.question for s in samples]
    handle.generate(images[:2], questions[:2], max_new_tokens=bench.max_new_tokens, batch_size=2)  # warm-up
    out = {}
    for size in (batch_size, 1):
        if device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
        start = time.perf_counter()
        answers = handle.generate(images, questions, max_new_tokens=bench.max_new_tokens, batch_size=size)
        if device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
        out[size] = (len(answers) / (time.perf_counter() - start), answers)
    same = sum(a == b for a, b in zip(out[batch_size][1], out[1][1]))
    return {"questions": len(samples), "batched": out[batch_size][0], "one_by_one": out[1][0], "agree": same}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cpu", action="store_true", help="run on the CPU (no GPU needed)")
    parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16", "float32"))
    parser.add_argument("--batch-size", type=int, default=16, help="generation and evaluation batch size")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "gpu-check", help="run directory (emptied first)")
    parser.add_argument("--cpus", type=int, default=None, help="CPUs Ray offers (default: all)")
    parser.add_argument("--llava", type=Path, default=None, help="a llava-hf model directory as the base model")
    parser.add_argument("--questions", type=int, default=32, help="questions of the batched vs one-by-one timing")
    args = parser.parse_args(argv)
    args.cpus = args.cpus or os.cpu_count()

    import torch

    from matrix import api
    from matrix.store import Store

    gpus = 0 if args.cpu else torch.cuda.device_count()
    if not args.cpu and gpus == 0:
        print("no CUDA device visible (torch.cuda.device_count() == 0); use --cpu to check the CPU path")
        return 1
    if args.out.exists():
        shutil.rmtree(args.out)
    spec = api.load(SPEC, overrides(args, gpus))
    mode = f"CUDA ({gpus} x {torch.cuda.get_device_name(0)})" if gpus else "CPU"
    print(f"gpu_check: {mode}; dtype {args.dtype}, batch size {args.batch_size}, ZeRO-3, torch {torch.__version__}")
    start = time.time()
    summary = api.run(spec, only="method=gt-dpo|cont-sft")
    print(f"sweep: {time.time() - start:.0f} s; ran {len(summary.ran)}, failed {len(summary.failed)}, "
          f"blocked {len(summary.blocked)}")
    for label, line in summary.failed:
        print(f"  failed: {label}: {line}")

    planned = api.plan(spec, "method=gt-dpo|cont-sft")
    store = Store(spec.run_dir)
    records = store.stages()
    bad: list[str] = []
    print(f"\n{'stage':<44} {'device':<8} {'dtype':<9} {'batch':>5}  {'wall s':>7}  rate")
    for stage in planned.graph.ordered():
        if not stage.loads_model:
            continue
        rec = records.get(stage.key)
        if rec is None or rec.status != "done":
            bad.append(f"{stage.label}: not done")
            continue
        rt = rec.result.get("runtime") or {}
        if not rt:
            bad.append(f"{stage.label}: no runtime recorded")
        elif (rt["device"] == "cpu") != (gpus == 0):
            bad.append(f"{stage.label}: ran on {rt['device']}")
        if stage.kind == "train":
            mem = "GPU" if gpus else "max RSS"
            rate = (f"{rec.result['tokens_per_s']:.0f} train tokens/s, peak {mem} memory "
                    f"{rec.result['peak_mem_mb']:.0f} MiB, ZeRO-{rec.result['deepspeed_stage']}, "
                    f"checkpointing {rt.get('gradient_checkpointing')}")
        elif "answers_per_s" in rec.result:
            rate = f"{rec.result['answers_per_s']:.1f} answers/s"
        else:
            rate = ""
        batch = "-" if rt.get("batch_size") is None else rt["batch_size"]
        print(f"{stage.label[:44]:<44} {rt.get('device', '?'):<8} {rt.get('dtype', '?'):<9} {batch:>5}  "
              f"{rec.wall_s or 0:7.1f}  {rate}")

    model = next(s for s in planned.graph.stages.values() if s.kind == "model")
    bench = next(s for s in planned.graph.stages.values() if s.kind == "data" and s.params.get("id") == "pope")
    if records.get(model.key) and records.get(bench.key):
        from matrix.runner.kinds.model import model_dir
        from matrix.runner.stage import StageInput

        mrec = records[model.key]
        mdir = model_dir(StageInput(store.artifact_dir(model.key, "model"), mrec.result))
        timing = one_by_one(mdir, mrec.result["template"], mrec.result.get("family"),
                            store.artifact_dir(bench.key, "data") / records[bench.key].result["root"],
                            "cuda:0" if gpus else "cpu", args.dtype, args.batch_size, args.questions)
        print(f"\nbase model answering {timing['questions']} POPE questions on {'cuda:0' if gpus else 'cpu'} in "
              f"{args.dtype}: batch {args.batch_size}: {timing['batched']:.1f} answers/s; one by one: "
              f"{timing['one_by_one']:.1f} answers/s ({timing['batched'] / timing['one_by_one']:.1f}x); "
              f"{timing['agree']}/{timing['questions']} answers identical")
    (args.out / "gpu_check.json").write_text(json.dumps({"mode": mode, "problems": bad}, indent=1))
    if bad or summary.failed or summary.blocked:
        print("\nFAILED:\n  " + "\n  ".join(bad or ["stages failed (above)"]))
        return 1
    print(f"\nok: every model-loading stage ran on {'the GPU' if gpus else 'the CPU'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
