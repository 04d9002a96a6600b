"""Vision pretraining of the tiny model: before its language model trains, the CLIP tower alone learns
each grid cell's shape and colour (a linear head on the patch features LLaVA feeds its projector,
dropped afterwards), as LLaVA starts from a pretrained CLIP rather than a random one."""
from __future__ import annotations

import random

from matrix.world.scene import COLOURS, GRID, SHAPES, draw_scene, render

VISION_SEED_OFFSET = 2_000_003
VISION_PRETRAIN_BATCH = 64


def cell_labels(scene) -> tuple[list[int], list[int]]:
    """Per grid cell, row-major (the patch order): shape and colour class, 0 for an empty cell."""
    shapes, colours = [0] * (GRID * GRID), [0] * (GRID * GRID)
    for o in scene.objects:
        shapes[o.row * GRID + o.col] = 1 + SHAPES.index(o.shape)
        colours[o.row * GRID + o.col] = 1 + list(COLOURS).index(o.colour)
    return shapes, colours


def pretrain_vision(model, handle, recipe: dict) -> list[float]:
    """`vision_pretrain_steps` AdamW steps of the vision tower alone on fresh scenes: a linear head on
    each patch's features (the layer LLaVA feeds the projector) predicts the shape and the colour of its
    cell. Returns the losses. Hand-written: a two-layer supervised warm start on the world's own labels,
    nothing a library offers."""
    import torch
    import torch.nn.functional as F

    size, patch = recipe["image_size"], recipe["patch_size"]
    if size // patch != GRID:
        raise ValueError(f"vision_pretrain_steps needs one patch per grid cell ({GRID}x{GRID}); "
                         f"image_size {size} / patch_size {patch} gives another grid")
    rng = random.Random(recipe["seed"] + VISION_SEED_OFFSET)
    torch.manual_seed(recipe["seed"] + VISION_SEED_OFFSET)
    tower = model.model.vision_tower
    classes = len(SHAPES) + 1
    head = torch.nn.Linear(tower.config.hidden_size, 2 * classes)
    optimizer = torch.optim.AdamW([*tower.parameters(), *head.parameters()], lr=recipe["lr"], weight_decay=0.0)
    losses = []
    tower.train()
    for _ in range(recipe["vision_pretrain_steps"]):
        scenes = [draw_scene(rng) for _ in range(VISION_PRETRAIN_BATCH)]
        pixels = handle.pixel_values([render(s, size) for s in scenes])
        out = head(tower(pixels, output_hidden_states=True).hidden_states[model.config.vision_feature_layer][:, 1:])
        labels = [cell_labels(s) for s in scenes]
        shapes, colours = torch.tensor([a for a, _ in labels]), torch.tensor([b for _, b in labels])
        loss = F.cross_entropy(out[..., :classes].reshape(-1, classes), shapes.reshape(-1)) + \
            F.cross_entropy(out[..., classes:].reshape(-1, classes), colours.reshape(-1))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return losses
