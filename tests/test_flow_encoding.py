"""LAOF's HSV flow encoding: round trip, black for no motion, saturation, agent masking."""

import colorsys

import numpy as np
import pytest

from rl_laof.flow.encoding import agent_flow, decode_flow_rgb, encode_flow_rgb, flow_to_uint8


def test_round_trip_below_saturation():
    rng = np.random.default_rng(0)
    sigma, h, w = 0.01, 64, 64
    limit = sigma * np.hypot(h, w)
    flow = rng.uniform(-0.7, 0.7, (5, 2, h, w)) * limit / np.sqrt(2)  # |f| < limit
    rgb = encode_flow_rgb(flow, sigma)
    assert rgb.shape == (5, 3, h, w) and rgb.dtype == np.float32 and 0 <= rgb.min() and rgb.max() <= 1
    np.testing.assert_allclose(decode_flow_rgb(rgb, sigma), flow, atol=1e-5)
    # as uint8 images: S = V makes the hue of slow pixels coarse (chroma V^2 has few levels), so
    # the worst error is ~limit / sqrt(255), the typical one a fraction of a quantisation step
    q = np.round(rgb * 255).astype(np.uint8)
    err = np.abs(decode_flow_rgb(q, sigma) - flow)
    assert err.max() < 0.15 * limit and err.mean() < 0.01 * limit


def test_encoding_matches_the_definition():
    sigma, h, w = 0.02, 32, 48
    flow = np.zeros((2, h, w))
    flow[:, 3, 4] = [1.0, 0.0]  # right: hue 0 (red)
    flow[:, 5, 6] = [0.0, 2.0]  # down (image y): hue 1/4
    flow[:, 7, 8] = [-100.0, 0.0]  # saturated: S = V = 1
    rgb = encode_flow_rgb(flow, sigma)
    diag = np.hypot(h, w)
    for (y, x), (u, v) in {(3, 4): (1.0, 0.0), (5, 6): (0.0, 2.0), (7, 8): (-100.0, 0.0)}.items():
        mag = min(1.0, np.hypot(u, v) / (sigma * diag))
        want = colorsys.hsv_to_rgb((np.arctan2(v, u) / (2 * np.pi)) % 1, mag, mag)
        np.testing.assert_allclose(rgb[:, y, x], want, atol=1e-6)
    still = np.ones((h, w), bool)
    still[[3, 5, 7], [4, 6, 8]] = False
    assert (rgb[:, still] == 0).all()  # no motion is black
    assert flow_to_uint8(flow).shape == (h, w, 3)
    with pytest.raises(ValueError, match="sigma"):
        encode_flow_rgb(flow, 0.0)


def test_agent_flow_masks():
    flow = np.ones((2, 2, 4, 4), np.float32)
    mask = np.zeros((2, 4, 4), bool)
    mask[:, 1, 1] = True
    valid = np.ones((2, 4, 4), bool)
    valid[1] = False
    out = agent_flow(flow, mask, valid)
    assert out[0, :, 1, 1].tolist() == [1, 1] and out[0].sum() == 2 and out[1].sum() == 0
