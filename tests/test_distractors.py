"""The image-space distractor kernel: each kind changes only what it should."""

import math

import numpy as np
import pytest
from conftest import key_mask

from envs.assets import KEY_COLOR
from envs.backgrounds import clean_sky
from envs.config import DistractorConfig
from envs.distractors import Distractors, invert_affine, shake_affine

SIZE = 32


def synthetic_frames(n=3, size=SIZE, seed=0):
    """Key-colour sky with a random opaque 'agent' blob in the middle."""
    rng = np.random.default_rng(seed)
    f = np.empty((n, 3, size, size), np.uint8)
    f[:] = np.array(KEY_COLOR, np.uint8)[None, :, None, None]
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        blob = (xx - size / 2 + i) ** 2 / 40 + (yy - size / 2) ** 2 / 15 < 1
        f[i][:, blob] = rng.integers(20, 200, (3, blob.sum()), dtype=np.uint8)
    return f


def make(kinds, difficulty="hard", seed=0, n=3, size=SIZE, **kw):
    d = Distractors(DistractorConfig(difficulty=difficulty, kinds=kinds, **kw), n, size, seed)
    d.reset(np.arange(n))
    return d


def test_clean_composites_static_sky_and_keeps_scene_exactly():
    frames = synthetic_frames()
    d = make((), difficulty="none")
    out, _ = d.apply(frames, np.arange(3))
    sky = key_mask(frames)
    assert np.array_equal(out.transpose(0, 2, 3, 1)[~sky], frames.transpose(0, 2, 3, 1)[~sky])
    expected_sky = np.broadcast_to(clean_sky(SIZE), frames.shape).transpose(0, 2, 3, 1)[sky]
    assert np.array_equal(out.transpose(0, 2, 3, 1)[sky], expected_sky)


def test_background_changes_only_sky_pixels_and_plays_video():
    frames = synthetic_frames()
    clean, _ = make((), difficulty="none").apply(frames, np.arange(3))
    d = make(("background",))
    out, _ = d.apply(frames, np.arange(3))
    sky = key_mask(frames)
    diff = np.any(out != clean, axis=1)
    assert not diff[~sky].any(), "background distractor touched scene pixels"
    assert diff[sky].mean() > 0.5, "background did not replace the sky"
    d.step()
    out2, _ = d.apply(frames, np.arange(3))
    assert np.any(out2 != out), "dynamic background did not move"


def test_color_shifts_only_scene_pixels_within_scale():
    frames = synthetic_frames()
    clean, _ = make((), difficulty="none").apply(frames, np.arange(3))
    d = make(("color",), difficulty="medium")
    for _ in range(20):
        d.step()
    out, _ = d.apply(frames, np.arange(3))
    sky = key_mask(frames)
    delta = out.astype(int) - clean.astype(int)
    assert np.all(delta.transpose(0, 2, 3, 1)[sky] == 0), "colour distractor touched the background"
    scene = delta.transpose(0, 2, 3, 1)[~sky]
    assert np.abs(scene).max() <= math.ceil(0.2 * 255) + 1
    assert np.abs(scene).mean() > 1.0
    # one offset per env and channel: every scene pixel of env 0 moved by the same amount
    d0 = delta[0].transpose(1, 2, 0)[~sky[0]]
    assert np.all(d0 == d0[0])


def test_camera_roll_of_90_degrees_is_an_exact_rotation():
    frames = synthetic_frames(n=1)
    d = make(("camera",), n=1)
    d.cam[0] = (math.pi / 2, 0.0)  # roll 90 deg, distance unchanged -> pixel centres map to centres
    out, _ = d.apply(frames, [0])
    clean, _ = make((), difficulty="none", n=1).apply(frames, [0])
    sky = key_mask(frames)[0]
    rotated_scene = np.rot90(~sky, k=-1)  # image y points down: +roll turns clockwise on screen
    assert np.array_equal(np.any(out[0] != np.rot90(clean[0], k=-1, axes=(1, 2)), axis=0) & rotated_scene,
                          np.zeros_like(rotated_scene))


def test_affine_helpers_invert_and_respect_bounds():
    m = shake_affine(0.3, 1.2, 64)
    inv = invert_affine(m)
    p = np.array([10.0, 20.0, 1.0])
    q = np.append(m @ p, 1.0)
    assert np.allclose(inv @ q, p[:2])
    d = make(("camera",), difficulty="hard", n=4)
    for _ in range(200):
        d.step()
    s = 0.3
    assert np.all(np.abs(d.cam[:, 0]) <= math.pi / 2 * s + 1e-9)
    assert np.all((d.cam[:, 1] >= -0.5 * s - 1e-9) & (d.cam[:, 1] <= 1.5 * s + 1e-9))
    assert np.all(np.abs(d.cam_vel) <= 0.4 * s + 1e-9)


