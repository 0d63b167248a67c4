"""Exact optical flow by reprojection, from what the dm_control backend records per frame.

For each *displayed* pixel q of frame t (after the camera-shake distractor A_t, a 2x3 map from
raw render pixels to displayed pixels; pixel centres at integer (x = column, y = row)):

1. r = A_t^-1 q, its raw render position; depth d and geom g are read at the nearest raw pixel;
2. back-project: f = (H/2) / tan(fovy/2); MuJoCo cameras look down -z with y up, so the camera-frame
   point is (d (r_x - c)/f, -d (r_y - c)/f, -d) with c = (H-1)/2, and world P = cam_pos + cam_mat @ p;
3. move it: a geom pixel with its geom's rigid motion, P' = x_g' + R_g' R_g^T (P - x_g); a sky pixel
   (g = -1) is a direction, moved by the camera rotation only;
4. project with the camera at t+1 to raw r', then to displayed A_{t+1} r'; flow = A_{t+1} r' - q;
5. valid where r and r' lie in the image and, at r', frame t+1 shows the same geom at a depth within
   ``depth_tol`` (relative) of the moved point's: otherwise the point is occluded (or disoccluded).

``exact_flow_numpy`` is the plain reference (one pair at a time, vectorised); ``exact_flow_numba``
is the batched parallel kernel the pipeline uses. Both return (B, 2, H, W) float32 flow (dx, dy)
and (B, H, W) bool validity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

DEPTH_TOL = 0.05  # relative depth agreement for a pixel to count as visible at t+1


@dataclass
class FlowInputs:
    """A batch of B frame pairs (t, t+1). Raw-render arrays are (B, 2, ...): index 0 = t, 1 = t+1."""

    depth: np.ndarray  # (B, 2, H, W) float32
    geom_id: np.ndarray  # (B, 2, H, W) int16, -1 = sky
    camera_pos: np.ndarray  # (B, 2, 3)
    camera_mat: np.ndarray  # (B, 2, 3, 3)
    geom_xpos: np.ndarray  # (B, 2, G, 3)
    geom_xmat: np.ndarray  # (B, 2, G, 3, 3)
    shake_affine: np.ndarray  # (B, 2, 2, 3) raw -> displayed
    fovy: float  # degrees

    @classmethod
    def from_episode(cls, ep: dict[str, np.ndarray], fovy: float, t: np.ndarray | None = None) -> FlowInputs:
        """Pairs (t, t+1) of one episode's arrays (dataset layout); all transitions by default."""
        n = len(ep["depth"]) - 1
        t = np.arange(n) if t is None else np.asarray(t)
        pair = np.stack([t, t + 1], 1)
        return cls(depth=ep["depth"][pair], geom_id=ep["geom_id"][pair], camera_pos=ep["camera_pos"][pair],
                   camera_mat=ep["camera_mat"][pair], geom_xpos=ep["geom_xpos"][pair],
                   geom_xmat=ep["geom_xmat"][pair], shake_affine=ep["shake_affine"][pair], fovy=float(fovy))

    def __len__(self) -> int:
        return len(self.depth)


def _inverse_affines(a: np.ndarray) -> np.ndarray:
    """(..., 2, 3) -> (..., 2, 3) inverse maps."""
    m = a[..., :2]
    inv = np.linalg.inv(m)
    return np.concatenate([inv, -(inv @ a[..., 2:])], -1)


# --------------------------------------------------------------------------- NumPy reference

