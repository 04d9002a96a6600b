"""A method row's effective settings: library default < method paper default < spec-wide block < row
override (a spec-wide value only where the method sets none, unless forced), with where each came from
(`matrix plan --settings`). The models they fill are `matrix.spec`'s."""
from __future__ import annotations

import copy
from typing import Any

from matrix.spec import Forcible, GenerationSpec, Spec, TrainingSpec

# Training settings that change how a train stage runs, not what it computes: outside `hp` and its key
# (`force` says how the spec-wide block merged; the merged settings never hold it).
RUN_TIME_TRAINING = frozenset({"gradient_checkpointing", "force"})

#: Where an effective setting came from, lowest precedence first (`matrix plan --settings`).
LIBRARY, PAPER, SPEC, FORCED, ROW = ("library default", "method paper default", "spec", "spec (forced)",
                                     "row override")


def _leaves(tree: dict, prefix: tuple = ()) -> dict[tuple, Any]:
    """{('lora', 'r'): 8, ...}: the leaf values of nested dicts (None and empty dicts are leaves)."""
    out: dict[tuple, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(_leaves(value, prefix + (key,)))
        else:
            out[prefix + (key,)] = value
    return out


def _put(tree: dict, path: tuple, value: Any) -> None:
    for key in path[:-1]:
        if not isinstance(tree.get(key), dict):
            tree[key] = {}
        tree = tree[key]
    tree[path[-1]] = copy.deepcopy(value)


def _overlaps(a: tuple, b: tuple) -> bool:
    n = min(len(a), len(b))
    return a[:n] == b[:n]


def merge_settings(model: type[Forcible], paper: dict[str, Any], block: Forcible, row: dict[str, Any]
                   ) -> tuple[Any, dict[str, str]]:
    """A method row's effective settings, and each one's value and source (dotted key -> {"value", "source"},
    the source one of LIBRARY, PAPER, SPEC, FORCED, ROW). Lowest first: `model`'s defaults < the method's `paper` defaults < the spec-wide
    `block`, whose value for a key applies only where the method sets none (a nested key counts as set
    when the method sets it or a part of it) unless `block.force` names it < the row's own `row`."""
    merged = model().model_dump(mode="json", exclude={"force"})
    sources: dict[tuple, str] = {}

    def apply(path: tuple, value: Any, source: str) -> None:
        _put(merged, path, value)
        for known in [p for p in sources if p[: len(path)] == path]:
            del sources[known]
        sources[path] = source

    own = list(_leaves(paper))
    for path, value in _leaves(paper).items():
        apply(path, value, PAPER)
    forced = [tuple(name.split(".")) for name in block.force] if isinstance(block.force, list) else []
    for path, value in _leaves(block.model_dump(mode="json", exclude_unset=True, exclude={"force"})).items():
        mine = any(_overlaps(path, p) for p in own)
        if not mine:
            apply(path, value, SPEC)
        elif block.force is True or any(path[: len(f)] == f for f in forced):
            apply(path, value, FORCED)
    for path, value in _leaves(row).items():
        apply(path, value, ROW)
    result = model.model_validate(merged)
    where = {}
    for path, value in _leaves(result.model_dump(mode="json", exclude={"force"})).items():
        hit = next((path[:n] for n in range(len(path), 0, -1) if path[:n] in sources), None)
        where[".".join(path)] = {"value": value, "source": sources[hit] if hit else LIBRARY}
    return result, where


def _paper(spec: Spec, method_id: str):
    """The method plug-in of a row: its class attributes hold the paper's settings."""
    from matrix.registry import METHODS  # a method's paper settings, through its registered class

    return METHODS.get(spec.method(method_id).plugin)


def resolved_training(spec: Spec, method_id: str) -> tuple[TrainingSpec, dict[str, dict]]:
    """A method row's training settings and the source of each (`merge_settings`)."""
    return merge_settings(TrainingSpec, _paper(spec, method_id).defaults, spec.training,
                          spec.method(method_id).overrides)


def resolved_generation(spec: Spec, method_id: str) -> tuple[GenerationSpec, dict[str, dict]]:
    """A method row's generation settings and the source of each (`merge_settings`)."""
    return merge_settings(GenerationSpec, _paper(spec, method_id).generation_defaults, spec.generation,
                          spec.method(method_id).generation)


def training_settings(spec: Spec, method_id: str) -> TrainingSpec:
    """Effective training settings of a method row (`resolved_training` without the sources)."""
    return resolved_training(spec, method_id)[0]


def generation_settings(spec: Spec, method_id: str) -> GenerationSpec:
    """Effective generation settings of a method row (`resolved_generation` without the sources)."""
    return resolved_generation(spec, method_id)[0]


def training_params(spec: Spec, method_id: str) -> dict[str, Any]:
    """The hyper-parameters of a method's train stage (its key): `training_settings` less the run-time ones."""
    return training_settings(spec, method_id).model_dump(mode="json", exclude=set(RUN_TIME_TRAINING))
