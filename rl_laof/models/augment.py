"""LAOM's image augmentation: a random shift, rotation and perspective change per sample.

All three are one homography per sample, applied with bilinear sampling (borders replicated) to
every image of the sample's window (o_t stack, o_{t+1}, o_{t+k}), so motion between the frames is
kept while the model must ignore where the frame sits. Deliberate choice: LAOM augments per image
stack; the same warp on all of a window's frames keeps the latent action well defined.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def random_homographies(n: int, generator: torch.Generator, shift: float = 4 / 32, degrees: float = 5.0,
                        perspective: float = 0.05) -> torch.Tensor:
    """(n, 3, 3) maps from output to input coordinates in [-1, 1] (``shift`` in the same units)."""
    u = torch.rand(n, 5, generator=generator) * 2 - 1
    a = u[:, 0] * math.radians(degrees)
    h = torch.zeros(n, 3, 3)
    h[:, 0, 0], h[:, 0, 1], h[:, 0, 2] = torch.cos(a), -torch.sin(a), u[:, 1] * shift
    h[:, 1, 0], h[:, 1, 1], h[:, 1, 2] = torch.sin(a), torch.cos(a), u[:, 2] * shift
    h[:, 2, 0], h[:, 2, 1], h[:, 2, 2] = u[:, 3] * perspective, u[:, 4] * perspective, 1.0
    return h


def warp(images: torch.Tensor, homographies: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) float images warped by (B, 3, 3) homographies (output -> input coordinates)."""
    b, _, hgt, wid = images.shape
    ys = torch.linspace(-1, 1, hgt)
    xs = torch.linspace(-1, 1, wid)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    pts = torch.stack([gx, gy, torch.ones_like(gx)], -1).view(1, -1, 3)  # (1, HW, 3)
    src = pts @ homographies.to(images.dtype).transpose(1, 2)  # (B, HW, 3)
    grid = (src[..., :2] / src[..., 2:].clamp_min(1e-6)).view(b, hgt, wid, 2)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=True)
