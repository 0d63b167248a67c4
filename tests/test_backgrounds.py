"""Tests for envs.backgrounds: packing invariants, procedural library, folder source."""

from __future__ import annotations

import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image

from envs.backgrounds import (
    PROCEDURAL_EVAL,
    PROCEDURAL_TRAIN,
    SPLITS,
    BackgroundBank,
    clean_sky,
    clear_background_cache,
    make_background_bank,
)

# --------------------------------------------------------------------------- #
# helpers / fixtures
# --------------------------------------------------------------------------- #


@pytest.fixture(scope="module")
def train_bank() -> BackgroundBank:
    return make_background_bank("procedural", "train", size=64)


@pytest.fixture(scope="module")
def eval_bank() -> BackgroundBank:
    return make_background_bank("procedural", "eval", size=64)


def _videos(bank: BackgroundBank) -> list[np.ndarray]:
    return [bank.video(v) for v in range(bank.num_videos)]


def _check_layout(bank: BackgroundBank, size: int) -> None:
    f = bank.frames
    assert f.dtype == np.uint8 and f.ndim == 4
    assert f.shape[1:] == (3, size, size)
    assert f.flags.c_contiguous
    assert not f.flags.writeable
    assert bank.size == size
    np.testing.assert_array_equal(f[0], clean_sky(size))
    assert bank.offsets.dtype == np.int64 and bank.lengths.dtype == np.int64
    assert bank.offsets.shape == bank.lengths.shape == (bank.num_videos,)
    assert len(bank.names) == bank.num_videos
    assert np.all(bank.lengths >= 1)
    # videos tile frames[1:] exactly, in order, without gaps or overlap
    assert bank.offsets[0] == 1
    np.testing.assert_array_equal(bank.offsets[1:], bank.offsets[:-1] + bank.lengths[:-1])
    assert bank.offsets[-1] + bank.lengths[-1] == f.shape[0]


def _save_png(path: Path, arr: np.ndarray) -> None:
    Image.fromarray(arr).save(path)


def _solid(h: int, w: int, rgb: tuple[int, int, int]) -> np.ndarray:
    return np.broadcast_to(np.array(rgb, np.uint8), (h, w, 3)).copy()


# --------------------------------------------------------------------------- #
# clean sky
# --------------------------------------------------------------------------- #


def test_clean_sky_gradient() -> None:
    sky = clean_sky(32)
    assert sky.shape == (3, 32, 32) and sky.dtype == np.uint8
    np.testing.assert_allclose(sky[:, 0, 0], [102, 153, 204], atol=1)
    # constant along rows, monotonically darker downwards, clearly darker at bottom
    assert np.all(sky == sky[:, :, :1])
    col = sky[:, :, 0].astype(int)
    assert np.all(np.diff(col, axis=1) <= 0)
    assert np.all(col[:, -1] < 0.5 * col[:, 0])
    assert sky.flags.writeable  # a fresh array, not the bank's read-only frame


# --------------------------------------------------------------------------- #
# procedural library
# --------------------------------------------------------------------------- #


def test_procedural_layout(train_bank: BackgroundBank, eval_bank: BackgroundBank) -> None:
    assert SPLITS == ("train", "eval")
    _check_layout(train_bank, 64)
    _check_layout(eval_bank, 64)
    assert train_bank.num_videos == PROCEDURAL_TRAIN == 60
    assert eval_bank.num_videos == PROCEDURAL_EVAL == 30
    assert np.all(train_bank.lengths == 100)
    assert train_bank.frames.shape[0] == 1 + 60 * 100
    assert train_bank.names[17] == "procedural/train/017"
    assert eval_bank.names[0] == "procedural/eval/000"
    with pytest.raises(ValueError):
        train_bank.frames[1, 0, 0, 0] = 0  # read-only: cached banks are shared


def test_procedural_deterministic_and_cached() -> None:
    clear_background_cache()
    a = make_background_bank("procedural", "eval", size=32, num_videos=6, num_frames=12)
    b = make_background_bank("procedural", "eval", size=32, num_videos=6, num_frames=12)
    assert b.frames is a.frames  # cache hit shares the (read-only) array
    assert b.names == a.names and b.names is not a.names
    clear_background_cache()
    c = make_background_bank("procedural", "eval", size=32, num_videos=6, num_frames=12)
    assert c.frames is not a.frames
    assert c.frames.tobytes() == a.frames.tobytes()
    # seed is documented as ignored: the library is fixed
    d = make_background_bank("procedural", "eval", size=32, num_videos=6, num_frames=12, seed=123)
    assert d.frames.tobytes() == a.frames.tobytes()


