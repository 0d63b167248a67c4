"""Visual distractors in image space, one batched Numba kernel shared by both backends.

The renderer draws the sky in the exact key colour (see :mod:`envs.assets`), so the kernel knows,
per pixel, whether it shows the scene (agent and floor) or background. For each frame it

1. samples the rendered frame through the camera-shake transform (roll about the image centre and
   a zoom); bilinear taps on a *premultiplied* foreground (key pixels have alpha 0), so edges stay
   anti-aliased and the background shows through exactly where the sky was;
2. adds the colour offset to the scene pixels (DCS shifts every material's RGB by the same
   offset; we shift the lit pixels, which differs from DCS only by the lighting factor);
3. composites the current background video frame (or the clean static sky) behind the scene;
4. draws the moving occluders on top and removes them from the agent mask.

Deviations from DCS, on purpose: the camera move is image-space (roll + zoom on DCS's angle and
distance bounds; DCS orbits the 3D camera), because EnvPool cannot move its camera per step and
image space keeps the exact flow of issue 4 a 2x3 affine; the floor stays opaque (DCS blends it
with the background); moving occluders are ours (DCS has none).

Every env has its own random stream (``seed``, env index), so an env's distractors do not depend
on when the other envs reset, and both backends draw the same distractors for the same seed.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from envs.assets import KEY_COLOR
from envs.backgrounds import BackgroundBank, clean_sky, make_background_bank
from envs.config import DistractorConfig

OBJ_FIELDS = 9  # x, y, vx, vy, radius, r, g, b, shape (0 disc, 1 square)


@nb.njit(parallel=True, fastmath=False, cache=True, nogil=True)
def composite_kernel(src, key, inv_affine, color, bank, bg_index, objects, num_objects,
                     mask_in, has_mask, out, mask_out):  # pragma: no cover - compiled
    """src (N,3,H,W) u8 rendered frames -> out (N,3,H,W) u8; mask_in/mask_out (N,H,W) u8."""
    n_env, _, h, w = src.shape
    k0, k1, k2 = key[0], key[1], key[2]
    for row in nb.prange(n_env * h):
        n = row // h
        y = row - n * h
        a = inv_affine[n]
        frame = bg_index[n]
        for x in range(w):
            sx = a[0] * x + a[1] * y + a[2]
            sy = a[3] * x + a[4] * y + a[5]
            x0 = math.floor(sx)
            y0 = math.floor(sy)
            fx = sx - x0
            fy = sy - y0
            alpha = 0.0
            acc0 = 0.0
            acc1 = 0.0
            acc2 = 0.0
            macc = 0.0
            for t in range(4):
                xi = x0 + (t & 1)
                yi = y0 + (t >> 1)
                wt = (fx if (t & 1) else 1.0 - fx) * (fy if (t >> 1) else 1.0 - fy)
                if wt == 0.0 or xi < 0 or yi < 0 or xi >= w or yi >= h:
                    continue
                p0 = src[n, 0, yi, xi]
                p1 = src[n, 1, yi, xi]
                p2 = src[n, 2, yi, xi]
                if p0 == k0 and p1 == k1 and p2 == k2:
                    continue
                alpha += wt
                acc0 += wt * p0
                acc1 += wt * p1
                acc2 += wt * p2
                if has_mask:
                    macc += wt * mask_in[n, yi, xi]
            inv = 1.0 - alpha
            v0 = acc0 + alpha * color[n, 0] + inv * bank[frame, 0, y, x]
            v1 = acc1 + alpha * color[n, 1] + inv * bank[frame, 1, y, x]
            v2 = acc2 + alpha * color[n, 2] + inv * bank[frame, 2, y, x]
            m = 1 if macc > 0.5 else 0
            for j in range(num_objects[n]):
                o = objects[n, j]
                dx = x - o[0]
                dy = y - o[1]
                r = o[4]
                if o[8] < 0.5:
                    inside = dx * dx + dy * dy <= r * r
                else:
                    inside = abs(dx) <= r and abs(dy) <= r
                if inside:
                    v0 = o[5]
                    v1 = o[6]
                    v2 = o[7]
                    m = 0
            out[n, 0, y, x] = min(255.0, max(0.0, v0 + 0.5))
            out[n, 1, y, x] = min(255.0, max(0.0, v1 + 0.5))
            out[n, 2, y, x] = min(255.0, max(0.0, v2 + 0.5))
            if has_mask:
                mask_out[n, y, x] = m


def shake_affine(roll: float, zoom: float, size: int) -> np.ndarray:
    """Forward 2x3 map from rendered to shown pixel coordinates: rotate by ``roll`` about the
    image centre and scale by ``zoom`` (>1 enlarges, i.e. the camera came closer)."""
    c = (size - 1) / 2.0
    cs, sn = math.cos(roll) * zoom, math.sin(roll) * zoom
    return np.array([[cs, -sn, c - cs * c + sn * c], [sn, cs, c - sn * c - cs * c]], dtype=np.float64)


def invert_affine(m: np.ndarray) -> np.ndarray:
    a = np.vstack([m, [0.0, 0.0, 1.0]])
    return np.linalg.inv(a)[:2]


class Distractors:
    """Per-env distractor state for ``num_envs`` envs, and the call that applies it to frames."""

    def __init__(self, cfg: DistractorConfig, num_envs: int, size: int, seed: int):
        self.cfg = cfg
        self.num_envs = num_envs
        self.size = size
        self.s = cfg.resolved_scale
        kinds = set(cfg.active_kinds)
        self.use_bg = "background" in kinds
        self.use_color = "color" in kinds
        self.use_camera = "camera" in kinds
        self.num_obj = cfg.resolved_num_objects if "objects" in kinds else 0
        self.dynamic = cfg.dynamic
        self.rngs = [np.random.default_rng([seed, i, 0xD15]) for i in range(num_envs)]
        if self.use_bg:
            self.bank: BackgroundBank | None = self._load_bank(cfg, size)
            self.bank_frames = self.bank.frames
        else:
            self.bank = None
            self.bank_frames = np.ascontiguousarray(clean_sky(size)[None])
        n = num_envs
        self.video = np.zeros(n, np.int64)
        self.frame = np.zeros(n, np.int64)
        self.direction = np.ones(n, np.int64)
        self.color = np.zeros((n, 3), np.float64)  # offset in [0,1] units
        self.base_color = np.zeros((n, 3), np.float64)
        self.cam = np.zeros((n, 2), np.float64)  # roll (rad), distance factor - 1
        self.cam_vel = np.zeros((n, 2), np.float64)
        self.objects = np.zeros((n, max(1, self.num_obj), OBJ_FIELDS), np.float32)
        self.key = np.array(KEY_COLOR, np.uint8)
        # camera bounds (DCS): roll +-pi/2*s, distance factor in [1-0.5s, 1+1.5s]
        self.cam_lo = np.array([-math.pi / 2 * self.s, -0.5 * self.s])
        self.cam_hi = np.array([math.pi / 2 * self.s, 1.5 * self.s])

    @staticmethod
    def _load_bank(cfg: DistractorConfig, size: int) -> BackgroundBank:
        """The difficulty's DCS video count, or all a user's folder has if it holds fewer."""
        want = cfg.resolved_num_videos
        try:
            return make_background_bank(cfg.background_source, cfg.background_split, size, want)
        except ValueError:
            if cfg.num_videos != -1 or want is None or cfg.background_source == "procedural":
                raise
            return make_background_bank(cfg.background_source, cfg.background_split, size, None)

    # ------------------------------------------------------------------ state
    _STATE = ("video", "frame", "direction", "color", "base_color", "cam", "cam_vel", "objects")

    def state(self) -> dict:
        """Every env's random stream and distractor state (not the videos): what :meth:`load_state` restores."""
        return {"rngs": [rng.bit_generator.state for rng in self.rngs],
                **{k: getattr(self, k).copy() for k in self._STATE}}

    def load_state(self, state: dict) -> None:
        for rng, s in zip(self.rngs, state["rngs"], strict=True):
            rng.bit_generator.state = s
        for k in self._STATE:
            getattr(self, k)[...] = state[k]

    def reset(self, ids) -> None:
        """New episode for the envs in ``ids``: draw each distractor's episode state."""
        s, size = self.s, self.size
        for i in np.atleast_1d(ids):
            rng = self.rngs[i]
            if self.use_bg:
                v = int(rng.integers(self.bank.num_videos))
                self.video[i] = v
                self.frame[i] = int(rng.integers(self.bank.lengths[v]))
                self.direction[i] = 1 if rng.random() < 0.5 else -1
            if self.use_color:
                self.base_color[i] = rng.uniform(-s, s, 3)
                self.color[i] = self.base_color[i]
            if self.use_camera:
                self.cam[i] = rng.uniform(self.cam_lo, self.cam_hi)
                self.cam_vel[i] = 0.0
            for j in range(self.num_obj):
                speed = rng.uniform(0.5, 1.0) * (s / 0.3) * 0.03 * size
                ang = rng.uniform(0, 2 * math.pi)
                self.objects[i, j] = (
                    rng.uniform(0, size - 1), rng.uniform(0, size - 1),
                    speed * math.cos(ang), speed * math.sin(ang),
                    rng.uniform(0.06, 0.12) * size,
                    *rng.integers(0, 256, 3), float(rng.random() < 0.5),
                )

    def step(self, ids=None) -> None:
        """Advance the dynamic distractors one env step (all envs, or ``ids``)."""
        if not self.dynamic:
            return
        ids = range(self.num_envs) if ids is None else np.atleast_1d(ids)
        s, size = self.s, self.size
        for i in ids:
            rng = self.rngs[i]
            if self.use_bg:
                n = self.bank.lengths[self.video[i]]
                if n > 1:
                    f = self.frame[i] + self.direction[i]
                    if f < 0 or f >= n:  # bounce at the ends
                        self.direction[i] = -self.direction[i]
                        f = self.frame[i] + self.direction[i]
                    self.frame[i] = f
            if self.use_color:
                self.color[i] = np.clip(self.color[i] + rng.normal(0, 0.03 * s, 3), -s, s)
            if self.use_camera:
                v = np.clip(self.cam_vel[i] + rng.normal(0, 0.1 * s, 2), -0.4 * s, 0.4 * s)
                p = self.cam[i] + v
                hit = (p < self.cam_lo) | (p > self.cam_hi)
                v[hit] = -v[hit]
                self.cam[i] = np.clip(p, self.cam_lo, self.cam_hi)
                self.cam_vel[i] = v
        if self.num_obj:
            o = self.objects[:, : self.num_obj]
            sel = np.asarray(list(ids))
            for axis in (0, 1):
                pos = o[sel, :, axis] + o[sel, :, axis + 2]
                over = (pos < 0) | (pos > size - 1)
                o[sel, :, axis + 2] = np.where(over, -o[sel, :, axis + 2], o[sel, :, axis + 2])
                o[sel, :, axis] = np.clip(pos, 0, size - 1)

    # ------------------------------------------------------------------ apply
    def affine(self, i: int) -> np.ndarray:
        """Forward 2x3 camera-shake map of env ``i`` (identity without camera distractor)."""
        if not self.use_camera:
            return shake_affine(0.0, 1.0, self.size)
        roll, dist = self.cam[i]
        return shake_affine(roll, 1.0 / (1.0 + dist), self.size)

    def apply(self, frames: np.ndarray, ids, agent_mask: np.ndarray | None = None):
        """Composite the distractors of envs ``ids`` onto rendered ``frames`` (len(ids),3,H,W) u8.

        Returns (frames, agent mask after warp and occlusion or None).
        """
        ids = np.atleast_1d(np.asarray(ids))
        m = len(ids)
        h = frames.shape[-1]
        if h != self.size:
            raise ValueError(f"frames are {h}px, distractors were built for {self.size}px")
        inv = np.empty((m, 6), np.float64)
        for k, i in enumerate(ids):
            inv[k] = invert_affine(self.affine(int(i))).ravel()
        color = (self.color[ids] * 255.0) if self.use_color else np.zeros((m, 3))
        if self.use_bg:
            bg = self.bank.offsets[self.video[ids]] + self.frame[ids]
        else:
            bg = np.zeros(m, np.int64)
        out = np.empty_like(frames)
        has_mask = agent_mask is not None
        mask_in = agent_mask if has_mask else np.zeros((m, 1, 1), np.uint8)
        mask_out = np.empty((m, self.size, self.size) if has_mask else (m, 1, 1), np.uint8)
        nobj = np.full(m, self.num_obj, np.int64)
        composite_kernel(
            np.ascontiguousarray(frames), self.key, inv, np.ascontiguousarray(color, np.float64),
            self.bank_frames, np.ascontiguousarray(bg, np.int64), self.objects[ids], nobj,
            np.ascontiguousarray(mask_in, np.uint8), has_mask, out, mask_out,
        )
        return out, (mask_out if has_mask else None)
