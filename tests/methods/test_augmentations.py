import math

import pytest
import torch

from matrix.methods.augmentations import AUGMENTATIONS, make
from matrix.methods.augmentations.diffusion import alphas_cumprod, default_step


def test_registry_has_the_four_seva_augmentations():
    assert {"diffusion", "flip", "crop", "moco"} <= set(AUGMENTATIONS.names())
    with pytest.raises(ValueError, match="unknown parameters"):
        make("diffusion", {"steps": 3})


def test_sigmoid_schedule_alpha_bar_by_hand():
    abar = alphas_cumprod()
    # t = 0: beta_0 = sigmoid(-6) * (5e-3 - 1e-5) + 1e-5 = 0.0024726 * 0.00499 + 1e-5 = 2.2338e-5
    assert abar[0].item() == pytest.approx(1 - (1 / (1 + math.exp(6))) * 4.99e-3 - 1e-5, rel=1e-12)
    # t = 1: the second linspace point is -6 + 12/999
    b1 = 1 / (1 + math.exp(6 - 12 / 999)) * 4.99e-3 + 1e-5
    assert abar[1].item() == pytest.approx(abar[0].item() * (1 - b1), rel=1e-12)
    # the schedule is monotone and at the SeVa steps keeps this much signal (sqrt(abar)):
    assert bool((abar[1:] < abar[:-1]).all())
    assert 0.0 < abar[800].item() < abar[500].item() < 1.0
    assert (default_step("llava-v1.5-13b"), default_step("llava-v1.5-7b"), default_step(None)) == (500, 800, 800)


def test_diffusion_noise_matches_the_schedule():
    abar = alphas_cumprod()[500].item()
    x = torch.full((64, 3, 16, 16), 0.5)
    aug = make("diffusion", {"step": 500}, seed=3)
    y = aug(x)
    noise = (y - math.sqrt(abar) * x) / math.sqrt(1 - abar)  # eps recovered from x_t = sqrt(a)x + sqrt(1-a)eps
    assert noise.mean().item() == pytest.approx(0.0, abs=0.02)
    assert noise.std().item() == pytest.approx(1.0, abs=0.02)
    # the same draw as the generator gives: exactly the formula, not just its moments
    eps = torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(y, math.sqrt(abar) * x + math.sqrt(1 - abar) * eps, rtol=1e-5, atol=1e-5)


def test_flip_crop_moco_keep_shape_and_change_pixels():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8) / 100
    torch.testing.assert_close(make("flip")(x), x.flip(-1))
    torch.testing.assert_close(make("flip", {"p": 0.0})(x), x)
    crop = make("crop", {"scale": [0.25, 0.25], "ratio": [1.0, 1.0]}, seed=0)(x)
    assert crop.shape == x.shape and not torch.equal(crop, x)
    moco = make("moco", mean=(0.48, 0.46, 0.41), std=(0.27, 0.26, 0.28), seed=1)(x)
    assert moco.shape == x.shape and torch.isfinite(moco).all() and not torch.equal(moco, x)
    # seeded: the same seed gives the same augmentation
    torch.testing.assert_close(make("moco", seed=1)(x), make("moco", seed=1)(x))