def test_procedural_train_eval_disjoint(train_bank: BackgroundBank, eval_bank: BackgroundBank) -> None:
    train_frames = {fr.tobytes() for fr in train_bank.frames[1:]}
    assert not any(fr.tobytes() in train_frames for fr in eval_bank.frames[1:])


def test_procedural_videos_pairwise_differ(
    train_bank: BackgroundBank, eval_bank: BackgroundBank
) -> None:
    for bank in (train_bank, eval_bank):
        vids = np.stack([v[::10].astype(np.float32) for v in _videos(bank)])
        n = len(vids)
        for i in range(n):
            d = np.abs(vids[i + 1 :] - vids[i]).mean(axis=(1, 2, 3, 4))
            assert np.all(d > 10.0), (i, d.min())


def test_procedural_nesting_and_prefix(train_bank: BackgroundBank) -> None:
    easy = make_background_bank("procedural", "train", size=64, num_videos=4)
    assert easy.num_videos == 4
    _check_layout(easy, 64)
    for v in range(4):
        np.testing.assert_array_equal(easy.video(v), train_bank.video(v))
        assert easy.names[v] == train_bank.names[v]
    medium = make_background_bank("procedural", "train", size=64, num_videos=8)
    np.testing.assert_array_equal(medium.frames[: easy.frames.shape[0]], easy.frames)
    # time is the frame index, so a shorter video is a prefix of a longer one
    short = make_background_bank("procedural", "train", size=64, num_videos=5, num_frames=30)
    for v in range(5):
        np.testing.assert_array_equal(short.video(v), train_bank.video(v)[:30])


def test_procedural_temporal_smoothness(train_bank: BackgroundBank) -> None:
    vids = _videos(train_bank)
    # mean |frame[t+1] - frame[t]| per video (full resolution, all frames)
    consecutive = np.array(
        [np.abs(np.diff(v.astype(np.int16), axis=0)).mean() for v in vids]
    )
    # mean |video_i[t] - video_j[t]| over all pairs, on a subsample for speed
    sub = np.stack([v[::10, :, ::2, ::2].astype(np.float32) for v in vids])
    between = [np.abs(sub[i] - sub[j]).mean() for i in range(len(sub)) for j in range(i)]
    # every video is smooth relative to the gap between any two videos ...
    assert consecutive.max() < 0.5 * min(between)
    # ... and on average far smoother
    assert consecutive.mean() < 0.15 * np.mean(between)
    # but none is static: each video actually moves
    assert consecutive.min() > 0.3
    drift = [np.abs(v[-1].astype(np.float32) - v[0]).mean() for v in vids]
    assert min(drift) > 5.0


def test_procedural_frames_are_not_flat(train_bank: BackgroundBank) -> None:
    # each video has real spatial structure and colour (a distractor, not a tint)
    for v in _videos(train_bank):
        fr = v[50].astype(np.float32)
        assert fr.std(axis=(1, 2)).max() > 12.0


def test_procedural_other_size_and_speed() -> None:
    clear_background_cache()
    t0 = time.perf_counter()
    bank = make_background_bank("procedural", "train", size=64)
    elapsed = time.perf_counter() - t0
    # spec: < 3 s on one core; loose bound here so a busy CI box does not flake
    assert elapsed < 9.0, elapsed
    small = make_background_bank("procedural", "train", size=16, num_videos=5, num_frames=3)
    _check_layout(small, 16)
    assert bank.frames.shape[0] == 6001


def test_procedural_argument_errors() -> None:
    with pytest.raises(ValueError, match="60"):
        make_background_bank("procedural", "train", num_videos=61)
    with pytest.raises(ValueError, match="30"):
        make_background_bank("procedural", "eval", num_videos=31)
    with pytest.raises(ValueError, match="num_videos"):
        make_background_bank("procedural", "train", num_videos=0)
    with pytest.raises(ValueError, match="'train'.*'eval'"):
        make_background_bank("procedural", "test")
    with pytest.raises(ValueError, match="size"):
        make_background_bank("procedural", size=7)
    with pytest.raises(ValueError, match="num_frames"):
        make_background_bank("procedural", num_frames=0)


# --------------------------------------------------------------------------- #
# folder source
# --------------------------------------------------------------------------- #

_COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255),
            (255, 0, 255), (128, 128, 128), (255, 128, 0), (0, 128, 255), (40, 40, 40)]


