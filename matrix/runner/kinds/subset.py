"""`subset`: the first n records after a seeded shuffle, so every smaller scale is inside the larger."""
from __future__ import annotations

import json
import random
from pathlib import Path

from matrix.runner.kinds.data import read_records, resolve
from matrix.runner.stage import KINDS, StageKind, StageParams


def shuffled_ids(records: list[dict], seed: int) -> list[str]:
    ids = [str(r["id"]) for r in records]
    random.Random(seed).shuffle(ids)
    return ids


@KINDS.register("subset")
class SubsetStage(StageKind):
    VERSION = 1

    class Params(StageParams):
        n: int
        seed: int

    def run(self, params: Params, inputs, out: Path, ctx):
        records = read_records(resolve(inputs["data"], "data_file"))
        n = params.n
        if n > len(records):
            raise ValueError(f"the dataset has {len(records)} records but the scale asks for {n}")
        ids = shuffled_ids(records, params.seed)[:n]
        (out / "ids.json").write_text(json.dumps(ids))
        return {"n": n}


def load_subset(data_input, subset_input) -> list[dict]:
    """The subset's records, in subset order."""
    by_id = {str(r["id"]): r for r in read_records(resolve(data_input, "data_file"))}
    ids = json.loads((subset_input.dir / "ids.json").read_text())
    return [by_id[i] for i in ids]
