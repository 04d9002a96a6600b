"""Data-parallel training over the GPUs of one Ray task: one process per GPU, DeepSpeed across them.

A train stage that asks for `gpus: N > 1` gets its N GPUs together on one node (one Ray task holds
them; Ray never splits a task's request across nodes), and `launch` starts N processes there, rank r
on GPU r of the task's `CUDA_VISIBLE_DEVICES`, with the rendezvous fixed explicitly: rank 0 is the
first process, and the ranks meet through a file in the stage's scratch folder (torch's FileStore:
all ranks are on this node, and no rendezvous server listens on the network; see matrix.methods._dist).
Every rank runs `matrix.methods.trainer.train`; each takes its share of every global batch and
DeepSpeed averages the gradients (NCCL on GPUs, gloo on CPU). Rank 0 writes the stage's output.

Why a launcher inside the task rather than Ray Train's TorchTrainer: the stage stays one Ray task
with one artifact folder and one record, so caching, resume, retries and the store need nothing new;
DeepSpeed's own model (one process per GPU, env rendezvous) is exactly what it runs; and the same
path runs on CPU with gloo in tests. Training across nodes (more GPUs than one node has) is not
supported: such a request fails as unsatisfiable.

    python -m matrix.methods.launch ARGS.json   (internal: one rank; its environment says which)
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from matrix.methods._dist import LAUNCHED, RENDEZVOUS, _free_port


def launch(world_size: int, args: dict, out_dir: Path, scratch: Path) -> dict:
    """Run `train(**args)` on `world_size` ranks; rank 0 writes to `out_dir`. Returns rank 0's result
    with every rank's (rank, world size) as each process saw them."""
    if args["hp"].get("deepspeed") is None:
        raise ValueError(f"training on {world_size} GPUs needs training.deepspeed (it averages the ranks' gradients)")
    scratch.mkdir(parents=True, exist_ok=True)
    (scratch / "rendezvous").unlink(missing_ok=True)  # a FileStore left by an earlier try would be reused
    port = _free_port()
    procs = []
    for rank in range(world_size):
        rank_out = out_dir if rank == 0 else scratch / f"rank{rank}"
        spec = scratch / f"args{rank}.json"
        spec.write_text(json.dumps({**args, "out_dir": str(rank_out), "report": str(scratch / f"rank{rank}.json")},
                                   default=str))
        env = {**os.environ, LAUNCHED: "1", "RANK": str(rank), "LOCAL_RANK": str(rank),
               "WORLD_SIZE": str(world_size), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
               RENDEZVOUS: str(scratch / "rendezvous")}
        log = open(scratch / f"rank{rank}.log", "w")
        procs.append((subprocess.Popen([sys.executable, "-m", "matrix.methods.launch", str(spec)], env=env,
                                       stdout=log, stderr=subprocess.STDOUT), log))
    try:
        codes = _wait_all([proc for proc, _ in procs])
    finally:
        for proc, log in procs:  # the stage ended early (an error, its time limit): no rank outlives it
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
    if any(codes):
        # The rank that failed first, not one stopped because of it (those exit by SIGKILL).
        bad = next((r for r, c in enumerate(codes) if c and c != -signal.SIGKILL),
                   next(r for r, c in enumerate(codes) if c))
        tail = (scratch / f"rank{bad}.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"rank {bad} of {world_size} exited with {codes[bad]}:\n{tail}")
    reports = [json.loads((scratch / f"rank{r}.json").read_text()) for r in range(world_size)]
    result = reports[0]
    result["ranks"] = [{"rank": r["rank"], "world_size": r["world_size"], "pid": r["pid"]} for r in reports]
    shutil.rmtree(scratch, ignore_errors=True)
    return result


def _wait_all(procs: list[subprocess.Popen], poll_s: float = 0.5) -> list[int]:
    """Exit codes of all ranks. When one fails the others are stopped at once: they would otherwise
    wait for it in a collective until the group's timeout (matrix.methods._dist.GROUP_TIMEOUT_S)."""
    import time

    while True:
        codes = [p.poll() for p in procs]
        if all(c is not None for c in codes):
            return codes
        if any(c for c in codes if c is not None):
            for p in procs:
                if p.poll() is None:
                    p.kill()
            return [p.wait() for p in procs]
        time.sleep(poll_s)


def main(argv: list[str]) -> None:
    from matrix.methods.trainer import train

    args = json.loads(Path(argv[0]).read_text())
    report = Path(args.pop("report"))
    if os.environ.get("CUDA_VISIBLE_DEVICES"):
        import torch

        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    result = train(**args)
    report.write_text(json.dumps({**result, "pid": os.getpid()}, default=str))


if __name__ == "__main__":
    main(sys.argv[1:])
