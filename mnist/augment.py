"""Batched random affine augmentation: one `affine_grid` + `grid_sample` call per batch.

Each image gets its own rotation, scale and shift, drawn from a seeded generator on the device,
so a run is repeatable and costs one small kernel per batch instead of 128 PIL round trips.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from mnist.data import MEAN, STD

BACKGROUND = (0.0 - MEAN) / STD  # a black pixel after normalisation


def random_affine(
    x: torch.Tensor,
    generator: torch.Generator,
    degrees: float = 0.0,
    translate: float = 0.0,
    scale: tuple[float, float] = (1.0, 1.0),
    scale_p: float = 1.0,
) -> torch.Tensor:
    """Rotate by ±`degrees`, shift by ±`translate` of the size, zoom by `scale`, each image its own.

    Only a fraction `scale_p` of the images is zoomed (rotation and zoom about the centre commute,
    so one warp does both). The area uncovered at the borders is filled with black, as
    torchvision's transforms do.
    """
    n = x.shape[0]

    def uniform(low: float, high: float) -> torch.Tensor:
        u = torch.rand(n, generator=generator, device=x.device, dtype=x.dtype)
        return low + (high - low) * u

    angle = uniform(-degrees, degrees) * (math.pi / 180)
    zoom = uniform(*scale)
    shift = uniform(-translate, translate), uniform(-translate, translate)
    unzoomed = torch.rand(n, generator=generator, device=x.device, dtype=x.dtype) >= scale_p
    zoom = zoom.masked_fill(unzoomed, 1.0)
    # affine_grid maps output coordinates to input ones, so the inverse transform goes in:
    # output point q samples the input at R·q/z, so z > 1 enlarges; (-1, 1) spans the image: 2·t.
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack(
        [
            torch.stack([cos, -sin, 2 * shift[0]], dim=1),
            torch.stack([sin, cos, 2 * shift[1]], dim=1),
        ],
        dim=1,
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    moved = F.grid_sample(x - BACKGROUND, grid, mode="bilinear", align_corners=False)
    return moved + BACKGROUND
