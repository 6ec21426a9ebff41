"""Batched random affine augmentation: one sampling grid + one `grid_sample` call per batch.

Each image gets its own rotation, scale and shift, drawn from a seeded generator on the device,
so a run is repeatable and costs one small kernel per batch instead of 128 PIL round trips. The
grid is computed by broadcasting, not by `F.affine_grid`: on a CPU that is a batched matrix
product, 2.1 ms of a 36 ms training step at batch 256 (measured with torch.profiler), for what
is 6 multiply-adds per pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mnist.data import MEAN, STD

BACKGROUND = (0.0 - MEAN) / STD  # a black pixel after normalisation


@dataclass(frozen=True)
class Affine:
    """Magnitudes: rotate by ±`degrees`, shift by ±`translate` of the size, zoom by `scale`,
    and only a fraction `scale_p` of the images is zoomed."""

    degrees: float = 0.0
    translate: float = 0.0
    scale: tuple[float, float] = (1.0, 1.0)
    scale_p: float = 1.0


def affine_grid(theta: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """`F.affine_grid(theta, (N, C, height, width), align_corners=False)`, by broadcasting."""
    ys = (torch.arange(height, device=theta.device, dtype=theta.dtype) * 2 + 1) / height - 1
    xs = (torch.arange(width, device=theta.device, dtype=theta.dtype) * 2 + 1) / width - 1
    t = theta[:, :, :, None, None]  # (N, 2, 3, 1, 1) against (H, 1) and (1, W)
    x_in, y_in = (t[:, k, 0] * xs + t[:, k, 1] * ys[:, None] + t[:, k, 2] for k in (0, 1))
    return torch.stack([x_in, y_in], dim=-1)  # (N, H, W, 2)


def random_affine(x: torch.Tensor, generator: torch.Generator, aug: Affine) -> torch.Tensor:
    """Every image of `x` (N, 1, H, W) moved by its own random affine map drawn within `aug`.

    Rotation and zoom about the centre commute, so one warp does both. The area uncovered at the
    borders is filled with black, as torchvision's transforms do.
    """
    n = x.shape[0]

    def uniform(low: float, high: float) -> torch.Tensor:
        u = torch.rand(n, generator=generator, device=x.device, dtype=x.dtype)
        return low + (high - low) * u

    angle = uniform(-aug.degrees, aug.degrees) * (math.pi / 180)
    zoom = uniform(*aug.scale)
    shift = uniform(-aug.translate, aug.translate), uniform(-aug.translate, aug.translate)
    unzoomed = torch.rand(n, generator=generator, device=x.device, dtype=x.dtype) >= aug.scale_p
    zoom = zoom.masked_fill(unzoomed, 1.0)
    # The grid maps output coordinates to input ones, so the inverse transform goes in:
    # output point q samples the input at R·q/z, so z > 1 enlarges; (-1, 1) spans the image: 2·t.
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack(
        [
            torch.stack([cos, -sin, 2 * shift[0]], dim=1),
            torch.stack([sin, cos, 2 * shift[1]], dim=1),
        ],
        dim=1,
    )
    grid = affine_grid(theta, x.shape[2], x.shape[3])
    moved = F.grid_sample(x - BACKGROUND, grid, mode="bilinear", align_corners=False)
    return moved + BACKGROUND
