"""`baseline`: evaluate the base model as it is; nothing to construct or train."""
from __future__ import annotations

from matrix.methods.base import METHODS, Method, Responses


@METHODS.register("baseline")
class Baseline(Method):
    id = "baseline"
    objective = "none"
    responses = ()
    defaults: dict = {}

    def construct(self, records: list[dict], responses: Responses, params: dict, env=None) -> tuple[list[dict], dict]:
        return [], {"records": len(records), "examples": 0}
