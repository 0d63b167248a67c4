"""Dynamic-background video sources for the background distractor.

The renderer paints the sky in an exact key colour and a separate compositing
kernel swaps every key pixel for the current frame of a background video.  This
module only *supplies* those frames.  All frames of all videos of one bank live
in ONE C-contiguous ``(F, 3, H, W)`` uint8 array so that the kernel can address
"frame ``t`` of video ``v``" as ``frames[offsets[v] + t]`` without any Python
indirection, list of arrays, or per-step copy.

Two sources are supported:

``source="procedural"``
    A fixed, built-in library (60 train + 30 eval videos) of smooth, colourful
    synthetic videos - drifting plasma, soft moving blobs, scrolling stripes,
    rotating checkerboards and morphing value-noise clouds.  Nothing is
    downloaded, and video ``i`` of a split is a pure function of
    ``(split, i)``, so every worker process builds the same pixels and the
    train/eval sets are disjoint by construction.

``source=<folder>``
    The user's own videos or images (e.g. DAVIS).  See
    :func:`make_background_bank` for the accepted layouts.

Frame ``0`` of every bank is :func:`clean_sky` so that "no distractor" can be
expressed as "play frame 0" with the same kernel.
"""

from __future__ import annotations

import functools
import operator
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = [
    "SPLITS",
    "PROCEDURAL_TRAIN",
    "PROCEDURAL_EVAL",
    "VIDEO_EXTENSIONS",
    "IMAGE_EXTENSIONS",
    "BackgroundBank",
    "clean_sky",
    "make_background_bank",
    "clear_background_cache",
]

SPLITS: tuple[str, ...] = ("train", "eval")
"""Valid split names.  Train and eval never share a video."""

PROCEDURAL_TRAIN: int = 60
"""Number of videos in the procedural ``train`` split (fixed library)."""

PROCEDURAL_EVAL: int = 30
"""Number of videos in the procedural ``eval`` split (fixed library)."""

VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".gif")
"""File extensions decoded as multi-frame videos (via ``imageio.v3``)."""

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp")
"""File extensions decoded as single images (1-frame videos), or as the frames
of a frame-sequence subfolder (the layout DAVIS ships in)."""

MIN_SIZE: int = 8
"""Smallest supported frame size; below this the distractor carries no
structure worth learning to ignore and the resize becomes degenerate."""

_CACHE_SIZE = 8
"""Banks kept alive per source kind.  A process usually builds a handful of
envs that share one train and one eval bank; 8 bounds memory (a 64x64,
60x100-frame bank is ~74 MB) while making repeated construction free."""

# dm_control's default skybox is builtin="gradient" rgb1=".4 .6 .8" rgb2="0 0 0".
# The camera sees only the upper part of that gradient, so we fade to a darker
# blue rather than to full black.
_SKY_TOP = np.array([0.4, 0.6, 0.8], dtype=np.float64)
_SKY_BOTTOM_SCALE = 0.35


# --------------------------------------------------------------------------- #
# Clean sky and the bank container
# --------------------------------------------------------------------------- #


