"""Shared by the judged benchmarks' tests: a test API key in place of any real one, and Judges on the
scripted loopback server (tests/judge_server.py) with no client retries, closed after the test."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from matrix.benchmarks.judge import Judge


@pytest.fixture
def judge_env(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("MATRIX_JUDGE_API_KEY", "test-key")


@pytest.fixture
def make_judge(tmp_path):
    judges = []

    def make(server, concurrency=1):
        spec = SimpleNamespace(provider="openai", model="judge-model", base_url=server.url,
                               max_concurrency=concurrency, cache=True)
        judges.append(Judge(spec, tmp_path / "judge-cache", max_retries=0, timeout=5.0))
        return judges[-1]

    yield make
    for j in judges:
        j.close()
