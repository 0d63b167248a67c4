"""Flow from RGB alone: coarse-to-fine dual TV-L1 (Zach, Pock & Bischof 2007; Sanchez et al. 2013).

For the pixels of I0, minimise  sum |grad u| + lambda |I1(x + u) - I0(x)|  by linearising I1 around
the current flow (``warps`` times per scale), alternating a point-wise thresholding step on an
auxiliary flow v, ``u = v + theta div p`` and a projected dual step on p (``iters`` times per warp),
with a 3x3 median filter after each warp, on an image pyramid (factor 2) from coarse to fine.

Images are grey levels in 0..255 (lambda's scale, as in OpenCV's DualTVL1). Batched: (B, H, W)
pairs, one pair per thread (numba ``prange``). Returns (B, 2, H, W) float32 flow (dx, dy) that maps
a pixel of I0 to its position in I1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np


@dataclass(frozen=True)
class TVL1Params:
    lam: float = 0.15  # data weight
    theta: float = 0.3  # coupling of u and v
    tau: float = 0.25  # dual step
    scales: int = 3  # pyramid levels (64 px -> 16 px)
    warps: int = 3  # 5 x 30 (OpenCV's) is 5x slower and no better on 64 px frames (bench_flow)
    iters: int = 10
    median: bool = False  # a 3x3 median after each warp: 4.6x slower, no gain on small frames


def to_gray(frames: np.ndarray) -> np.ndarray:
    """(..., 3, H, W) uint8 RGB -> (..., H, W) float32 grey levels (0..255)."""
    f = frames.astype(np.float32)
    return 0.299 * f[..., 0, :, :] + 0.587 * f[..., 1, :, :] + 0.114 * f[..., 2, :, :]


@numba.njit(cache=True, inline="always")
def _bilinear(img, x, y):
    h, w = img.shape
    x = min(max(x, 0.0), w - 1.0)
    y = min(max(y, 0.0), h - 1.0)
    x0 = min(int(x), w - 2) if w > 1 else 0
    y0 = min(int(y), h - 2) if h > 1 else 0
    fx = x - x0
    fy = y - y0
    return ((1 - fx) * (1 - fy) * img[y0, x0] + fx * (1 - fy) * img[y0, x0 + 1]
            + (1 - fx) * fy * img[y0 + 1, x0] + fx * fy * img[y0 + 1, x0 + 1])


@numba.njit(cache=True)
def _downsample(img):
    h, w = img.shape
    out = np.empty((h // 2, w // 2), np.float32)
    for y in range(h // 2):
        for x in range(w // 2):
            out[y, x] = 0.25 * (img[2 * y, 2 * x] + img[2 * y + 1, 2 * x] + img[2 * y, 2 * x + 1]
                                + img[2 * y + 1, 2 * x + 1])
    return out


@numba.njit(cache=True)
def _upsample_flow(u, h, w):
    out = np.empty((2, h, w), np.float32)
    hs, ws = u.shape[1], u.shape[2]
    sy = hs / h
    sx = ws / w
    for y in range(h):
        for x in range(w):
            # pixel centres: (x + 0.5) * sx - 0.5 on the coarse grid
            cx = (x + 0.5) * sx - 0.5
            cy = (y + 0.5) * sy - 0.5
            out[0, y, x] = _bilinear(u[0], cx, cy) / sx
            out[1, y, x] = _bilinear(u[1], cx, cy) / sy
    return out


@numba.njit(cache=True)
def _median3(a):
    h, w = a.shape
    out = np.empty_like(a)
    buf = np.empty(9, np.float32)
    for y in range(h):
        for x in range(w):
            k = 0
            for dy in range(-1, 2):
                for dx in range(-1, 2):
                    yy = min(max(y + dy, 0), h - 1)
                    xx = min(max(x + dx, 0), w - 1)
                    buf[k] = a[yy, xx]
                    k += 1
            out[y, x] = np.sort(buf)[4]
    return out


@numba.njit(cache=True)
def _tvl1_level(I0, I1, u, lam, theta, tau, warps, iters, median):
    h, w = I0.shape
    # gradients of I1 (central differences)
    gx = np.zeros((h, w), np.float32)
    gy = np.zeros((h, w), np.float32)
    for y in range(h):
        for x in range(w):
            gx[y, x] = 0.5 * (I1[y, min(x + 1, w - 1)] - I1[y, max(x - 1, 0)])
            gy[y, x] = 0.5 * (I1[min(y + 1, h - 1), x] - I1[max(y - 1, 0), x])
    p = np.zeros((4, h, w), np.float32)
    v = np.zeros((2, h, w), np.float32)
    Ix = np.empty((h, w), np.float32)
    Iy = np.empty((h, w), np.float32)
    rho_c = np.empty((h, w), np.float32)
    g2 = np.empty((h, w), np.float32)
    lt = lam * theta
    for _ in range(warps):
        for y in range(h):
            for x in range(w):
                wx = x + u[0, y, x]
                wy = y + u[1, y, x]
                i1 = _bilinear(I1, wx, wy)
                ix = _bilinear(gx, wx, wy)
                iy = _bilinear(gy, wx, wy)
                Ix[y, x] = ix
                Iy[y, x] = iy
                g2[y, x] = ix * ix + iy * iy
                rho_c[y, x] = i1 - ix * u[0, y, x] - iy * u[1, y, x] - I0[y, x]
        for _ in range(iters):
            for y in range(h):
                for x in range(w):
                    rho = rho_c[y, x] + Ix[y, x] * u[0, y, x] + Iy[y, x] * u[1, y, x]
                    gg = g2[y, x]
                    if rho < -lt * gg:
                        d0 = lt * Ix[y, x]
                        d1 = lt * Iy[y, x]
                    elif rho > lt * gg:
                        d0 = -lt * Ix[y, x]
                        d1 = -lt * Iy[y, x]
                    elif gg > 1e-10:
                        d0 = -rho * Ix[y, x] / gg
                        d1 = -rho * Iy[y, x] / gg
                    else:
                        d0 = 0.0
                        d1 = 0.0
                    v[0, y, x] = u[0, y, x] + d0
                    v[1, y, x] = u[1, y, x] + d1
            # u = v + theta * div p (backward differences, p = 0 outside)
            for y in range(h):
                for x in range(w):
                    for c in range(2):
                        px = p[2 * c, y, x]
                        py = p[2 * c + 1, y, x]
                        div = (px if x < w - 1 else 0.0) - (p[2 * c, y, x - 1] if x > 0 else 0.0)
                        div += (py if y < h - 1 else 0.0) - (p[2 * c + 1, y - 1, x] if y > 0 else 0.0)
                        u[c, y, x] = v[c, y, x] + theta * div
            # p <- (p + tau/theta grad u) / (1 + tau/theta |grad u|)  (forward differences)
            s = tau / theta
            for y in range(h):
                for x in range(w):
                    for c in range(2):
                        ux = (u[c, y, x + 1] - u[c, y, x]) if x < w - 1 else 0.0
                        uy = (u[c, y + 1, x] - u[c, y, x]) if y < h - 1 else 0.0
                        ng = 1.0 + s * np.sqrt(ux * ux + uy * uy)
                        p[2 * c, y, x] = (p[2 * c, y, x] + s * ux) / ng
                        p[2 * c + 1, y, x] = (p[2 * c + 1, y, x] + s * uy) / ng
        if median:
            u[0] = _median3(u[0])
            u[1] = _median3(u[1])
    return u


@numba.njit(cache=True)
def _tvl1_pair(I0, I1, lam, theta, tau, scales, warps, iters, median):
    pyr0 = [I0]
    pyr1 = [I1]
    for _ in range(scales - 1):
        if pyr0[-1].shape[0] < 16 or pyr0[-1].shape[1] < 16:
            break
        pyr0.append(_downsample(pyr0[-1]))
        pyr1.append(_downsample(pyr1[-1]))
    n = len(pyr0)
    u = np.zeros((2, pyr0[n - 1].shape[0], pyr0[n - 1].shape[1]), np.float32)
    for k in range(n - 1, -1, -1):
        if k < n - 1:
            u = _upsample_flow(u, pyr0[k].shape[0], pyr0[k].shape[1])
        u = _tvl1_level(pyr0[k], pyr1[k], u, lam, theta, tau, warps, iters, median)
    return u


@numba.njit(parallel=True, cache=True)
def _tvl1_batch(I0, I1, out, lam, theta, tau, scales, warps, iters, median):
    for b in numba.prange(I0.shape[0]):
        out[b] = _tvl1_pair(I0[b], I1[b], lam, theta, tau, scales, warps, iters, median)


def gray_pairs(frames0: np.ndarray, frames1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(B, 3, H, W) uint8 RGB or (B, H, W) grey pairs -> two contiguous (B, H, W) float32 grey batches."""
    g0 = to_gray(frames0) if frames0.ndim == 4 else np.asarray(frames0, np.float32)
    g1 = to_gray(frames1) if frames1.ndim == 4 else np.asarray(frames1, np.float32)
    if g0.shape != g1.shape or g0.ndim != 3:
        raise ValueError(f"frame batches must match and be (B, H, W) or (B, 3, H, W): {frames0.shape}, {frames1.shape}")
    return np.ascontiguousarray(g0, np.float32), np.ascontiguousarray(g1, np.float32)


def estimate_flow_numba(frames0: np.ndarray, frames1: np.ndarray, params: TVL1Params | None = None) -> np.ndarray:
    """Flow from I0 to I1: (B, H, W) grey or (B, 3, H, W) uint8 RGB pairs -> (B, 2, H, W) float32."""
    params = params or TVL1Params()
    g0, g1 = gray_pairs(frames0, frames1)
    out = np.empty((g0.shape[0], 2, *g0.shape[1:]), np.float32)
    _tvl1_batch(g0, g1, out, params.lam, params.theta, params.tau, params.scales, params.warps, params.iters,
                params.median)
    return out
