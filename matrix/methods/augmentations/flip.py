"""Horizontal flip (SeVa Table 1's simplest augmentation); `p` = probability per image (1: always)."""
from __future__ import annotations

from matrix.methods.augmentations import AUGMENTATIONS, Augmentation


@AUGMENTATIONS.register("flip")
class Flip(Augmentation):
    id = "flip"
    defaults = {"p": 1.0}

    def __call__(self, pixels):
        import torch

        flip = self.uniform(pixels.shape[0]) < float(self.params["p"])
        return torch.where(flip.view(-1, 1, 1, 1).to(pixels.device), pixels.flip(-1), pixels)
