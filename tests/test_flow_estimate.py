"""The RGB-only TV-L1 estimator recovers known synthetic motion."""

import numpy as np
import pytest
from scipy import ndimage

from rl_laof.flow.estimate import estimate_flow_numba, to_gray

H = 64


@pytest.fixture(scope="module")
def texture():
    rng = np.random.default_rng(0)
    img = ndimage.gaussian_filter(rng.uniform(0, 255, (2 * H, 2 * H)), 2.0)
    return (img - img.min()) / (img.max() - img.min()) * 255


def sample(img, x, y):
    return ndimage.map_coordinates(img, [y + H // 2, x + H // 2], order=3, mode="nearest").astype(np.float32)


def epe(flow, gx, gy, border=4):
    e = np.hypot(flow[0] - gx, flow[1] - gy)
    return e[border:-border, border:-border].mean()


@pytest.mark.parametrize("dx,dy", [(0.37, -0.62), (-0.2, 0.15), (1.3, 0.8)])
def test_recovers_subpixel_translation(texture, dx, dy):
    yy, xx = np.mgrid[0:H, 0:H].astype(float)
    i0 = sample(texture, xx, yy)
    i1 = sample(texture, xx - dx, yy - dy)  # I1(x + d) = I0(x)
    flow = estimate_flow_numba(i0[None], i1[None])[0]
    assert epe(flow, dx, dy) < 0.1


def test_recovers_rotation(texture):
    yy, xx = np.mgrid[0:H, 0:H].astype(float)
    a, c = np.radians(2.0), (H - 1) / 2
    i0 = sample(texture, xx, yy)
    i1 = sample(texture, np.cos(a) * (xx - c) + np.sin(a) * (yy - c) + c,
                -np.sin(a) * (xx - c) + np.cos(a) * (yy - c) + c)
    gx = np.cos(a) * (xx - c) - np.sin(a) * (yy - c) + c - xx
    gy = np.sin(a) * (xx - c) + np.cos(a) * (yy - c) + c - yy
    flow = estimate_flow_numba(i0[None], i1[None])[0]
    assert np.hypot(gx, gy).max() > 1.0
    assert epe(flow, gx, gy) < 0.1


def test_batched_rgb_input_and_bad_shapes(texture):
    yy, xx = np.mgrid[0:H, 0:H].astype(float)
    g = np.clip(sample(texture, xx, yy), 0, 255).astype(np.uint8)
    rgb = np.repeat(g[None, None], 3, 1)
    flow = estimate_flow_numba(np.repeat(rgb, 2, 0), np.repeat(rgb, 2, 0))
    assert flow.shape == (2, 2, H, H) and np.abs(flow).max() < 1e-3  # no motion, no flow
    np.testing.assert_allclose(to_gray(rgb)[0], g, atol=0.01)
    with pytest.raises(ValueError, match="must match"):
        estimate_flow_numba(np.zeros((2, 8, 8)), np.zeros((3, 8, 8)))
