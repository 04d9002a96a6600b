"""Every shipped spec validates and plans without its data present; the paper-experiment specs plan
to the stage counts worked out by hand from their grids (which stages are shared, which are not)."""
from __future__ import annotations

from pathlib import Path

import pytest

from matrix import api
from matrix.spec import load_spec

SPECS = Path(__file__).resolve().parents[2] / "specs"

# kind -> count, by hand:
# table6: 1 base model; data = 1 dataset + 4 benchmarks; one 10k subset; the three nSFT variants share
#   one greedy generation but construct differently; 4 cells (baseline + 3) x 4 benchmarks.
# table7: data = 1 + 3; generation greedy (nSFT, SeVa's chosen) + augmented (SeVa); five trained
#   methods; 6 cells x 3 benchmarks.
# fig4: data = 1 + 9; four nested subsets; greedy, augmented, sampled once on 10k; 5 trained methods x
#   4 scales; 21 cells (baseline once) x 9 benchmarks.
EXPECTED = {
    "table6": {"model": 1, "data": 5, "subset": 1, "generate": 1, "construct": 3, "train": 3, "evaluate": 16},
    "table7": {"model": 1, "data": 4, "subset": 1, "generate": 2, "construct": 5, "train": 5, "evaluate": 18},
    "fig4": {"model": 1, "data": 10, "subset": 4, "generate": 3, "construct": 20, "train": 20, "evaluate": 189},
}


@pytest.mark.parametrize("path", sorted(SPECS.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_spec_plans(path):
    spec = load_spec(path)
    planned = api.plan(spec)
    assert planned.graph.stages
    if path.stem in EXPECTED:
        assert dict(planned.graph.counts()) == EXPECTED[path.stem]