def clean_sky(size: int) -> np.ndarray:
    """Return the static "no distractor" sky, ``(3, size, size)`` uint8.

    A vertical gradient like dm_control's default skybox: ``(0.4, 0.6, 0.8)*255``
    in the top row, fading linearly to 35 % of that brightness in the bottom
    row.  It is used as frame 0 of every :class:`BackgroundBank` so the
    compositing kernel needs no special case for "background distractor off".

    A fresh, writable array is returned on every call (callers may modify it).
    """
    size = operator.index(size)
    if size < 1:
        raise ValueError(f"clean_sky: size must be >= 1, got {size}")
    frac = np.linspace(0.0, 1.0, size) if size > 1 else np.zeros(1)
    scale = 1.0 - (1.0 - _SKY_BOTTOM_SCALE) * frac  # (size,) top=1 -> bottom=0.35
    col = _SKY_TOP[:, None] * scale[None, :] * 255.0  # (3, size)
    rows = np.clip(np.rint(col), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(np.broadcast_to(rows[:, :, None], (3, size, size)))


@dataclass(frozen=True, eq=False)
class BackgroundBank:
    """All frames of a set of background videos, packed for direct indexing.

    Attributes:
        frames: ``(F, 3, H, W)`` uint8, C-contiguous, read-only.  ``frames[0]``
            is :func:`clean_sky`; video ``v`` occupies
            ``frames[offsets[v] : offsets[v] + lengths[v]]``.  One array (not a
            list) so a compiled kernel can index any frame of any video.
        offsets: ``(V,)`` int64, start row of each video in ``frames``.
        lengths: ``(V,)`` int64, number of frames of each video (each >= 1).
        names: one human-readable name per video (``"procedural/train/017"`` or
            the file/folder name), for logging which distractor was shown.
        size: ``H == W``.

    The arrays are read-only because banks are cached and shared between all
    environments of a process; a writable view would let one env corrupt the
    others' backgrounds.
    """

    frames: np.ndarray
    offsets: np.ndarray
    lengths: np.ndarray
    names: list[str] = field(default_factory=list)
    size: int = 0

    def __post_init__(self) -> None:
        """Validate the packing invariants the compositing kernel relies on."""
        f, o, n = self.frames, self.offsets, self.lengths
        if f.dtype != np.uint8 or f.ndim != 4 or f.shape[1] != 3:
            raise ValueError(f"frames must be (F, 3, H, W) uint8, got {f.shape} {f.dtype}")
        if f.shape[2] != self.size or f.shape[3] != self.size:
            raise ValueError(f"frames are {f.shape[2]}x{f.shape[3]}, expected size {self.size}")
        if not f.flags.c_contiguous:
            raise ValueError("frames must be C-contiguous")
        if o.dtype != np.int64 or n.dtype != np.int64 or o.shape != n.shape or o.ndim != 1:
            raise ValueError("offsets and lengths must be 1-D int64 arrays of equal length")
        if len(self.names) != len(o):
            raise ValueError(f"{len(self.names)} names for {len(o)} videos")
        if len(o) == 0 or np.any(n < 1):
            raise ValueError("a bank needs at least one video and every video >= 1 frame")
        expected = 1 + np.concatenate(([0], np.cumsum(n)[:-1]))
        if not np.array_equal(o, expected) or int(o[-1] + n[-1]) != f.shape[0]:
            raise ValueError("offsets/lengths must tile frames[1:] exactly, in order")

    @property
    def num_videos(self) -> int:
        """Number of videos ``V`` (frame 0, the clean sky, is not a video)."""
        return int(self.offsets.shape[0])

    def video(self, v: int) -> np.ndarray:
        """Return the read-only ``(lengths[v], 3, H, W)`` view of video ``v``."""
        start = int(self.offsets[v])
        return self.frames[start : start + int(self.lengths[v])]


def _pack(videos: list[np.ndarray], names: list[str], size: int) -> BackgroundBank:
    """Concatenate ``(T_i, 3, S, S)`` videos behind the clean sky into a bank."""
    lengths = np.array([v.shape[0] for v in videos], dtype=np.int64)
    frames = np.empty((1 + int(lengths.sum()), 3, size, size), dtype=np.uint8)
    frames[0] = clean_sky(size)
    offsets = 1 + np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64)
    for v, off in zip(videos, offsets, strict=True):
        frames[off : off + v.shape[0]] = v
    return _freeze(BackgroundBank(frames, offsets, lengths, list(names), size))


def _freeze(bank: BackgroundBank) -> BackgroundBank:
    """Make the bank's arrays read-only so cache hits cannot be corrupted."""
    for a in (bank.frames, bank.offsets, bank.lengths):
        a.flags.writeable = False
    return bank


def _share(bank: BackgroundBank) -> BackgroundBank:
    """Hand out a cached bank: same read-only arrays, private ``names`` list."""
    return BackgroundBank(bank.frames, bank.offsets, bank.lengths, list(bank.names), bank.size)


# --------------------------------------------------------------------------- #
# Procedural library
# --------------------------------------------------------------------------- #
#
# Every generator gets a Generator seeded by (split_index, i), normalised pixel
# coordinates in [0, 1) (so content is the same at any resolution) and the
# frame index as time (so a shorter video is a prefix of a longer one), and
# returns float32 (T, 3, S, S) in roughly [0, 1].  All random parameters are
# drawn before any size- or length-dependent work so the draw order never
# depends on size/num_frames.  Motion speeds are chosen so that phases move by
# at most ~0.15 rad per frame: smooth at 64 px, yet every video traverses many
# spatial periods over 100 frames.

_TAU = np.float32(2.0 * np.pi)


