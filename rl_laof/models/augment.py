"""Image augmentation of latent action models: homographies per sample or per image, applied by ``warp``.

- :func:`laom_homographies`: LAOM's (dunnolab/laom, ``Augmenter``): every image of a window (o_t stack,
  o_{t+k} stack, o_{t+1} stack) draws its own one of 8 compositions of shift / rotate / perspective, at the
  reference's magnitudes. :class:`rl_laof.models.laom_model.LAOMModel` uses it.
- :func:`random_homographies`: one mild warp per sample, the same for every image of its window (motion
  between the frames is kept while the model must ignore where the frame sits): what ``augment`` gives
  LAPO / LAOF (``LatentActionModel``).

Every homography maps output to input coordinates in [-1, 1] (``align_corners=True``); ``warp`` samples
bilinearly with borders replicated.
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
    ys = torch.linspace(-1, 1, hgt, device=images.device)
    xs = torch.linspace(-1, 1, wid, device=images.device)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    pts = torch.stack([gx, gy, torch.ones_like(gx)], -1).view(1, -1, 3)  # (1, HW, 3)
    src = pts @ homographies.to(images.device, images.dtype).transpose(1, 2)  # (B, HW, 3)
    grid = (src[..., :2] / src[..., 2:].clamp_min(1e-6)).view(b, hgt, wid, 2)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=True)


# ---------------------------------------------------------------------------------------------------- LAOM's
# dunnolab/laom (src/augmentations.py, ``Augmenter``): every image draws one of these 8 compositions, applied
# left to right; magnitudes at 64 px (its default resolution), scaled with the frame side here.
LAOM_COMPOSITIONS: tuple[tuple[str, ...], ...] = (
    (), ("shift",), ("rotate",), ("perspective",), ("shift", "rotate"), ("rotate", "shift"),
    ("rotate", "perspective"), ("perspective", "rotate"))
LAOM_SHIFT_PAD = 14  # px at 64: a shift of U{-14..14} px per axis (DrQ's replicate-pad-and-crop)
LAOM_ROTATE_DEGREES = 90.0  # U(-90, 90) degrees about the centre (edge-padded by 17 px, so no black corners)
LAOM_PERSPECTIVE_PAD = 30  # px at 64: the frame is edge-padded by 30 px, then torchvision's RandomPerspective
LAOM_PERSPECTIVE_SCALE = 0.5  # (distortion 0.5: each corner moves inwards by U{0..0.5 * side/2} px per axis),
#                               then centre-cropped back


def _pixel_to_unit(side: int) -> torch.Tensor:
    """Pixel coordinates (0 .. side-1, pixel centres) -> ``warp``'s [-1, 1] (align_corners=True)."""
    s = 2.0 / (side - 1)
    return torch.tensor([[s, 0.0, -1.0], [0.0, s, -1.0], [0.0, 0.0, 1.0]], dtype=torch.float64)


def _translate(tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    m = torch.eye(3, dtype=torch.float64).repeat(len(tx), 1, 1)
    m[:, 0, 2], m[:, 1, 2] = tx, ty
    return m


def _four_point(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """(N, 3, 3) homographies mapping the 4 points ``src`` (N, 4, 2) to ``dst`` (N, 4, 2)."""
    n = len(src)
    a = torch.zeros(n, 8, 8, dtype=torch.float64)
    x, y, u, v = src[..., 0], src[..., 1], dst[..., 0], dst[..., 1]
    a[:, 0::2, 0], a[:, 0::2, 1], a[:, 0::2, 2] = x, y, 1.0
    a[:, 0::2, 6], a[:, 0::2, 7] = -x * u, -y * u
    a[:, 1::2, 3], a[:, 1::2, 4], a[:, 1::2, 5] = x, y, 1.0
    a[:, 1::2, 6], a[:, 1::2, 7] = -x * v, -y * v
    b = torch.stack([u, v], -1).reshape(n, 8)
    h = torch.linalg.solve(a, b)
    return torch.cat([h, torch.ones(n, 1, dtype=torch.float64)], 1).view(n, 3, 3)


def laom_homographies(n: int, generator: torch.Generator, image_size: int, images: int = 3) -> torch.Tensor:
    """(n, images, 3, 3) maps (output -> input, ``warp``'s coordinates): for each of the ``images`` images of
    each of ``n`` samples, its own draw of one of :data:`LAOM_COMPOSITIONS` with its own parameters.

    One homography per image is the composition of the reference's steps; the reference resamples after each
    step (crop, then pad again), here the image is resampled once with its borders replicated (what the
    reference's edge / replicate padding gives, except a few black corner pixels its perspective can leave).
    The reference draws a rotation angle and a perspective once per call for all images that chose that
    step (torchvision's transforms take one draw per batch); here every image draws its own.
    """
    m = n * images
    scale = image_size / 64.0
    pad_shift = max(1, round(LAOM_SHIFT_PAD * scale))
    pad_persp = round(LAOM_PERSPECTIVE_PAD * scale)
    choice = torch.randint(len(LAOM_COMPOSITIONS), (m,), generator=generator)
    shift = torch.randint(-pad_shift, pad_shift + 1, (m, 2), generator=generator).double()
    angle = (torch.rand(m, generator=generator, dtype=torch.float64) * 2 - 1) * math.radians(LAOM_ROTATE_DEGREES)
    big = image_size + 2 * pad_persp  # the edge-padded frame the perspective acts on
    reach = int(LAOM_PERSPECTIVE_SCALE * (big // 2))
    inward = torch.randint(0, reach + 1, (m, 4, 2), generator=generator).double()

    c = (image_size - 1) / 2.0
    cos, sin = torch.cos(angle), torch.sin(angle)
    rot = torch.zeros(m, 3, 3, dtype=torch.float64)
    rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1], rot[:, 2, 2] = cos, -sin, sin, cos, 1.0
    centre = torch.full((m,), c, dtype=torch.float64)
    steps = {
        "shift": _translate(shift[:, 0], shift[:, 1]),  # output pixel u samples u + d
        "rotate": _translate(centre, centre) @ rot @ _translate(-centre, -centre),
    }
    corners = torch.tensor([[0, 0], [big - 1, 0], [big - 1, big - 1], [0, big - 1]], dtype=torch.float64)
    towards = torch.tensor([[1, 1], [-1, 1], [-1, -1], [1, -1]], dtype=torch.float64)
    moved = corners + towards * inward  # where the padded frame's corners land
    # output (moved corners) -> input (corners), in the padded frame; then in the frame's own pixels
    pad = torch.full((m,), float(pad_persp), dtype=torch.float64)
    steps["perspective"] = _translate(-pad, -pad) @ _four_point(moved, corners.expand(m, 4, 2)) @ _translate(pad, pad)

    h = torch.eye(3, dtype=torch.float64).repeat(m, 1, 1)
    for i, comp in enumerate(LAOM_COMPOSITIONS):
        sel = choice == i
        for step in comp:  # applied in order, second(first(x))(u) = x(A_first A_second u)
            h[sel] = h[sel] @ steps[step][sel]
    k = _pixel_to_unit(image_size)
    h = k @ h @ torch.linalg.inv(k)
    return h.float().view(n, images, 3, 3)
