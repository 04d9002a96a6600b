"""DeepSpeed process groups: one rank by default, or the ranks `matrix.methods.launch` starts (one per GPU);
environment, group life cycle and the engine config."""
from __future__ import annotations

import os
import shutil
import socket
import tempfile
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Iterator

RENDEZVOUS = "MATRIX_RENDEZVOUS"  # the file the ranks of a group meet through
_DIST_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", RENDEZVOUS)
LAUNCHED = "MATRIX_LAUNCHED_RANKS"  # set by matrix.methods.launch: the rendezvous variables are its, keep them
# The ranks of a group meet through a file (torch's FileStore), not torch's default TCPStore: that
# store's server listens on every interface (`*:MASTER_PORT`, seen with `ss -ltnp`), which a
# loopback-only node must not do, and every rank of a group is on one node anyway. MASTER_ADDR and
# MASTER_PORT stay set: DeepSpeed's CPU shared-memory op names its segment after them.
# Gloo's and NCCL's own pair/bootstrap sockets are kept on loopback unless the user chose otherwise.
_LOOPBACK_IFNAME = {"GLOO_SOCKET_IFNAME": "lo", "NCCL_SOCKET_IFNAME": "lo"}
# Limit of the rendezvous and of every collective of the group (DeepSpeed's default, made explicit):
# all ranks of a group start together on one node, so reaching it takes seconds, not minutes.
GROUP_TIMEOUT_S = 600.0


def default_extensions_dir() -> None:
    """DeepSpeed JIT-compiles a comm op on first init (~35 s on CPU); keep it in one cached place."""
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(Path.home() / ".cache" / "matrix" / "torch_extensions"))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def process_group(on_cuda: bool) -> Iterator[None]:
    """Initialise a one-rank group (loopback only) and tear it down; a group made by a launcher is reused.

    The rendezvous variables are restored afterwards so that a later call (tests train several
    times in one process) picks a fresh port instead of a stale one.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        yield
        return
    saved = {k: os.environ.get(k) for k in (*_DIST_ENV, *_LOOPBACK_IFNAME)}
    own_file = None
    if not os.environ.get(LAUNCHED):
        own_file = Path(tempfile.mkdtemp(prefix="matrix-rdv-")) / "store"
        os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
                          MASTER_PORT=str(_free_port()), **{RENDEZVOUS: str(own_file)})
    for k, v in _LOOPBACK_IFNAME.items():
        os.environ.setdefault(k, v)
    default_extensions_dir()
    try:
        import deepspeed

        from matrix.methods.ops import ensure_built

        ensure_built()  # DeepSpeed's own build would wait forever on a lock left by a killed build
        try:
            deepspeed.init_distributed(dist_backend="nccl" if on_cuda else "gloo",
                                       init_method=f"file://{os.environ[RENDEZVOUS]}",
                                       rank=int(os.environ["RANK"]), world_size=int(os.environ["WORLD_SIZE"]),
                                       timeout=timedelta(seconds=GROUP_TIMEOUT_S))
        except Exception as e:  # noqa: BLE001 - re-raised naming what was waited for
            raise RuntimeError(
                f"DeepSpeed's process group (rank {os.environ.get('RANK')} of {os.environ.get('WORLD_SIZE')}, "
                f"rendezvous file {os.environ.get(RENDEZVOUS)}, limit "
                f"{GROUP_TIMEOUT_S:g} s) could not be set up: {type(e).__name__}: {e}") from e
        yield
    finally:
        if dist.is_initialized():
            import deepspeed.comm

            # DeepSpeed's wrapper also drops the groups it cached (world clone, data-parallel group);
            # with torch's alone the next run in this process would reuse dead groups.
            deepspeed.comm.destroy_process_group()
        if own_file is not None:
            shutil.rmtree(own_file.parent, ignore_errors=True)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def world() -> tuple[int, int]:
    """(rank, world size) of this process: (0, 1) outside a launched group."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def engine_config(hp: dict, world_size: int = 1) -> dict:
    """DeepSpeed config from the trainer's hyper-parameters (client optimizer and scheduler).

    The global batch is `batch_size` over all ranks: each rank takes its share in micro-batches.
    """
    if hp["batch_size"] % (hp["micro_batch_size"] * world_size):
        raise ValueError(f"batch_size {hp['batch_size']} must be a multiple of micro_batch_size "
                         f"{hp['micro_batch_size']} x {world_size} ranks")
    stage = int(hp["deepspeed"]["stage"])
    zero: dict = {"stage": stage}
    if stage == 3:
        # Without it a ZeRO-3 save writes only sharded optimizer states (STACK_NOTES §2); we also gather
        # full fp32 tensors ourselves, but keep the engine's own save usable.
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    return {
        "train_batch_size": hp["batch_size"],
        "train_micro_batch_size_per_gpu": hp["micro_batch_size"],
        "gradient_accumulation_steps": hp["batch_size"] // (hp["micro_batch_size"] * world_size),
        "gradient_clipping": float(hp["max_grad_norm"] or 0.0),
        "bf16": {"enabled": bool(hp["bf16"])},
        "zero_optimization": zero,
        # ZeRO refuses optimizers it has not tested unless told; torch AdamW needs no compiled op.
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
