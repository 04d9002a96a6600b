"""SeVa's default augmentation: forward-diffusion noise on the normalised pixel tensor (REFERENCE §1.1).

betas = sigmoid(linspace(-6, 6, 1000)) * (5e-3 - 1e-5) + 1e-5, ᾱ = cumprod(1 - β), and at step t
x_t = sqrt(ᾱ_t) x + sqrt(1 - ᾱ_t) ε with ε ~ N(0, I), applied to the already CLIP-normalised tensor.
t = 800 for 7B models, 500 for 13B (SeVa Sec. 4); `default_step(model_name)` picks between them.
"""
from __future__ import annotations

from matrix.methods.augmentations import AUGMENTATIONS, Augmentation

NUM_STEPS = 1000
BETA_START, BETA_END = 1e-5, 5e-3


def alphas_cumprod():
    """ᾱ_t for t = 0..999 (float64), SeVa's sigmoid schedule."""
    import torch

    betas = torch.sigmoid(torch.linspace(-6, 6, NUM_STEPS, dtype=torch.float64)) * (BETA_END - BETA_START) + BETA_START
    return torch.cumprod(1.0 - betas, dim=0)


def default_step(model_name: str | None) -> int:
    """SeVa's step: 500 for a 13B model, 800 otherwise (7B and the tiny world)."""
    return 500 if model_name and "13b" in model_name.lower() else 800


@AUGMENTATIONS.register("diffusion")
class Diffusion(Augmentation):
    id = "diffusion"
    defaults = {"step": 800}

    def __call__(self, pixels):
        import torch

        t = int(self.params["step"])
        if not 0 <= t < NUM_STEPS:
            raise ValueError(f"diffusion step {t} outside 0..{NUM_STEPS - 1}")
        abar = alphas_cumprod()[t]
        noise = torch.randn(pixels.shape, generator=self.generator, dtype=torch.float32)
        out = abar.sqrt().float() * pixels.float() + (1.0 - abar).sqrt().float() * noise
        return out.to(pixels.dtype)
