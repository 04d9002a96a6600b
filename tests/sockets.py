"""Listening TCP sockets of this test process and everything it started, from `ss -ltnpH`.

Only our own process tree is looked at: a test must not fail because some other program on the
machine (another user's Ray, a second checkout's suite) listens on a public address.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess

import psutil
import pytest

LOOPBACK = ("127.0.0.1:", "[::ffff:127.0.0.1]:", "[::1]:")


def own_listeners() -> list[str]:
    """`ss` lines of sockets listened on by this process or a descendant; skips without `ss`."""
    if not shutil.which("ss"):
        pytest.skip("no ss to list listening sockets")
    pids = {os.getpid(), *(p.pid for p in psutil.Process().children(recursive=True))}
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    return [ln for ln in out.splitlines() if pids & {int(p) for p in re.findall(r"pid=(\d+),", ln)}]


def not_on_loopback(lines: list[str]) -> list[str]:
    return [ln for ln in lines if not ln.split()[3].startswith(LOOPBACK)]