def exact_flow_numpy(x: FlowInputs, depth_tol: float = DEPTH_TOL) -> tuple[np.ndarray, np.ndarray]:
    b, _, h, w = x.depth.shape
    flow = np.zeros((b, 2, h, w), np.float32)
    valid = np.zeros((b, h, w), bool)
    f = (h / 2.0) / math.tan(math.radians(x.fovy) / 2.0)
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    qy, qx = np.mgrid[0:h, 0:w].astype(np.float64)
    inv0 = _inverse_affines(x.shake_affine[:, 0].astype(np.float64))
    for i in range(b):
        a0, a1 = inv0[i], x.shake_affine[i, 1].astype(np.float64)
        rx = a0[0, 0] * qx + a0[0, 1] * qy + a0[0, 2]
        ry = a0[1, 0] * qx + a0[1, 1] * qy + a0[1, 2]
        ix, iy = np.rint(rx).astype(int), np.rint(ry).astype(int)
        inside = (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h)
        ixc, iyc = np.clip(ix, 0, w - 1), np.clip(iy, 0, h - 1)
        d = x.depth[i, 0][iyc, ixc].astype(np.float64)
        g = x.geom_id[i, 0][iyc, ixc].astype(np.int64)
        p_cam = np.stack([(rx - cx) / f, -(ry - cy) / f, -np.ones_like(rx)], -1)  # ray, z = -1
        R0, R1 = x.camera_mat[i, 0].astype(np.float64), x.camera_mat[i, 1].astype(np.float64)
        c0, c1 = x.camera_pos[i, 0].astype(np.float64), x.camera_pos[i, 1].astype(np.float64)
        sky = g < 0
        world = c0 + (p_cam * d[..., None]) @ R0.T  # R0 @ p for every pixel
        gi = np.maximum(g, 0)
        xg0, xg1 = x.geom_xpos[i, 0][gi], x.geom_xpos[i, 1][gi]
        Rg0, Rg1 = x.geom_xmat[i, 0][gi], x.geom_xmat[i, 1][gi]
        local = np.einsum("hwji,hwj->hwi", Rg0, world - xg0)  # Rg0^T (P - x)
        moved = xg1 + np.einsum("hwij,hwj->hwi", Rg1, local)
        cam1 = np.einsum("ji,hwj->hwi", R1, moved - c1)  # R1^T (P' - c1)
        dirs = p_cam @ R0.T  # sky: direction only
        cam1_sky = dirs @ R1
        cam1 = np.where(sky[..., None], cam1_sky, cam1)
        z = -cam1[..., 2]
        ok = inside & (z > 1e-6)
        zs = np.where(ok, z, 1.0)
        r1x = f * cam1[..., 0] / zs + cx
        r1y = -f * cam1[..., 1] / zs + cy
        dx = a1[0, 0] * r1x + a1[0, 1] * r1y + a1[0, 2] - qx
        dy = a1[1, 0] * r1x + a1[1, 1] * r1y + a1[1, 2] - qy
        jx, jy = np.rint(r1x).astype(int), np.rint(r1y).astype(int)
        ok &= (jx >= 0) & (jx < w) & (jy >= 0) & (jy < h)
        jxc, jyc = np.clip(jx, 0, w - 1), np.clip(jy, 0, h - 1)
        g1 = x.geom_id[i, 1][jyc, jxc]
        d1 = x.depth[i, 1][jyc, jxc]
        same = g1 == g
        visible = np.where(sky, same, same & (np.abs(d1 - z) <= depth_tol * z))
        ok &= visible
        flow[i, 0] = np.where(ok, dx, 0.0)
        flow[i, 1] = np.where(ok, dy, 0.0)
        valid[i] = ok
    return flow, valid


# --------------------------------------------------------------------------- Numba kernel

