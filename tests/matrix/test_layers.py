"""The import-linter contracts of pyproject.toml (`[tool.importlinter]`): the layers core -> plug-ins ->
orchestration -> facade -> CLI hold, and a core module that imports a plug-in breaks them; a benchmark
module that imports the synthetic world breaks the one-direction contract."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("matrix",)


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """`lint-imports` on the packages under `root` (its pyproject.toml); grimp reads the sources, imports nothing."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    code = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    return subprocess.run([sys.executable, "-c", code, "--no-cache"], cwd=root, env=env, capture_output=True,
                          text=True, timeout=300)


def test_the_layers_hold():
    done = lint_imports(REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 kept, 0 broken" in done.stdout


def copy_sources(tmp_path: Path) -> None:
    for pkg in PACKAGES:  # the sources only: enough for grimp, and nothing of the repository is touched
        shutil.copytree(REPO / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__", "data", "assets"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")


def test_a_core_module_importing_a_plug_in_breaks_the_layers(tmp_path):
    copy_sources(tmp_path)
    assert lint_imports(tmp_path).returncode == 0  # the copy holds, as the repository does
    spec = tmp_path / "matrix" / "spec.py"
    spec.write_text(spec.read_text() + "\n\nfrom matrix.methods.base import METHODS  # noqa: E402  (the break)\n")
    done = lint_imports(tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "core -> plug-ins -> orchestration -> facade -> CLI BROKEN" in done.stdout
    assert "matrix.spec is not allowed to import matrix.methods" in done.stdout


def test_a_benchmark_importing_the_world_breaks_the_one_direction(tmp_path):
    copy_sources(tmp_path)
    pope = tmp_path / "matrix" / "benchmarks" / "pope.py"
    pope.write_text(pope.read_text() + "\n\nfrom matrix.world.scene import SHAPES  # noqa: E402,F401\n")
    done = lint_imports(tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "the benchmarks need no synthetic world BROKEN" in done.stdout
    assert "matrix.benchmarks is not allowed to import matrix.world" in done.stdout
    assert "matrix.benchmarks.pope -> matrix.world.scene" in done.stdout
    assert "3 kept, 1 broken" in done.stdout  # the layers still hold: benchmarks and world share a layer