def test_objects_change_only_their_own_pixels_and_hide_the_agent_mask():
    frames = synthetic_frames()
    mask = (~key_mask(frames)).astype(np.uint8)
    clean, m_clean = make((), difficulty="none").apply(frames, np.arange(3), mask)
    d = make(("objects",))
    out, m_out = d.apply(frames, np.arange(3), mask)
    assert np.array_equal(m_clean, mask)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    for i in range(3):
        inside = np.zeros((SIZE, SIZE), bool)
        for o in d.objects[i, : d.num_obj]:
            dx, dy = xx - o[0], yy - o[1]
            inside |= (dx**2 + dy**2 <= o[4] ** 2) if o[8] < 0.5 else ((abs(dx) <= o[4]) & (abs(dy) <= o[4]))
        assert inside.any()
        assert not np.any(out[i] != clean[i], axis=0)[~inside].any()
        assert not m_out[i][inside].any()
        assert np.array_equal(m_out[i][~inside], mask[i][~inside])


def test_same_seed_same_distractors_per_env_regardless_of_other_resets():
    frames = synthetic_frames()
    a, b = make(("background", "color", "camera", "objects")), make(("background", "color", "camera", "objects"))
    for t in range(10):
        a.step()
        b.step()
        if t == 4:
            b.reset([1])  # env 1 starts a new episode in b only
    oa, _ = a.apply(frames, np.arange(3))
    ob, _ = b.apply(frames, np.arange(3))
    assert np.array_equal(oa[0], ob[0]) and np.array_equal(oa[2], ob[2])
    assert not np.array_equal(oa[1], ob[1])
    c = make(("background", "color", "camera", "objects"), seed=1)
    oc, _ = c.apply(frames, np.arange(3))
    assert not np.array_equal(oc, make(("background", "color", "camera", "objects")).apply(frames, np.arange(3))[0])


def test_static_distractors_do_not_move_within_an_episode():
    frames = synthetic_frames()
    d = make(("background", "color", "camera", "objects"), dynamic=False)
    out, _ = d.apply(frames, np.arange(3))
    for _ in range(5):
        d.step()
    assert np.array_equal(out, d.apply(frames, np.arange(3))[0])


def test_eval_backgrounds_differ_from_train():
    frames = synthetic_frames(n=1)
    tr = make(("background",), n=1, background_split="train")
    ev = make(("background",), n=1, background_split="eval")
    assert not np.array_equal(tr.apply(frames, [0])[0], ev.apply(frames, [0])[0])
    assert tr.bank.num_videos == 60 and ev.bank.num_videos == 30  # hard: all videos of the split
    assert make(("background",), difficulty="easy", n=1).bank.num_videos == 4


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(difficulty="extreme"), "easy, medium, hard"),
        (dict(difficulty="hard", kinds=("background", "sparkles")), "valid kinds"),
        (dict(difficulty="hard", scale=1.5), "out of range"),
        (dict(difficulty="hard", background_split="test"), "train, eval"),
        (dict(difficulty="hard", background_source="/no/such/folder"), "procedural"),
    ],
)
def test_bad_distractor_config_says_how_to_fix(kwargs, match):
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        DistractorConfig(**kwargs)


def test_parse_accepts_names_kinds_and_dicts():
    assert DistractorConfig.parse("hard").resolved_scale == 0.3
    assert DistractorConfig.parse("medium:background,camera").kinds == ("background", "camera")
    assert DistractorConfig.parse(None).active_kinds == ()
    assert DistractorConfig.parse({"difficulty": "easy", "scale": 0.25}).resolved_scale == 0.25


def test_user_background_folder_fills_the_sky(tmp_path):
    import imageio.v3 as iio

    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]
    for i, c in enumerate(colours):
        iio.imwrite(tmp_path / f"bg{i}.png", np.full((40, 50, 3), c, np.uint8))
    frames = synthetic_frames(n=2)
    # "easy" asks for 4 videos; a folder with fewer train files uses all it has
    d = make(("background",), difficulty="easy", n=2, background_source=str(tmp_path))
    out, _ = d.apply(frames, np.arange(2))
    sky = key_mask(frames)
    for i in range(2):
        got = {tuple(p) for p in out[i].transpose(1, 2, 0)[sky[i]]}
        assert len(got) == 1 and got.pop() in colours


def test_laom_level_draws_within_its_scales():
    """LAOM's headline setting: camera and colour at 0.1, every training video, dynamic, no occluders."""
    cfg = DistractorConfig.parse("laom")
    assert cfg.resolved_scale == 0.1 and cfg.resolved_num_videos is None and cfg.resolved_num_objects == 0
    assert cfg.dynamic
    d = Distractors(cfg, 8, SIZE, seed=3)
    d.reset(np.arange(8))
    assert d.num_obj == 0 and d.use_bg and d.use_color and d.use_camera
    hard = Distractors(DistractorConfig.parse("hard"), 1, SIZE, seed=3)
    assert d.bank.num_videos == hard.bank.num_videos, "laom uses every training video, as hard does"
    videos = set()
    for _ in range(300):
        d.step()
        videos.update(d.video.tolist())
        assert np.all(np.abs(d.color) <= 0.1 + 1e-12)
        assert np.all(np.abs(d.cam[:, 0]) <= math.pi / 2 * 0.1 + 1e-9)
        assert np.all((d.cam[:, 1] >= -0.05 - 1e-9) & (d.cam[:, 1] <= 0.15 + 1e-9))
        assert np.all(np.abs(d.cam_vel) <= 0.04 + 1e-12)
    assert np.abs(d.color).max() > 0.02, "colour offset never moved"
    frames = synthetic_frames(n=8)
    out, mask = d.apply(frames, np.arange(8))
    assert out.shape == frames.shape
