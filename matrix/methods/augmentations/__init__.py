"""SeVa's image augmentations, one plug-in per file, registered in `AUGMENTATIONS`.

An augmentation acts on the batch of CLIP-normalised pixel tensors `(B, C, H, W)` that the model
handle feeds the vision tower (`ModelHandle.generate(pixel_transform=...)`), as SeVa's diffusion
noise does. `make(name, params, mean, std, seed)` returns that transform; `mean`/`std` are the image
processor's normalisation, for augmentations that must act in pixel space (colour jitter).

Adding one: a new file here defining `Augmentation` subclass registered with `@AUGMENTATIONS.register`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, ClassVar

from matrix.registry import Registry

if TYPE_CHECKING:
    import torch

AUGMENTATIONS: Registry["type[Augmentation]"] = Registry("augmentation", "matrix.methods.augmentations")

Transform = Callable[["torch.Tensor"], "torch.Tensor"]


class Augmentation:
    """Base class: `defaults` are the paper's settings; `__call__` maps a normalised batch to a new one."""

    id: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, params: dict | None = None, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), seed: int = 0):
        import torch

        unknown = set(params or {}) - set(self.defaults)
        if unknown:
            raise ValueError(f"augmentation {self.id!r}: unknown parameters {sorted(unknown)}; known: {sorted(self.defaults)}")
        self.params = {**self.defaults, **(params or {})}
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        self.generator = torch.Generator().manual_seed(int(seed))

    def __call__(self, pixels: "torch.Tensor") -> "torch.Tensor":
        raise NotImplementedError

    # pixel space <-> the normalised tensor, for augmentations defined on [0, 1] images
    def to_unit(self, pixels: "torch.Tensor") -> "torch.Tensor":
        return pixels.float() * self.std + self.mean

    def from_unit(self, unit: "torch.Tensor", like: "torch.Tensor") -> "torch.Tensor":
        return ((unit - self.mean) / self.std).to(like.dtype)

    def uniform(self, n: int, low: float = 0.0, high: float = 1.0) -> "torch.Tensor":
        import torch

        return low + (high - low) * torch.rand(n, generator=self.generator)


def make(name: str, params: dict | None = None, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), seed: int = 0) -> Augmentation:
    return AUGMENTATIONS.get(name)(params, mean, std, seed)
