"""Exact flow by reprojection: Numba = NumPy reference, geometry, photometric consistency, occlusion."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import record

from rl_laof.flow import FlowInputs, exact_flow_numba, exact_flow_numpy

pytestmark = pytest.mark.usefixtures("gl")


@pytest.fixture(scope="module")
def shaken():
    return record("hard:camera", 12)


def test_numba_matches_numpy_reference(shaken):
    ep, fovy = shaken
    x = FlowInputs.from_episode(ep, fovy)
    f_ref, v_ref = exact_flow_numpy(x)
    f_nb, v_nb = exact_flow_numba(x)
    assert v_ref.mean() > 0.5  # most pixels are visible in both frames
    np.testing.assert_array_equal(v_nb, v_ref)
    np.testing.assert_allclose(f_nb, f_ref, atol=1e-4)
    assert np.abs(f_ref).max() > 0.5  # the camera shake moves pixels


def warp_back(frame1: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Bilinear sample of frame t+1 (3, H, W) at q + flow(q)."""
    _, h, w = frame1.shape
    qy, qx = np.mgrid[0:h, 0:w].astype(np.float64)
    sx = np.clip(qx + flow[0], 0, w - 1)
    sy = np.clip(qy + flow[1], 0, h - 1)
    x0, y0 = np.floor(sx).astype(int), np.floor(sy).astype(int)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = sx - x0, sy - y0
    img = frame1.astype(np.float64)
    return (img[:, y0, x0] * (1 - fx) * (1 - fy) + img[:, y0, x1] * fx * (1 - fy)
            + img[:, y1, x0] * (1 - fx) * fy + img[:, y1, x1] * fx * fy)


@pytest.mark.parametrize("distractors", ["none", "hard:camera"])
def test_warping_by_exact_flow_beats_zero_flow_on_agent_pixels(distractors):
    ep, fovy = record(distractors, 10, action_repeat=4)
    flow, valid = exact_flow_numba(FlowInputs.from_episode(ep, fovy))
    err_exact, err_zero = [], []
    for t in range(len(flow)):
        m = valid[t] & ep["agent_mask"][t].astype(bool)
        f0, f1 = ep["obs"][t].astype(np.float64), ep["obs"][t + 1]
        err_exact.append(np.abs(warp_back(f1, flow[t]) - f0)[:, m].mean())
        err_zero.append(np.abs(f1.astype(np.float64) - f0)[:, m].mean())
    assert np.mean(err_exact) < 0.6 * np.mean(err_zero), (np.mean(err_exact), np.mean(err_zero))


def test_projection_lands_on_the_right_geom(shaken):
    """Project every visible agent geom's centre with our intrinsics: the raw render shows that geom
    there (or next to it) — checks focal length, axis conventions and the image's row order."""
    ep, fovy = shaken
    h = ep["depth"].shape[-1]
    f = (h / 2) / np.tan(np.radians(fovy) / 2)
    c = (h - 1) / 2
    hits, total = 0, 0
    for g in np.unique(ep["geom_id"][0]):
        if g < 0:
            continue
        p = ep["camera_mat"][0].T @ (ep["geom_xpos"][0, g] - ep["camera_pos"][0])
        x, y = f * p[0] / -p[2] + c, -f * p[1] / -p[2] + c
        ix, iy = int(round(x)), int(round(y))
        if not (1 <= ix < h - 1 and 1 <= iy < h - 1):
            continue
        total += 1
        hits += g in ep["geom_id"][0][iy - 1:iy + 2, ix - 1:ix + 2]
    assert total >= 5 and hits / total > 0.8, (hits, total)