def _palette(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Draw a random cosine palette ``a + b*cos(2pi(c*v + d))`` (per channel).

    Cosine palettes give smooth, varied, "natural-looking" colour ramps from a
    handful of numbers - far richer than linear two-colour ramps.
    """
    a = rng.uniform(0.3, 0.65, 3)
    b = rng.uniform(0.2, 0.5, 3)
    c = rng.uniform(0.5, 1.5) * rng.uniform(0.8, 1.2, 3)
    d = rng.uniform(0.0, 1.0, 3)
    return tuple(x.astype(np.float32) for x in (a, b, c, d))


def _apply_palette(v: np.ndarray, pal: tuple[np.ndarray, ...]) -> np.ndarray:
    """Map a scalar field ``(T, S, S)`` through a cosine palette to ``(T, 3, S, S)``."""
    a, b, c, d = pal
    out = np.empty((v.shape[0], 3) + v.shape[1:], dtype=np.float32)
    for ch in range(3):
        o = out[:, ch]
        np.multiply(v, c[ch], out=o)
        o += d[ch]
        o *= _TAU
        np.cos(o, out=o)
        o *= b[ch]
        o += a[ch]
    return out


def _random_colours(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` random saturated-ish RGB colours in [0, 1], float32 ``(n, 3)``."""
    base = rng.uniform(0.0, 1.0, (n, 3))
    # Push each colour away from grey so flat regions still carry chroma.
    grey = base.mean(axis=1, keepdims=True)
    return np.clip(grey + 1.6 * (base - grey), 0.0, 1.0).astype(np.float32)


def _contrasting_pair(rng: np.random.Generator, min_dist: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Two random colours at least ``min_dist`` apart (RGB Euclidean, [0, 1]).

    Two-tone patterns with near-identical colours would be an invisible
    distractor; rejection sampling (bounded, so still deterministic) avoids it.
    """
    c0 = _random_colours(rng, 1)[0]
    c1 = _random_colours(rng, 1)[0]
    for _ in range(32):
        if float(np.linalg.norm(c1 - c0)) >= min_dist:
            break
        c1 = _random_colours(rng, 1)[0]
    else:
        c1 = (1.0 - c0).astype(np.float32)  # complement: always far enough
    return c0, c1


def _signed_speed(rng: np.random.Generator, lo: float, hi: float, n: int | None = None):
    """Magnitude in ``[lo, hi]`` with a random sign (so motion has no bias)."""
    mag = rng.uniform(lo, hi, n)
    sign = rng.choice(np.array([-1.0, 1.0]), n)
    return mag * sign


def _gen_plasma(rng: np.random.Generator, x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Drifting plasma: sum of travelling plane waves plus a wandering ripple.

    Plane waves are evaluated with the angle-sum identity
    ``sin(A(x,y) + B(t)) = sinA cosB + cosA sinB`` so the costly
    transcendental runs on an ``(S, S)`` image instead of ``(T, S, S)``.
    """
    k = 4
    freq = rng.uniform(0.6, 2.4, k)
    ang = rng.uniform(0.0, 2 * np.pi, k)
    omega = _signed_speed(rng, 0.03, 0.10, k)
    phase = rng.uniform(0.0, 2 * np.pi, k)
    r_freq = rng.uniform(1.0, 3.0)
    r_omega = _signed_speed(rng, 0.04, 0.12)
    cx_a, cy_a = rng.uniform(0.15, 0.4, 2)
    cx_w, cy_w = rng.uniform(0.008, 0.025, 2)
    cx_p, cy_p = rng.uniform(0.0, 2 * np.pi, 2)
    pal = _palette(rng)
    gain = np.float32(rng.uniform(0.6, 1.1))

    xx, yy = x[None, :], x[:, None]
    T, S = t.shape[0], x.shape[0]
    v = np.zeros((T, S, S), dtype=np.float32)
    for j in range(k):
        a_img = _TAU * freq[j] * (xx * np.cos(ang[j]) + yy * np.sin(ang[j])) + phase[j]
        sa, ca = np.sin(a_img).astype(np.float32), np.cos(a_img).astype(np.float32)
        bt = (omega[j] * t).astype(np.float32)
        v += sa[None] * np.cos(bt)[:, None, None]
        v += ca[None] * np.sin(bt)[:, None, None]
    cx = (0.5 + cx_a * np.sin(cx_w * t + cx_p)).astype(np.float32)
    cy = (0.5 + cy_a * np.sin(cy_w * t + cy_p)).astype(np.float32)
    dx2 = np.square(x[None, :] - cx[:, None])  # (T, S)
    dy2 = np.square(x[None, :] - cy[:, None])
    r = np.sqrt(dy2[:, :, None] + dx2[:, None, :])
    r *= _TAU * np.float32(r_freq)
    r += (r_omega * t).astype(np.float32)[:, None, None]
    v += np.sin(r, out=r)
    v *= gain / np.float32(k + 1)
    return _apply_palette(v, pal)


def _gen_blobs(rng: np.random.Generator, x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Soft coloured blobs on Lissajous paths over a slowly swinging gradient.

    Gaussians are separable, so each blob costs two ``(T, S)`` exps and one
    outer product instead of a ``(T, S, S)`` exp.
    """
    n = int(rng.integers(5, 9))
    bg = _random_colours(rng, 2)
    g_ang = rng.uniform(0.0, 2 * np.pi)
    g_omega = rng.uniform(0.01, 0.03)
    g_phase = rng.uniform(0.0, 2 * np.pi)
    cols = _random_colours(rng, n)
    alpha = rng.uniform(0.55, 0.95, n)
    sigma = rng.uniform(0.05, 0.17, n)
    amp = rng.uniform(0.15, 0.45, (n, 2))
    omg = _signed_speed(rng, 0.01, 0.045, (n, 2))
    phs = rng.uniform(0.0, 2 * np.pi, (n, 2))

    T, S = t.shape[0], x.shape[0]
    # Background: two-colour ramp whose mixing weight oscillates slowly.
    ramp = (x[None, :] * np.cos(g_ang) + x[:, None] * np.sin(g_ang)).astype(np.float32)
    ramp = (ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1e-6)
    swing = (0.5 + 0.35 * np.sin(g_omega * t + g_phase)).astype(np.float32)
    w = np.clip(ramp[None] + (swing[:, None, None] - 0.5), 0.0, 1.0)  # (T, S, S)
    img = np.empty((T, 3, S, S), dtype=np.float32)
    for ch in range(3):
        np.multiply(w, bg[1, ch] - bg[0, ch], out=img[:, ch])
        img[:, ch] += bg[0, ch]
    for j in range(n):
        cx = 0.5 + amp[j, 0] * np.sin(omg[j, 0] * t + phs[j, 0])
        cy = 0.5 + amp[j, 1] * np.sin(omg[j, 1] * t + phs[j, 1])
        inv = 1.0 / (2.0 * sigma[j] ** 2)
        gx = np.exp(-np.square(x[None, :] - cx[:, None]) * inv).astype(np.float32)
        gy = np.exp(-np.square(x[None, :] - cy[:, None]) * inv).astype(np.float32)
        m = gy[:, :, None] * gx[:, None, :]
        m *= np.float32(alpha[j])
        for ch in range(3):
            o = img[:, ch]
            # o = o + (col - o) * m, i.e. alpha-composite the blob.
            o += (cols[j, ch] - o) * m
    return img


def _soft_square(s: np.ndarray, sharp: np.float32) -> np.ndarray:
    """In-place ``0.5 + 0.5*tanh(sharp*s)``: a square wave with soft edges.

    Hard edges would alias at 64 px and make motion flicker; tanh keeps stripe
    edges a couple of pixels wide so motion stays temporally smooth.
    """
    s *= sharp
    np.tanh(s, out=s)
    s *= np.float32(0.5)
    s += np.float32(0.5)
    return s


def _two_tone(m: np.ndarray, c0: np.ndarray, c1: np.ndarray, shade: np.ndarray) -> np.ndarray:
    """Mix two colours by mask ``m`` ``(T, S, S)`` and multiply by ``shade``."""
    out = np.empty((m.shape[0], 3) + m.shape[1:], dtype=np.float32)
    for ch in range(3):
        o = out[:, ch]
        np.multiply(m, c1[ch] - c0[ch], out=o)
        o += c0[ch]
        o *= shade
    return out


def _rotating_coords(
    x: np.ndarray, t: np.ndarray, theta0: float, omega_theta: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame rotated, centred coordinates ``(u, v)``, each ``(T, S, S)``."""
    th = theta0 + omega_theta * t
    c, s = np.cos(th).astype(np.float32), np.sin(th).astype(np.float32)
    xc = (x - 0.5).astype(np.float32)
    xx, yy = xc[None, None, :], xc[None, :, None]
    u = c[:, None, None] * xx + s[:, None, None] * yy
    v = c[:, None, None] * yy - s[:, None, None] * xx
    return u, v


def _shade(rng: np.random.Generator, x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """A slowly moving brightness vignette ``(T, S, S)`` in ~[0.65, 1.05].

    Breaks up the otherwise perfectly periodic stripe/checker patterns, which
    would be too easy to filter out.
    """
    ang = rng.uniform(0.0, 2 * np.pi)
    om = rng.uniform(0.01, 0.03)
    ph = rng.uniform(0.0, 2 * np.pi)
    g = (x[None, :] * np.cos(ang) + x[:, None] * np.sin(ang)).astype(np.float32)
    wave = np.sin(_TAU * 0.5 * g[None] + (om * t + ph).astype(np.float32)[:, None, None])
    return (0.85 + 0.2 * wave).astype(np.float32)


def _gen_stripes(rng: np.random.Generator, x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Scrolling, slowly rotating soft stripes, optionally crossed (plaid)."""
    theta0 = rng.uniform(0.0, np.pi)
    om_th = _signed_speed(rng, 0.002, 0.01)
    freq = rng.uniform(2.0, 6.0)
    speed = _signed_speed(rng, 0.05, 0.14)
    sharp = np.float32(rng.uniform(1.5, 5.0))
    c0, c1 = _contrasting_pair(rng)
    plaid = bool(rng.random() < 0.5)
    freq2 = rng.uniform(1.5, 4.0)
    speed2 = _signed_speed(rng, 0.03, 0.1)
    c2 = _random_colours(rng, 1)[0]
    shade = _shade(rng, x, t)

    u, v = _rotating_coords(x, t, theta0, om_th)
    s = u * np.float32(_TAU * freq)
    s += (speed * t).astype(np.float32)[:, None, None]
    m = _soft_square(np.sin(s, out=s), sharp)
    img = _two_tone(m, c0, c1, shade)
    if plaid:
        s2 = v * np.float32(_TAU * freq2)
        s2 += (speed2 * t).astype(np.float32)[:, None, None]
        m2 = _soft_square(np.sin(s2, out=s2), sharp)
        m2 *= np.float32(0.5)
        for ch in range(3):
            o = img[:, ch]
            o += (c2[ch] * shade - o) * m2
    return img


def _gen_checker(rng: np.random.Generator, x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Rotating, scrolling, gently zooming soft checkerboard."""
    theta0 = rng.uniform(0.0, np.pi / 2)
    om_th = _signed_speed(rng, 0.003, 0.012)
    freq = rng.uniform(1.5, 4.0)
    zoom_amp = rng.uniform(0.05, 0.25)
    zoom_om = rng.uniform(0.01, 0.03)
    sp_u, sp_v = _signed_speed(rng, 0.03, 0.10, 2)
    sharp = np.float32(rng.uniform(2.0, 6.0))
    c0, c1 = _contrasting_pair(rng)
    shade = _shade(rng, x, t)

    u, v = _rotating_coords(x, t, theta0, om_th)
    f = (_TAU * freq * (1.0 + zoom_amp * np.sin(zoom_om * t))).astype(np.float32)
    u *= f[:, None, None]
    u += (sp_u * t).astype(np.float32)[:, None, None]
    v *= f[:, None, None]
    v += (sp_v * t).astype(np.float32)[:, None, None]
    np.sin(u, out=u)
    np.sin(v, out=v)
    u *= v
    m = _soft_square(u, sharp)
    return _two_tone(m, c0, c1, shade)


def _lerp_gather(table: np.ndarray, coord: np.ndarray, axis: int) -> np.ndarray:
    """Smoothly interpolate a periodic lattice along ``axis`` at per-frame coords.

    ``table`` is ``(T, ..., G, ...)`` with the lattice along ``axis``;
    ``coord`` is ``(T, S)`` in lattice units.  Smoothstep weights remove the
    derivative kinks of plain linear interpolation (which read as a grid).
    """
    g = table.shape[axis]
    i0f = np.floor(coord)
    fr = (coord - i0f).astype(np.float32)
    fr = fr * fr * (np.float32(3.0) - np.float32(2.0) * fr)
    i0 = i0f.astype(np.int64) % g
    i1 = (i0 + 1) % g
    shape = [coord.shape[0]] + [1] * (table.ndim - 1)
    shape[axis] = coord.shape[1]
    i0, i1, fr = i0.reshape(shape), i1.reshape(shape), fr.reshape(shape)
    a = np.take_along_axis(table, i0, axis=axis)
    b = np.take_along_axis(table, i1, axis=axis)
    b -= a
    b *= fr
    a += b
    return a


def _gen_noise(rng: np.random.Generator, x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Fractal value noise that scrolls (per-octave parallax) and morphs in time.

    Each octave is a periodic random lattice ``(Gt, G, G)``; time walks through
    the ``Gt`` axis (morphing) while the image window drifts over the spatial
    axes (scrolling).  Interpolation is done one axis at a time - time on the
    tiny lattice, then x, then y - so only two ``(T, S, S)`` gathers are needed
    per octave.
    """
    octaves = 3
    base = int(rng.integers(2, 5))
    gt = 16
    tables = [rng.uniform(0.0, 1.0, (gt, base << o, base << o)).astype(np.float32)
              for o in range(octaves)]
    vel = _signed_speed(rng, 0.003, 0.010, (octaves, 2))  # image widths per frame
    morph = rng.uniform(0.008, 0.02, octaves)  # time-lattice cells per frame
    origin = rng.uniform(0.0, 1.0, (octaves, 3))
    pal = _palette(rng)
    gain = np.float32(rng.uniform(1.6, 2.2))

    T, S = t.shape[0], x.shape[0]
    acc = np.zeros((T, S, S), dtype=np.float32)
    total = 0.0
    for o, tab in enumerate(tables):
        g = tab.shape[1]
        amp = 0.45**o  # a little less fine detail than 1/f: hides the lattice
        total += amp
        tz = origin[o, 0] * gt + morph[o] * t  # (T,) in time-lattice cells
        z0f = np.floor(tz)
        fz = (tz - z0f).astype(np.float32)
        fz = (fz * fz * (3.0 - 2.0 * fz))[:, None, None]
        z0 = z0f.astype(np.int64) % gt
        tz_tab = tab[z0]  # (T, G, G): morph = blend two time slices
        tz_tab += (tab[(z0 + 1) % gt] - tz_tab) * fz
        cx = (x[None, :] + vel[o, 0] * t[:, None] + origin[o, 1]) * g  # (T, S)
        cy = (x[None, :] + vel[o, 1] * t[:, None] + origin[o, 2]) * g
        rows = _lerp_gather(tz_tab, cx, axis=2)  # (T, G, S)
        img = _lerp_gather(rows, cy, axis=1)  # (T, S, S)
        img *= np.float32(amp)
        acc += img
    acc *= np.float32(1.0 / total)
    acc -= np.float32(0.5)
    acc *= gain  # octave sums cluster near 0.5; stretch for contrast
    return _apply_palette(acc, pal)


_FAMILIES: tuple[Callable[[np.random.Generator, np.ndarray, np.ndarray], np.ndarray], ...] = (
    _gen_plasma,
    _gen_blobs,
    _gen_stripes,
    _gen_checker,
    _gen_noise,
)
"""Video ``i`` uses family ``i % 5``, so every prefix of >= 5 videos (and
DCS-style easy=4 / medium=8 subsets) mixes several kinds of motion."""


def _procedural_video(split: str, index: int, size: int, num_frames: int) -> np.ndarray:
    """Generate video ``index`` of ``split`` as float32 ``(T, 3, S, S)`` in ~[0, 1].

    Seeded by ``(split_index, index)`` only: the same video at any size or
    length, in any process, and train/eval never share a seed.
    """
    rng = np.random.default_rng([SPLITS.index(split), index])
    x = ((np.arange(size, dtype=np.float64) + 0.5) / size).astype(np.float32)
    t = np.arange(num_frames, dtype=np.float64)
    return _FAMILIES[index % len(_FAMILIES)](rng, x, t)


def _to_uint8_into(src: np.ndarray, dst: np.ndarray) -> None:
    """Quantise float ``src`` in [0, 1] into uint8 ``dst`` (in place on src)."""
    src *= np.float32(255.0)
    src += np.float32(0.5)
    np.clip(src, 0.0, 255.0, out=src)
    np.copyto(dst, src, casting="unsafe")  # truncation after +0.5 == rounding


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _procedural_bank(split: str, size: int, num_videos: int, num_frames: int) -> BackgroundBank:
    """Build (and cache) the first ``num_videos`` procedural videos of ``split``.

    Each video is quantised straight into the final packed array, so peak
    memory is the bank plus one float32 video.
    """
    frames = np.empty((1 + num_videos * num_frames, 3, size, size), dtype=np.uint8)
    frames[0] = clean_sky(size)
    for i in range(num_videos):
        start = 1 + i * num_frames
        _to_uint8_into(_procedural_video(split, i, size, num_frames),
                       frames[start : start + num_frames])
    offsets = 1 + np.arange(num_videos, dtype=np.int64) * num_frames
    lengths = np.full(num_videos, num_frames, dtype=np.int64)
    names = [f"procedural/{split}/{i:03d}" for i in range(num_videos)]
    return _freeze(BackgroundBank(frames, offsets, lengths, names, size))


# --------------------------------------------------------------------------- #
# Folder source
# --------------------------------------------------------------------------- #

_ACCEPTED = VIDEO_EXTENSIONS + IMAGE_EXTENSIONS


def _accepted_hint() -> str:
    """Human-readable list of accepted inputs, reused by every folder error."""
    return (
        "accepted files: videos " + ", ".join(e[1:] for e in VIDEO_EXTENSIONS)
        + "; images " + ", ".join(e[1:] for e in IMAGE_EXTENSIONS)
        + " (1-frame videos); or subfolders of images (one frame-sequence video each, "
        "like DAVIS JPEGImages/480p/<sequence>/)"
    )


def _frame_files(folder: Path) -> list[Path]:
    """Sorted image files directly inside ``folder`` (a frame-sequence video)."""
    return sorted(
        (p for p in folder.iterdir()
         if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS),
        key=lambda p: p.name,
    )


def _list_items(folder: Path) -> list[Path]:
    """Usable video sources directly inside ``folder``, sorted by name.

    A source is a file with an accepted extension, or a subfolder that directly
    contains image files (taken as the frames of one video, in name order).
    Hidden entries are skipped.  Not recursive beyond that one level, so a
    stray deep tree cannot silently turn into thousands of videos.
    """
    items = []
    for p in folder.iterdir():
        if p.name.startswith("."):
            continue
        if p.is_file() and p.suffix.lower() in _ACCEPTED:
            items.append(p)
        elif p.is_dir() and p.name not in SPLITS and _frame_files(p):
            items.append(p)
    return sorted(items, key=lambda p: p.name)


def _split_items(root: Path, split: str) -> list[Path]:
    """Apply the split rule and return the (ordered) items of ``split``.

    * ``root/train`` or ``root/eval`` exists: those subfolders are the splits.
    * otherwise: items sorted by name; indices 4, 9, 14, ... go to eval, the
      rest to train.  With 2-4 items there is no index 4, so the last item goes
      to eval instead - that keeps both splits non-empty from 2 items on.
    """
    if (root / "train").is_dir() or (root / "eval").is_dir():
        sub = root / split
        if not sub.is_dir():
            raise ValueError(
                f"background folder {root} uses the train/ eval/ layout but has no "
                f"'{split}' subfolder; create {sub} and put at least one video or image in it."
            )
        items = _list_items(sub)
        if not items:
            raise ValueError(
                f"no usable background videos in {sub}. Put at least one file there; "
                + _accepted_hint() + "."
            )
        return items

    items = _list_items(root)
    n = len(items)
    if n >= 5:
        eval_idx = set(range(4, n, 5))
    elif n >= 2:
        eval_idx = {n - 1}
    else:
        eval_idx = set()
    chosen = [p for k, p in enumerate(items) if (k in eval_idx) == (split == "eval")]
    if not chosen:
        raise ValueError(
            f"no usable background videos for split '{split}' in {root} "
            f"({n} usable item(s) found). A folder without train/ and eval/ subfolders needs "
            f">= 2 usable files so both splits are non-empty (every 5th file, or the last one "
            f"when there are fewer than 5, goes to eval); alternatively create train/ and "
            f"eval/ subfolders. " + _accepted_hint() + "."
        )
    return chosen


def _rgb_uint8(a: np.ndarray) -> np.ndarray:
    """Normalise a decoded frame to ``(H, W, 3)`` uint8.

    Decoders return grayscale, grayscale+alpha, RGBA, 16-bit or float frames
    depending on the file; the bank needs plain 8-bit RGB.  Alpha is dropped
    (not composited) because background videos are opaque scenes.
    """
    a = np.asarray(a)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"unsupported frame shape {a.shape}")
    if a.shape[2] in (1, 2):
        a = np.repeat(a[:, :, :1], 3, axis=2)
    elif a.shape[2] == 4:
        a = a[:, :, :3]
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * 255
    if np.issubdtype(a.dtype, np.integer):
        hi = 65535.0 if a.size and a.max() > 255 else 255.0
        return np.clip(np.rint(a.astype(np.float64) * (255.0 / hi)), 0, 255).astype(np.uint8)
    af = a.astype(np.float64)
    scale = 255.0 if af.size and np.nanmax(af) <= 1.0 else 1.0
    return np.clip(np.rint(np.nan_to_num(af) * scale), 0, 255).astype(np.uint8)


def _square_resize(frame: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop to a square and resize to ``(3, size, size)`` uint8.

    Cropping (not stretching) keeps the scene's aspect ratio, as DCS does.
    Pillow's bilinear filter widens its support when shrinking, so a large
    DAVIS frame is area-averaged rather than aliased.
    """
    rgb = _rgb_uint8(frame)
    h, w = rgb.shape[:2]
    m = min(h, w)
    top, left = (h - m) // 2, (w - m) // 2
    sq = np.ascontiguousarray(rgb[top : top + m, left : left + m])
    if m != size:
        sq = np.asarray(Image.fromarray(sq).resize((size, size), Image.Resampling.BILINEAR))
    return sq.transpose(2, 0, 1)


def _read_image(path: Path) -> np.ndarray:
    """Decode one still image to a numpy array (any mode; normalised later)."""
    with Image.open(path) as im:
        if im.mode not in ("L", "LA", "RGB", "RGBA", "I", "I;16", "I;16B", "I;16L", "F"):
            im = im.convert("RGBA" if "A" in im.getbands() or "transparency" in im.info else "RGB")
        return np.asarray(im)


def _iter_video(path: Path) -> Iterator[np.ndarray]:
    """Yield the frames of a video file with imageio.v3 (ffmpeg for mp4 & co)."""
    import imageio.v3 as iio  # deferred: only folder sources need it

    # GIF: name the Pillow plugin so a broken file fails fast with Pillow's
    # message instead of imageio probing (and warning from) every legacy plugin.
    plugin = "pillow" if path.suffix.lower() == ".gif" else None
    yield from iio.imiter(path, plugin=plugin)


def _load_item(path: Path, size: int, num_frames: int) -> np.ndarray:
    """Decode one item to ``(T, 3, size, size)`` uint8, ``1 <= T <= num_frames``.

    Decoding stops after ``num_frames`` frames so a long video is never read in
    full.  Any decoder failure is re-raised naming the file, because the raw
    backend messages ("Could not load meta information") do not say which of
    many files is broken.
    """
    out: list[np.ndarray] = []
    try:
        if path.is_dir():
            for fp in _frame_files(path)[:num_frames]:
                out.append(_square_resize(_read_image(fp), size))
        elif path.suffix.lower() in IMAGE_EXTENSIONS:
            out.append(_square_resize(_read_image(path), size))
        else:
            for frame in _iter_video(path):
                out.append(_square_resize(frame, size))
                if len(out) >= num_frames:
                    break
    except Exception as exc:  # decoder errors come in many types
        raise ValueError(
            f"could not decode background file {path}: {type(exc).__name__}: {exc}. "
            f"Remove or re-encode this file (mp4/H.264 or png/jpg are safest)."
        ) from exc
    if not out:
        raise ValueError(
            f"background file {path} decoded to zero frames; remove or re-encode it."
        )
    return np.stack(out)


def _fingerprint(items: list[Path]) -> tuple:
    """Cheap identity of the selected files so edits on disk invalidate the cache."""
    fp = []
    for p in items:
        st = p.stat()
        extra: tuple = ()
        if p.is_dir():
            extra = tuple((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in _frame_files(p))
        fp.append((p.name, st.st_size, st.st_mtime_ns, extra))
    return tuple(fp)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _folder_bank(
    root: str, split: str, size: int, num_videos: int, num_frames: int, fingerprint: tuple
) -> BackgroundBank:
    """Decode and pack the selected items (cached; ``fingerprint`` is only a key)."""
    items = _split_items(Path(root), split)[:num_videos]
    videos = [_load_item(p, size, num_frames) for p in items]
    return _pack(videos, [p.name for p in items], size)


# --------------------------------------------------------------------------- #
# Public entry points
# --------------------------------------------------------------------------- #


def _check_count(name: str, value: int, lo: int) -> int:
    """Validate an integer argument, rejecting bools and floats explicitly."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {value!r}")
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {value!r}") from None
    if v < lo:
        raise ValueError(f"{name} must be >= {lo}, got {v}")
    return v


def _resolve_num_videos(num_videos: int | None, available: int, where: str) -> int:
    """Turn ``None`` into "all" and bounds-check an explicit count."""
    if num_videos is None:
        return available
    if isinstance(num_videos, bool):
        raise TypeError(f"num_videos must be an int or None, got {num_videos!r}")
    k = operator.index(num_videos)
    if k < 1 or k > available:
        raise ValueError(
            f"num_videos={k} is out of range: {where} has {available} video(s) available; "
            f"pass 1 <= num_videos <= {available}, or num_videos=None for all of them."
        )
    return k


def make_background_bank(
    source: str = "procedural",
    split: str = "train",
    size: int = 64,
    num_videos: int | None = None,
    num_frames: int = 100,
    seed: int = 0,
) -> BackgroundBank:
    """Build (or fetch from cache) the background bank for one split and size.

    Args:
        source: ``"procedural"`` for the built-in library, or a path to a folder
            of the user's videos/images.
        split: ``"train"`` or ``"eval"`` (disjoint sets of videos).
        size: output frame size ``H == W`` (>= 8).
        num_videos: take the first ``k`` videos of the split (``None`` = all).
            Taking a prefix makes difficulty levels nest, as in DCS
            (easy=4 ⊂ medium=8 ⊂ hard=all).
        num_frames: frames per procedural video; for folders, the maximum
            number of frames kept per video (the first ``num_frames``).
        seed: accepted for API symmetry and ignored.  The procedural library is
            *fixed* - video ``i`` of a split is seeded by ``(split, i)`` - and
            folder contents are ordered by file name; randomness over which
            video plays belongs to the environment's own seed.

    Procedural library: ``PROCEDURAL_TRAIN = 60`` train and ``PROCEDURAL_EVAL
    = 30`` eval videos cycling through five families (drifting plasma, soft
    blobs over a gradient, scrolling/rotating stripes and plaids, rotating
    zooming checkerboards, scrolling+morphing fractal value noise).  Content
    is defined in normalised coordinates with the frame index as time, so the
    same video looks the same at every ``size`` and a shorter video is a
    prefix of a longer one.  Generating all 60 train videos at 64x64x100
    frames takes ~1.2 s on one core (median of 5 runs pinned with
    ``taskset -c 0``, numpy 2.4, cache cleared; the 30 eval videos take
    about half that), well under the 3 s budget.  Pixels are bit-identical across processes
    on the same machine/numpy build; numpy's SIMD transcendental kernels may
    differ by an ulp across CPU types, which can flip rare pixels by 1/255.

    Folder source:

    * Accepted: videos (mp4, avi, mov, mkv, webm, gif; decoded with
      ``imageio.v3``), images (png, jpg, jpeg, bmp; 1-frame videos), and
      subfolders of images (one video per subfolder, frames in name order -
      the DAVIS ``JPEGImages/480p/<sequence>/`` layout).  Hidden entries are
      skipped.
    * Splits: if ``train/`` or ``eval/`` subfolders exist they are the splits;
      otherwise items are sorted by name and indices 4, 9, 14, ... go to eval
      (with 2-4 items: the last one), the rest to train.
    * Every frame is centre-cropped to a square, resized with Pillow bilinear
      to ``size x size`` and converted to RGB (alpha dropped, gray expanded).

    Banks are cached per (resolved path + file fingerprint, split, size,
    resolved num_videos, num_frames); the returned arrays are read-only views
    shared by all callers.  Use :func:`clear_background_cache` to free them.

    Raises:
        ValueError: bad split, size < 8, num_frames < 1, num_videos out of
            range, no usable files, or an undecodable file (named).
        FileNotFoundError: the folder does not exist.
        NotADirectoryError: ``source`` is a file rather than a folder.
    """
    del seed  # documented as ignored; kept for a stable signature
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits are {', '.join(map(repr, SPLITS))}.")
    size = _check_count("size", size, MIN_SIZE)
    num_frames = _check_count("num_frames", num_frames, 1)

    if source == "procedural":
        available = PROCEDURAL_TRAIN if split == "train" else PROCEDURAL_EVAL
        k = _resolve_num_videos(num_videos, available, f"the procedural '{split}' split")
        return _share(_procedural_bank(split, size, k, num_frames))

    root = Path(os.fspath(source)).expanduser()
    if not root.exists():
        raise FileNotFoundError(
            f"background folder {str(root)!r} does not exist. Pass an existing folder of "
            f"videos/images (e.g. DAVIS JPEGImages/480p), or use source='procedural', "
            f"which is built in and needs no download."
        )
    if not root.is_dir():
        raise NotADirectoryError(
            f"background source {str(root)!r} is a file, not a folder. Put your videos/images "
            f"in a folder and pass that folder, or use source='procedural'."
        )
    root = root.resolve()
    items = _split_items(root, split)
    k = _resolve_num_videos(num_videos, len(items), f"split '{split}' of {root}")
    fp = _fingerprint(items[:k])
    return _share(_folder_bank(str(root), split, size, k, num_frames, fp))


def clear_background_cache() -> None:
    """Drop all cached banks (frees memory; next call regenerates/re-reads)."""
    _procedural_bank.cache_clear()
    _folder_bank.cache_clear()
