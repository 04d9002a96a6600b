"""The synthetic twins of the benchmarks: the shapes world writes a benchmark's official files.

One module per benchmark with a twin, registered by the benchmark's id with
`@SYNTHETIC_BENCHMARKS.register("pope")`: a function `(root, size, seed) -> None` that draws `size`
scenes (images; a few benchmarks count questions) deterministically for `seed` and writes them, with
questions and ground truth read from the scenes, in that benchmark's official layout under `root`
(LLaVA's `playground/data/eval`), so `matrix.benchmarks.<id>` loads and scores them like the real files.

The dependency goes one way: a writer imports its benchmark module's file names and layout constants
(world -> benchmarks); the benchmark modules know nothing of the world.

Use: `synthesize_benchmark("pope", root, size=12, seed=3)`; the data stage (`matrix/runner/kinds/data.py`)
calls it for a spec's `benchmarks: [{id: pope, synthetic: 12}]`.
"""
from __future__ import annotations

from pathlib import Path

from matrix.registry import SYNTHETIC_BENCHMARKS  # (the core's registry: spec validation consults it)


def synthesize_benchmark(bench_id: str, root: Path, size: int, seed: int) -> None:
    """Write the synthetic version of benchmark `bench_id`: `size` items for `seed`, under `root`."""
    if bench_id not in SYNTHETIC_BENCHMARKS:
        raise ValueError(f"the synthetic world cannot write benchmark {bench_id!r}; it writes: "
                         f"{', '.join(SYNTHETIC_BENCHMARKS.names())}")
    SYNTHETIC_BENCHMARKS.get(bench_id)(Path(root), size, seed)
