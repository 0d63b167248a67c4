"""LAOF's flow target: the agent's flow, encoded as an RGB image.

Bu et al. (2025) encode flow as HSV: hue = direction, saturation = value = min(1, |f| / (sigma * diag))
with diag the image diagonal in pixels, so no motion is black and speed is brightness; sigma is set
per task (0.004-0.02 in the paper). The raw 2-channel flow is kept alongside: the encoding is
invertible below saturation (:func:`decode_flow_rgb`).
"""

from __future__ import annotations

import numpy as np


def _diag(h: int, w: int) -> float:
    return float(np.hypot(h, w))


def agent_flow(flow: np.ndarray, agent_mask: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """flow (..., 2, H, W) x agent mask (..., H, W) [x validity]: LAOF's target before encoding."""
    m = agent_mask.astype(flow.dtype)
    if valid is not None:
        m = m * valid.astype(flow.dtype)
    return flow * m[..., None, :, :]


def encode_flow_rgb(flow: np.ndarray, sigma: float) -> np.ndarray:
    """(..., 2, H, W) flow in pixels -> (..., 3, H, W) float32 RGB in [0, 1]."""
    if sigma <= 0:
        raise ValueError(f"sigma={sigma}: must be > 0 (LAOF used 0.004-0.02)")
    flow = np.asarray(flow, np.float64)
    h, w = flow.shape[-2:]
    u, v = flow[..., 0, :, :], flow[..., 1, :, :]
    val = np.minimum(1.0, np.hypot(u, v) / (sigma * _diag(h, w)))
    hue = (np.arctan2(v, u) / (2 * np.pi)) % 1.0
    return _hsv_to_rgb(hue, val, val).astype(np.float32)


def decode_flow_rgb(rgb: np.ndarray, sigma: float) -> np.ndarray:
    """Inverse of :func:`encode_flow_rgb` (exact below saturation): (..., 3, H, W) -> (..., 2, H, W)."""
    rgb = np.asarray(rgb, np.float64)
    if rgb.dtype.kind in "ui" or rgb.max() > 1.0 + 1e-6:
        rgb = rgb / 255.0
    h, w = rgb.shape[-2:]
    hue, _, val = _rgb_to_hsv(rgb[..., 0, :, :], rgb[..., 1, :, :], rgb[..., 2, :, :])
    mag = val * sigma * _diag(h, w)
    ang = hue * 2 * np.pi
    return np.stack([mag * np.cos(ang), mag * np.sin(ang)], -3).astype(np.float32)


def flow_to_uint8(flow: np.ndarray, sigma: float | None = None) -> np.ndarray:
    """(2, H, W) -> (H, W, 3) uint8 for viewing; ``sigma=None`` scales to the 99th percentile speed."""
    h, w = flow.shape[-2:]
    if sigma is None:
        speed = np.hypot(flow[0], flow[1])
        sigma = max(float(np.percentile(speed, 99)), 1e-6) / _diag(h, w)
    rgb = encode_flow_rgb(flow, sigma)
    return (np.moveaxis(rgb, 0, -1) * 255 + 0.5).astype(np.uint8)


def _hsv_to_rgb(h, s, v):
    i = np.floor(h * 6.0)
    f = h * 6.0 - i
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    i = i.astype(int) % 6
    r = np.choose(i, [v, q, p, p, t, v])
    g = np.choose(i, [t, v, v, q, p, p])
    b = np.choose(i, [p, p, t, v, v, q])
    return np.stack([r, g, b], -3)


def _rgb_to_hsv(r, g, b):
    mx = np.maximum(np.maximum(r, g), b)
    mn = np.minimum(np.minimum(r, g), b)
    delta = mx - mn
    s = np.where(mx > 0, delta / np.where(mx > 0, mx, 1), 0.0)
    dd = np.where(delta > 0, delta, 1.0)
    h = np.where(mx == r, ((g - b) / dd) % 6.0, np.where(mx == g, (b - r) / dd + 2.0, (r - g) / dd + 4.0))
    h = np.where(delta > 0, h / 6.0, 0.0)
    return h, s, mx
