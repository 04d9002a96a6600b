"""The objective plug-in contract: its typed settings, how it encodes examples, its loss and its logs.

Use: `obj = OBJECTIVES.get("dpo").from_hp(hp)` (validates the objective's own settings from the train
stage's hyper-parameters), then the trainer calls `obj.prepare(loop)` once before the first step,
`obj.loss(loop, idxs)` per micro-batch and `obj.end_step()` per optimizer step, and merges
`obj.result(steps)` into the stage's result. `loop` (`matrix.methods.trainer.Loop`) gives forward passes
over the encoded examples.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from matrix.registry import OBJECTIVES  # noqa: F401  (the core's registry; objectives register into it)

if TYPE_CHECKING:
    import torch


class ObjectiveSettings(BaseModel):
    """An objective's own settings: the `training` keys it reads, typed and bounded. They are fields of the
    spec's `training` block too (`matrix.spec.TrainingSpec`), which is how they reach the stage key."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class Objective:
    """Base class of an objective plug-in; subclasses set the class attributes and `loss`."""

    id: ClassVar[str] = ""
    Settings: ClassVar[type[ObjectiveSettings]] = ObjectiveSettings
    # The example keys encoded, in order, into one tuple per example: SFT its conversation, DPO chosen then
    # rejected. An example lacking one is refused, named.
    conversations: ClassVar[tuple[str, ...]] = ("conversations",)
    # Dropout off (in the model and in LoRA): log-prob ratios against a reference must not be noised.
    deterministic: ClassVar[bool] = False

    def __init__(self, settings: ObjectiveSettings):
        self.settings = settings

    @classmethod
    def from_hp(cls, hp: dict[str, Any]) -> "Objective":
        """The objective with its settings read from the train stage's hyper-parameters; a bad value or a
        combination the objective cannot train raises ValueError naming the key."""
        try:
            settings = cls.Settings.model_validate(hp)
        except ValidationError as e:
            err = e.errors()[0]
            key = ".".join(str(p) for p in err["loc"])
            raise ValueError(f"{key}: {err['msg']} (objective {cls.id})") from None
        obj = cls(settings)
        obj.check(hp)
        return obj

    def check(self, hp: dict[str, Any]) -> None:
        """Refuse settings this objective cannot train with (ValueError); the other keys of `hp` are the
        trainer's (LoRA, batch sizes...)."""

    def prepare(self, loop) -> None:
        """Before the first optimizer step (the policy is still the initial model): e.g. a reference pass."""

    def loss(self, loop, idxs: list[int]) -> "torch.Tensor":
        """The mean loss over the examples `idxs` (one micro-batch), differentiable in the policy."""
        raise NotImplementedError

    def end_step(self, examples: int) -> dict[str, float]:
        """What this optimizer step logs beyond loss, lr and grad norm (rewards, KL...); resets the step's sums."""
        return {}

    def result(self, steps: list[dict]) -> dict[str, Any]:
        """What the train stage's result reports beyond the trainer's own figures."""
        return {}

    def __repr__(self) -> str:
        return f"<objective {self.id} {self.settings!r}>"


def objective_class(objective) -> type[Objective]:
    """The class of an objective given as an instance, a class or its registered name."""
    if isinstance(objective, str):
        return OBJECTIVES.get(objective)
    return objective if isinstance(objective, type) else type(objective)