@numba.njit(parallel=True, fastmath=False, cache=True)
def _exact_flow_kernel(depth, geom, cam_pos, cam_mat, gpos, gmat, inv0, aff1, f, depth_tol, flow, valid):
    b, _, h, w = depth.shape
    cx = (w - 1) / 2.0
    cy = (h - 1) / 2.0
    for n in numba.prange(b * h):
        i = n // h
        qy = n % h
        R0 = cam_mat[i, 0]
        R1 = cam_mat[i, 1]
        a0 = inv0[i]
        a1 = aff1[i]
        for qx in range(w):
            flow[i, 0, qy, qx] = 0.0
            flow[i, 1, qy, qx] = 0.0
            valid[i, qy, qx] = False
            rx = a0[0, 0] * qx + a0[0, 1] * qy + a0[0, 2]
            ry = a0[1, 0] * qx + a0[1, 1] * qy + a0[1, 2]
            ix = int(np.rint(rx))
            iy = int(np.rint(ry))
            if ix < 0 or ix >= w or iy < 0 or iy >= h:
                continue
            d = float(depth[i, 0, iy, ix])
            g = int(geom[i, 0, iy, ix])
            px = (rx - cx) / f
            py = -(ry - cy) / f
            pz = -1.0
            if g < 0:  # sky: a direction, rotated by the camera only
                wx = R0[0, 0] * px + R0[0, 1] * py + R0[0, 2] * pz
                wy = R0[1, 0] * px + R0[1, 1] * py + R0[1, 2] * pz
                wz = R0[2, 0] * px + R0[2, 1] * py + R0[2, 2] * pz
            else:
                Px = cam_pos[i, 0, 0] + d * (R0[0, 0] * px + R0[0, 1] * py + R0[0, 2] * pz)
                Py = cam_pos[i, 0, 1] + d * (R0[1, 0] * px + R0[1, 1] * py + R0[1, 2] * pz)
                Pz = cam_pos[i, 0, 2] + d * (R0[2, 0] * px + R0[2, 1] * py + R0[2, 2] * pz)
                ex = Px - gpos[i, 0, g, 0]
                ey = Py - gpos[i, 0, g, 1]
                ez = Pz - gpos[i, 0, g, 2]
                G0 = gmat[i, 0, g]
                G1 = gmat[i, 1, g]
                lx = G0[0, 0] * ex + G0[1, 0] * ey + G0[2, 0] * ez
                ly = G0[0, 1] * ex + G0[1, 1] * ey + G0[2, 1] * ez
                lz = G0[0, 2] * ex + G0[1, 2] * ey + G0[2, 2] * ez
                wx = gpos[i, 1, g, 0] + G1[0, 0] * lx + G1[0, 1] * ly + G1[0, 2] * lz - cam_pos[i, 1, 0]
                wy = gpos[i, 1, g, 1] + G1[1, 0] * lx + G1[1, 1] * ly + G1[1, 2] * lz - cam_pos[i, 1, 1]
                wz = gpos[i, 1, g, 2] + G1[2, 0] * lx + G1[2, 1] * ly + G1[2, 2] * lz - cam_pos[i, 1, 2]
            c1x = R1[0, 0] * wx + R1[1, 0] * wy + R1[2, 0] * wz
            c1y = R1[0, 1] * wx + R1[1, 1] * wy + R1[2, 1] * wz
            c1z = R1[0, 2] * wx + R1[1, 2] * wy + R1[2, 2] * wz
            z = -c1z
            if z <= 1e-6:
                continue
            r1x = f * c1x / z + cx
            r1y = -f * c1y / z + cy
            jx = int(np.rint(r1x))
            jy = int(np.rint(r1y))
            if jx < 0 or jx >= w or jy < 0 or jy >= h:
                continue
            g1 = int(geom[i, 1, jy, jx])
            if g1 != g:
                continue
            if g >= 0 and abs(float(depth[i, 1, jy, jx]) - z) > depth_tol * z:
                continue
            flow[i, 0, qy, qx] = a1[0, 0] * r1x + a1[0, 1] * r1y + a1[0, 2] - qx
            flow[i, 1, qy, qx] = a1[1, 0] * r1x + a1[1, 1] * r1y + a1[1, 2] - qy
            valid[i, qy, qx] = True


def exact_flow_numba(x: FlowInputs, depth_tol: float = DEPTH_TOL) -> tuple[np.ndarray, np.ndarray]:
    b, _, h, w = x.depth.shape
    flow = np.empty((b, 2, h, w), np.float32)
    valid = np.empty((b, h, w), np.bool_)
    f = (h / 2.0) / math.tan(math.radians(x.fovy) / 2.0)
    inv0 = np.ascontiguousarray(_inverse_affines(x.shake_affine[:, 0].astype(np.float64)))
    aff1 = np.ascontiguousarray(x.shake_affine[:, 1].astype(np.float64))
    _exact_flow_kernel(np.ascontiguousarray(x.depth, np.float32), np.ascontiguousarray(x.geom_id, np.int16),
                       np.ascontiguousarray(x.camera_pos, np.float64), np.ascontiguousarray(x.camera_mat, np.float64),
                       np.ascontiguousarray(x.geom_xpos, np.float64), np.ascontiguousarray(x.geom_xmat, np.float64),
                       inv0, aff1, f, depth_tol, flow, valid)
    return flow, valid