def test_folder_split_rule_and_images(tmp_path: Path) -> None:
    clear_background_cache()
    for k in range(7):
        _save_png(tmp_path / f"img{k}.png", _solid(12, 12, _COLOURS[k]))
    (tmp_path / "notes.txt").write_text("ignored")
    train = make_background_bank(str(tmp_path), "train", size=8)
    ev = make_background_bank(str(tmp_path), "eval", size=8)
    assert train.names == ["img0.png", "img1.png", "img2.png", "img3.png", "img5.png", "img6.png"]
    assert ev.names == ["img4.png"]
    for bank in (train, ev):
        _check_layout(bank, 8)
        assert np.all(bank.lengths == 1)  # a still image is a 1-frame video
    # a constant image stays exactly that colour after crop + resize
    np.testing.assert_array_equal(ev.video(0)[0, :, 3, 3], _COLOURS[4])
    np.testing.assert_array_equal(train.video(4)[0, :, 0, 0], _COLOURS[5])
    first2 = make_background_bank(str(tmp_path), "train", size=8, num_videos=2)
    assert first2.names == ["img0.png", "img1.png"]


def test_folder_few_files_split(tmp_path: Path) -> None:
    for k in range(3):
        _save_png(tmp_path / f"{k}.png", _solid(9, 9, _COLOURS[k]))
    assert make_background_bank(str(tmp_path), "eval", size=8).names == ["2.png"]
    assert make_background_bank(str(tmp_path), "train", size=8).names == ["0.png", "1.png"]


def test_folder_resize_crop_and_colour_modes(tmp_path: Path) -> None:
    # 40x80 (H x W): red | green (centre 40x40) | blue -> centre crop is all green
    wide = np.zeros((40, 80, 3), np.uint8)
    wide[:, :20] = (255, 0, 0)
    wide[:, 20:60] = (0, 255, 0)
    wide[:, 60:] = (0, 0, 255)
    _save_png(tmp_path / "a_wide.png", wide)
    # tall 30x10 with a gradient, upscaled to 16
    tall = np.zeros((30, 10, 3), np.uint8)
    tall[:, :, 0] = np.linspace(0, 255, 30, dtype=np.uint8)[:, None]
    _save_png(tmp_path / "b_tall.png", tall)
    Image.fromarray(np.full((20, 20), 77, np.uint8), mode="L").save(tmp_path / "c_gray.png")
    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[..., :3] = (10, 200, 30)
    rgba[..., 3] = 0  # fully transparent: alpha must be dropped, not composited
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "d_rgba.png")
    _save_png(tmp_path / "e_eval.png", _solid(8, 8, (1, 2, 3)))

    bank = make_background_bank(str(tmp_path), "train", size=16)
    _check_layout(bank, 16)
    assert bank.names == ["a_wide.png", "b_tall.png", "c_gray.png", "d_rgba.png"]
    w = bank.video(0)[0]
    np.testing.assert_array_equal(w[:, 0, 0], (0, 255, 0))
    assert np.all(w[1] == 255) and np.all(w[0] == 0) and np.all(w[2] == 0)
    t = bank.video(1)[0].astype(int)
    # centre crop of the tall gradient: rows 10..19 -> red ~ 88..176, increasing downwards
    assert np.all(np.diff(t[0, :, 5]) >= 0)
    assert 70 < t[0, 0, 5] < 110 and 150 < t[0, -1, 5] < 190
    assert np.all(t[1:] == 0)
    np.testing.assert_array_equal(bank.video(2)[0], np.full((3, 16, 16), 77, np.uint8))
    np.testing.assert_array_equal(bank.video(3)[0, :, 4, 4], (10, 200, 30))


def test_folder_gif_and_frame_limit(tmp_path: Path) -> None:
    frames = np.stack([_solid(24, 24, c) for c in _COLOURS[:5]])
    iio.imwrite(tmp_path / "anim.gif", frames, duration=50, loop=0)
    _save_png(tmp_path / "still.png", _solid(24, 24, (9, 9, 9)))
    bank = make_background_bank(str(tmp_path), "train", size=12, num_frames=3)
    assert bank.names == ["anim.gif"]
    assert bank.lengths.tolist() == [3]  # first num_frames frames only
    for t in range(3):
        np.testing.assert_allclose(bank.video(0)[t, :, 6, 6], _COLOURS[t], atol=3)
    full = make_background_bank(str(tmp_path), "train", size=12, num_frames=100)
    assert full.lengths.tolist() == [5]  # shorter video keeps its own length
    assert make_background_bank(str(tmp_path), "eval", size=12).lengths.tolist() == [1]


