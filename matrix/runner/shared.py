"""The run directory as every node sees it: stages on other nodes read and write it by path, so it must be
one shared filesystem mounted at the same path on every node (docs/CLUSTER.md).

At each start the driver writes a fresh token into the run directory (`write_token`); each stage, before
it touches anything, reads it back by the path it was given (`run_dir_problem`). A node that mounts
nothing there, or another directory at that path (its local disk, a stale copy), fails the stage at once
with the node and the path named, instead of training into a folder the driver never sees.
"""
from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

TOKEN_FILE = ".matrix-run-token"


def write_token(run_dir: Path) -> str:
    """A new token for this driver's run, written atomically into the run directory."""
    token = uuid.uuid4().hex
    path = Path(run_dir) / TOKEN_FILE
    tmp = path.with_name(f"{TOKEN_FILE}.{os.getpid()}.tmp")
    tmp.write_text(token)
    os.replace(tmp, path)
    return token


def _node() -> str:
    host = socket.gethostname()
    try:
        import ray

        if ray.is_initialized():
            return f"{host} (Ray node {ray.get_runtime_context().get_node_id()[:12]})"
    except Exception:  # noqa: BLE001 - naming the node is best effort
        pass
    return host


def run_dir_problem(run_dir: str | Path, token: str | None) -> str | None:
    """None when this process sees the driver's run directory (or no token was given); else the error."""
    if token is None:
        return None
    path = Path(run_dir) / TOKEN_FILE
    try:
        seen = path.read_text().strip()
    except FileNotFoundError:
        seen = None
    except OSError as e:
        seen = f"<unreadable: {e.strerror}>"
    if seen == token:
        return None
    why = ("finds no run token there" if seen is None else
           "finds another run's token there (a different directory at the same path)")
    return (f"SharedStorageError: node {_node()} cannot see the run directory {Path(run_dir).absolute()}: it "
            f"{why} ({path.name}, written by the driver at the start of this run). Every node must mount the "
            f"run directory at the same path, on storage all nodes share (docs/CLUSTER.md)")