def test_occluded_pixels_are_invalid(shaken):
    """Put an occluder in frame t+1 (a near geom id and depth over a patch): the pixels that move into
    the patch become invalid, the rest of the flow is unchanged."""
    ep, fovy = shaken
    x = FlowInputs.from_episode(ep, fovy, t=np.array([3]))
    flow, valid = exact_flow_numba(x)
    x.depth[0, 1, 20:40, 20:40] = 0.1
    x.geom_id[0, 1, 20:40, 20:40] = 9999
    flow2, valid2 = exact_flow_numba(x)
    h = x.depth.shape[-1]
    qy, qx = np.mgrid[0:h, 0:h]
    a1 = x.shake_affine[0, 1].astype(np.float64)
    lands = np.zeros((h, h), bool)  # displayed q whose raw target r' falls in the patch
    inv1 = np.linalg.inv(np.vstack([a1, [0, 0, 1]]))
    tx, ty = qx + flow[0, 0], qy + flow[0, 1]
    rx = inv1[0, 0] * tx + inv1[0, 1] * ty + inv1[0, 2]
    ry = inv1[1, 0] * tx + inv1[1, 1] * ty + inv1[1, 2]
    lands = (np.rint(rx) >= 20) & (np.rint(rx) < 40) & (np.rint(ry) >= 20) & (np.rint(ry) < 40)
    assert (valid[0] & lands).sum() > 100
    assert not (valid2[0] & lands).any()
    keep = valid[0] & ~lands
    np.testing.assert_array_equal(valid2[0][keep], True)
    np.testing.assert_array_equal(flow2[0][:, keep], flow[0][:, keep])


def test_flow_targets_for_a_dataset(tmp_path):
    from rl_laof.data import DatasetError, VideoDataset, WindowDataset
    from rl_laof.data.collection import collect
    from rl_laof.data.config import CollectConfig, WindowConfig
    from rl_laof.flow.targets import fill_flow

    cfg = CollectConfig(expert="random", episodes=2, eval_episodes=1, heldout_bg_episodes=0, val_episodes=0,
                        episode_steps=8,
                        image_size=32, workers=1, distractors="hard")
    path = collect(cfg, tmp_path / "ds", progress=False)
    assert VideoDataset(path).flow_path is None
    out = fill_flow(path.parent, "exact", batch=3, progress=False)  # batches that split episodes
    assert out.name == "flow-exact.h5" and not (out.parent / "flow-exact-parts").exists()
    ds = VideoDataset(path)
    assert ds.flow_path == out and "flow" in ds.keys
    w = WindowDataset(ds, "train", WindowConfig(label_split="all"))
    b = w.__getitems__(np.arange(len(w)))
    assert b["flow"].shape == (16, 2, 32, 32) and b["flow_valid"].shape == (16, 32, 32)
    ep = ds.episode("train", 1)
    want, valid = exact_flow_numba(FlowInputs.from_episode(ep, ds.camera_fovy))
    rows = np.flatnonzero(b["episode"].numpy() == 1)
    np.testing.assert_allclose(b["flow"].numpy()[rows], want[b["t"].numpy()[rows]], atol=2e-3)  # float16
    np.testing.assert_array_equal(b["flow_valid"].numpy()[rows], valid[b["t"].numpy()[rows]])
    assert fill_flow(path.parent, "exact", progress=False) == out  # finished: found, not recomputed
    with pytest.raises(DatasetError, match="no estimate flow targets"):
        VideoDataset(path, flow="estimate")
    est = fill_flow(path.parent, "estimate", batch=5, progress=False)  # from RGB alone
    ds_est = VideoDataset(path, flow="estimate")
    assert ds_est.flow_path == est and VideoDataset(path).flow_path == out  # auto prefers exact
    f_est = ds_est.episode("train", 1, ("flow",))["flow"].astype(np.float32)
    m = valid & ep["agent_mask"][:-1].astype(bool)
    epe_est = np.hypot(*(f_est - want).transpose(1, 0, 2, 3))[m].mean()
    epe_zero = np.hypot(*want.transpose(1, 0, 2, 3))[m].mean()
    assert epe_est < epe_zero, (epe_est, epe_zero)
    bare = collect(CollectConfig(expert="random", episodes=1, eval_episodes=0, heldout_bg_episodes=0, val_episodes=0,
                                 episode_steps=4, image_size=32, workers=1, exact_flow_inputs=False),
                   tmp_path / "bare", progress=False)
    with pytest.raises(DatasetError, match="no-exact-flow-inputs"):
        fill_flow(bare.parent, "exact", progress=False)
    assert VideoDataset(fill_flow(bare.parent, "estimate", progress=False).parent / "dataset.h5").flow_path
    with pytest.raises(ValueError, match="Unknown flow method"):
        fill_flow(bare.parent, "raft", progress=False)