def test_folder_mp4(tmp_path: Path) -> None:
    pytest.importorskip("imageio_ffmpeg")
    frames = np.stack([_solid(32, 48, _COLOURS[k % 3]) for k in range(6)])
    iio.imwrite(tmp_path / "clip.mp4", frames, fps=10, macro_block_size=16)
    _save_png(tmp_path / "z.png", _solid(8, 8, (0, 0, 0)))
    bank = make_background_bank(str(tmp_path), "train", size=16, num_frames=4)
    assert bank.names == ["clip.mp4"] and bank.lengths.tolist() == [4]
    np.testing.assert_allclose(bank.video(0)[0, :, 8, 8], _COLOURS[0], atol=40)


def test_folder_frame_sequence_subfolder(tmp_path: Path) -> None:
    seq = tmp_path / "bear"
    seq.mkdir()
    for k in range(4):
        _save_png(seq / f"{k:05d}.png", _solid(10, 10, _COLOURS[k]))
    _save_png(tmp_path / "zz.png", _solid(10, 10, (0, 0, 0)))
    bank = make_background_bank(str(tmp_path), "train", size=8, num_frames=3)
    assert bank.names == ["bear"] and bank.lengths.tolist() == [3]
    for t in range(3):
        np.testing.assert_array_equal(bank.video(0)[t, :, 0, 0], _COLOURS[t])


def test_folder_train_eval_subfolders(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    (tmp_path / "eval").mkdir()
    for k in range(3):
        _save_png(tmp_path / "train" / f"t{k}.png", _solid(10, 10, _COLOURS[k]))
    _save_png(tmp_path / "eval" / "e0.png", _solid(10, 10, _COLOURS[5]))
    _save_png(tmp_path / "top_level_ignored.png", _solid(10, 10, _COLOURS[6]))
    train = make_background_bank(str(tmp_path), "train", size=8)
    ev = make_background_bank(str(tmp_path), "eval", size=8)
    assert train.names == ["t0.png", "t1.png", "t2.png"]  # no every-5th rule here
    assert ev.names == ["e0.png"]
    np.testing.assert_array_equal(ev.video(0)[0, :, 2, 2], _COLOURS[5])


def test_folder_cache_sees_new_files(tmp_path: Path) -> None:
    for k in range(2):
        _save_png(tmp_path / f"{k}.png", _solid(10, 10, _COLOURS[k]))
    a = make_background_bank(str(tmp_path), "train", size=8)
    assert make_background_bank(str(tmp_path), "train", size=8).frames is a.frames
    _save_png(tmp_path / "00.png", _solid(10, 10, _COLOURS[7]))
    b = make_background_bank(str(tmp_path), "train", size=8)
    assert b.names == ["0.png", "00.png"]
    assert not b.frames.flags.writeable


def test_folder_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match="does not exist.*procedural.*no download"):
        make_background_bank(str(missing))

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"(?s)>= 2.*train/ and\s+eval/.*mp4.*png"):
        make_background_bank(str(empty), "train")

    one = tmp_path / "one"
    one.mkdir()
    _save_png(one / "only.png", _solid(8, 8, (1, 1, 1)))
    assert make_background_bank(str(one), "train", size=8).num_videos == 1
    with pytest.raises(ValueError, match=">= 2"):
        make_background_bank(str(one), "eval", size=8)

    with pytest.raises(ValueError, match="valid splits.*'train'.*'eval'"):
        make_background_bank(str(one), "validation", size=8)
    with pytest.raises(ValueError, match="1 video.*available"):
        make_background_bank(str(one), "train", size=8, num_videos=2)
    with pytest.raises(ValueError, match="size must be >= 8"):
        make_background_bank(str(one), "train", size=4)

    bad = tmp_path / "bad"
    bad.mkdir()
    _save_png(bad / "good.png", _solid(8, 8, (1, 1, 1)))
    (bad / "broken.gif").write_bytes(b"this is not a gif")
    with pytest.raises(ValueError, match="broken.gif"):
        make_background_bank(str(bad), "train", size=8)

    half = tmp_path / "half"
    (half / "train").mkdir(parents=True)
    _save_png(half / "train" / "a.png", _solid(8, 8, (1, 1, 1)))
    with pytest.raises(ValueError, match="create .*eval"):
        make_background_bank(str(half), "eval", size=8)

    with pytest.raises(NotADirectoryError, match="folder"):
        make_background_bank(str(one / "only.png"))
