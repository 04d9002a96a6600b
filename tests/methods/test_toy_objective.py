"""Adding a training objective is one file: this module holds the whole of a toy objective, IPO (Azar et
al. 2023, "A General Theoretical Paradigm to Understand Learning from Human Preferences": the squared loss
(h - 1/(2 tau))^2 on DPO's log-ratio difference h), registers it, and trains with it through the trainer
the shipped objectives use, on both engines. No other file of the project names it."""
from __future__ import annotations

import json

import pytest
import torch
from pydantic import Field

from matrix.methods import checkpoint
from matrix.methods.base import METHODS
from matrix.methods.objectives.dpo import DPO, DPOSettings
from matrix.methods.trainer import train
from matrix.registry import OBJECTIVES


class IPOSettings(DPOSettings):
    tau: float = Field(0.5, gt=0)  # the objective's own typed setting


class IPO(DPO):
    """DPO's pairs and reference passes, IPO's loss."""

    id = "ipo-toy"
    Settings = IPOSettings

    def loss(self, loop, idxs):
        logits, batch = loop.logits(self.pairs(loop, idxs), train=True)
        chosen, rejected = self.pair_logps(logits, batch["labels"])
        ref_chosen, ref_rejected = self.reference_logps(loop, idxs).to(chosen.device)
        h = (chosen - rejected) - (ref_chosen - ref_rejected)
        self.rewards.append(torch.stack([chosen - ref_chosen, rejected - ref_rejected], 1).detach().float())
        return ((h - 1 / (2 * self.settings.tau)) ** 2).mean()


@pytest.fixture
def ipo():
    OBJECTIVES.register("ipo-toy")(IPO)
    yield IPO
    OBJECTIVES.unregister("ipo-toy")  # the tests after this one see the shipped objectives only


@pytest.fixture(scope="module")
def pairs(tiny_world, wrong_answers):
    examples, _ = METHODS.get("gt-dpo")().construct(tiny_world.records, {"greedy": wrong_answers(tiny_world.records)},
                                                     {"repeat": 1})
    return examples


@pytest.mark.parametrize("engine", ["plain", "zero2"])
def test_a_toy_objective_trains_through_the_shared_trainer(ipo, pairs, tiny_world, tmp_path, hp, engine):
    extra = {"deepspeed": {"stage": 2}} if engine == "zero2" else {}
    result = train(tiny_world.base, pairs, tiny_world.image_root, "ipo-toy",
                   hp(tau=0.5, epochs=4, reference="precomputed", **extra), tmp_path)
    steps = json.loads((tmp_path / checkpoint.TRAIN_LOG).read_text())["steps"]
    # Golden value by hand: before the first step the policy is the reference (LoRA B = 0), so h = 0 for
    # every pair and the loss is (0 - 1/(2 * 0.5))^2 = 1 exactly.
    assert steps[0]["loss"] == pytest.approx(1.0, abs=1e-5)
    # Training moves h towards 1/(2 tau) = 1: the loss falls and the chosen answers gain on the rejected.
    assert steps[-1]["loss"] < 0.9 and result["reward_margin_final"] > 0.05
    assert result["deepspeed_stage"] == (2 if engine == "zero2" else None)


def test_a_toy_objective_checks_its_own_settings(ipo, tiny_world, tmp_path, hp):
    with pytest.raises(ValueError, match="tau"):
        train(tiny_world.base, [], tiny_world.image_root, "ipo-toy", hp(tau=0.0), tmp_path)


def test_an_unregistered_objective_is_refused_naming_the_known_ones(tiny_world, tmp_path, hp):
    with pytest.raises(ValueError, match=r"trains nothing; known objectives: dpo, sft"):
        train(tiny_world.base, [], tiny_world.image_root, "ipo-toy", hp(), tmp_path)
