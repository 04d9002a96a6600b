"""MoCo-v2-style augmentation (SeVa Table 1): random-resized crop (scale 0.2-1), colour jitter
(brightness/contrast/saturation 0.4, applied with p 0.8), grayscale (p 0.2), horizontal flip (p 0.5).
Jitter and grayscale act on [0, 1] pixels, so the tensor is un-normalised with the processor's
mean/std and normalised again. (MoCo's Gaussian blur and hue jitter are left out: on CLIP inputs
they add little beyond the crop, and hue needs an HSV round trip; our simplification.)"""
from __future__ import annotations

from matrix.methods.augmentations import AUGMENTATIONS, Augmentation
from matrix.methods.augmentations.crop import RandomResizedCrop
from matrix.methods.augmentations.flip import Flip


def _grey(unit):
    weights = unit.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    return (unit * weights).sum(1, keepdim=True).expand_as(unit)


@AUGMENTATIONS.register("moco")
class MocoMix(Augmentation):
    id = "moco"
    defaults = {"crop_scale": [0.2, 1.0], "jitter": 0.4, "jitter_p": 0.8, "grayscale_p": 0.2, "flip_p": 0.5}

    def __call__(self, pixels):
        import torch

        p = self.params
        n = pixels.shape[0]
        crop = RandomResizedCrop({"scale": p["crop_scale"]}, seed=0)
        crop.generator = self.generator
        flip = Flip({"p": p["flip_p"]}, seed=0)
        flip.generator = self.generator
        unit = self.to_unit(crop(pixels)).clamp(0, 1)
        s = float(p["jitter"])
        apply = (self.uniform(n) < float(p["jitter_p"])).view(-1, 1, 1, 1)
        bright = self.uniform(n, 1 - s, 1 + s).view(-1, 1, 1, 1)
        contrast = self.uniform(n, 1 - s, 1 + s).view(-1, 1, 1, 1)
        sat = self.uniform(n, 1 - s, 1 + s).view(-1, 1, 1, 1)
        jittered = (unit * bright).clamp(0, 1)
        mean = jittered.mean(dim=(1, 2, 3), keepdim=True)
        jittered = ((jittered - mean) * contrast + mean).clamp(0, 1)
        grey = _grey(jittered)
        jittered = ((jittered - grey) * sat + grey).clamp(0, 1)
        unit = torch.where(apply, jittered, unit)
        to_grey = (self.uniform(n) < float(p["grayscale_p"])).view(-1, 1, 1, 1)
        unit = torch.where(to_grey, _grey(unit), unit)
        return flip(self.from_unit(unit, pixels))
