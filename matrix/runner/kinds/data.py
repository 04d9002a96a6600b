"""`data`: alignment datasets and benchmark files, synthesised by the world (`matrix.world.datasets`,
`matrix.world.benchmarks`) or checked on disk."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import Field

from matrix.runner.stage import KINDS, StageKind, StageParams


class _DatasetParams(StageParams):
    what: Literal["dataset"]
    source: Literal["synthetic", "llava-json"]
    kind: str | None = None  # synthetic: the recipe, its size and seed
    size: int | None = None
    seed: int | None = None
    path: str | None = None  # llava-json: the file, its image folder and content hash
    image_root: str | None = None
    sha: str | None = None


class _MixtureParams(StageParams):
    what: Literal["mixture"]
    parts: list[str]


class _HeldoutParams(StageParams):
    what: Literal["heldout"]
    id: str
    n: int
    seed: int
    after: int


class _BenchmarkParams(StageParams):
    what: Literal["benchmark"]
    id: str
    source: Literal["synthetic", "files"]
    size: int | None = None  # synthetic
    seed: int | None = None
    path: str | None = None  # files: the folder and its fingerprint
    fingerprint: str | None = None


@KINDS.register("data")
class DataStage(StageKind):
    VERSION = 1
    Params = Annotated[Union[_DatasetParams, _MixtureParams, _HeldoutParams, _BenchmarkParams],
                       Field(discriminator="what")]

    def run(self, params, inputs, out: Path, ctx):
        if params.what == "dataset":
            return self._dataset(params, out)
        if params.what == "mixture":
            return self._mixture(params, inputs, out)
        if params.what == "heldout":
            return self._heldout(params, inputs["data"], out)
        return self._benchmark(params, out)

    def _mixture(self, params, inputs, out: Path):
        """One dataset of several parts' subsets: ids become `<part>:<id>`, images absolute paths."""
        import json

        from matrix.runner.kinds.subset import load_subset

        records = []
        for j, name in enumerate(params.parts):
            data = inputs[f"part{j}.data"]
            root = resolve(data, "image_root").resolve()
            for r in load_subset(data, inputs[f"part{j}.subset"]):
                r = {**r, "id": f"{name}:{r['id']}"}
                if r.get("image"):
                    r["image"] = str(root / r["image"])
                records.append(r)
        (out / "data.json").write_text(json.dumps(records))
        return {"records": len(records), "data_file": "data.json", "image_root": "/",
                "parts": {name: inputs[f"part{j}.subset"].result["n"] for j, name in enumerate(params.parts)}}

    def _heldout(self, params, data_input, out: Path):
        """The last `n` records of the seeded shuffle whose first records are the training subsets (the
        largest `after`): disjoint from every subset of the dataset, or an error."""
        from matrix.benchmarks.indomain import write_slice
        from matrix.runner.kinds.subset import shuffled_ids

        records = read_records(resolve(data_input, "data_file"))
        n, after = params.n, params.after
        if n + after > len(records):
            raise ValueError(f"{params.id}: the dataset has {len(records)} records, too few for a held-out slice "
                             f"of {n} after the largest training subset ({after}); lower 'heldout' or the scale")
        ids = set(shuffled_ids(records, params.seed)[len(records) - n:])
        write_slice(out, [r for r in records if str(r["id"]) in ids], resolve(data_input, "image_root"))
        return {"questions": n, "root": ".", "first_heldout_position": len(records) - n}

    def _dataset(self, params, out: Path):
        from matrix.world.datasets import load_dataset, synthesize_dataset

        if params.source == "synthetic":
            synthesize_dataset(params.kind, out, params.size, params.seed)
            return {"records": len(load_dataset(out)), "data_file": "data.json", "image_root": "."}
        path = Path(params.path)
        if not path.exists():
            raise FileNotFoundError(f"{path}: alignment data not found; expected a LLaVA JSON conversation file")
        return {"records": len(read_records(path)), "data_file": str(path), "image_root": params.image_root}

    def _benchmark(self, params, out: Path):
        from matrix.benchmarks.base import BENCHMARKS

        bench = BENCHMARKS.get(params.id)()
        if params.source == "synthetic":  # the world writes the official files (an id it cannot: an error)
            from matrix.world.benchmarks import synthesize_benchmark

            synthesize_benchmark(params.id, out, params.size, params.seed)
            root = out
            result_root = "."
        else:
            root = Path(params.path)
            result_root = str(root)
        # fails here, naming the file, if the official files are incomplete; the images are checked by
        # the stages that answer (an external row's answer file is scored without them)
        samples = bench.load(root, images=False)
        if not samples:
            raise ValueError(f"{params.id}: the benchmark files under {root} hold no questions")
        return {"questions": len(samples), "root": result_root}


def read_records(path: Path) -> list[dict]:
    """LLaVA JSON conversation records from a .json list or a .jsonl file, with a clear error."""
    import json

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found; expected LLaVA JSON conversation records")
    text = path.read_text()
    try:
        if path.suffix == ".jsonl":
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of records")
    return data


def resolve(stage_input, key: str) -> Path:
    """A path a data stage recorded: relative ones live inside its artifact folder."""
    return stage_input.dir / stage_input.result[key]
