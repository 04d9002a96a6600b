"""Random-resized crop on the normalised tensor: a crop of area `scale` x the image and aspect ratio in
`ratio` (log-uniform), resized back to the input size (bilinear), as torchvision's RandomResizedCrop
with its defaults (0.08-1.0, 3/4-4/3). No torchvision dependency: the box is drawn here."""
from __future__ import annotations

import math

from matrix.methods.augmentations import AUGMENTATIONS, Augmentation


def crop_box(h: int, w: int, area_frac: float, log_ratio: float) -> tuple[int, int, int, int]:
    """(top, left, height, width) of a centred-then-shifted box; clamped to the image."""
    ratio = math.exp(log_ratio)
    area = area_frac * h * w
    cw = max(1, min(w, int(round(math.sqrt(area * ratio)))))
    ch = max(1, min(h, int(round(math.sqrt(area / ratio)))))
    return 0, 0, ch, cw


@AUGMENTATIONS.register("crop")
class RandomResizedCrop(Augmentation):
    id = "crop"
    defaults = {"scale": [0.08, 1.0], "ratio": [3 / 4, 4 / 3]}

    def __call__(self, pixels):
        import torch
        import torch.nn.functional as F

        _, _, h, w = pixels.shape
        lo, hi = self.params["scale"]
        rlo, rhi = (math.log(r) for r in self.params["ratio"])
        out = []
        for img in pixels:
            frac = float(self.uniform(1, lo, hi))
            _, _, ch, cw = crop_box(h, w, frac, float(self.uniform(1, rlo, rhi)))
            top = int(torch.randint(0, h - ch + 1, (1,), generator=self.generator))
            left = int(torch.randint(0, w - cw + 1, (1,), generator=self.generator))
            patch = img[:, top : top + ch, left : left + cw].unsqueeze(0).float()
            out.append(F.interpolate(patch, size=(h, w), mode="bilinear", align_corners=False)[0])
        return torch.stack(out).to(pixels.dtype)
