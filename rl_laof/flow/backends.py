"""One API over the flow kernels: ``numba`` (CPU, parallel) and ``cupy`` (GPU RawKernels).

``auto`` picks CuPy when a CUDA device is usable, Numba otherwise; asking for ``cupy`` without one
is an error that says what is missing. The CUDA sources live in ``rl_laof/flow/cuda/*.cu``; each
kernel mirrors its Numba twin step for step. The host loops that drive them take the array module
and a launcher, so tests run the same loops and kernels on the CPU (``tests/cuda_on_cpu.py``, the
sources compiled as C++) and check them against Numba everywhere; on a GPU they check CuPy against
Numba to 1e-4, and the sources compile with ``nvcc`` wherever it exists.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from rl_laof.flow.estimate import TVL1Params, estimate_flow_numba, gray_pairs
from rl_laof.flow.exact import DEPTH_TOL, FlowInputs, _inverse_affines, exact_flow_numba

BACKENDS = ("auto", "numba", "cupy")
CUDA_DIR = Path(__file__).parent / "cuda"


def cuda_problem() -> str | None:
    """Why CuPy cannot run here (None when it can)."""
    try:
        import cupy  # deferred: cupy is optional (GPU)
    except ImportError:
        return "CuPy is not installed: pip install -e .[gpu] (cupy-cuda12x)"
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return "no CUDA device is visible"
    except Exception as exc:  # no driver, no device
        return f"no usable CUDA device ({exc})"
    return None


def resolve_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"Unknown flow backend {backend!r}; valid: {', '.join(BACKENDS)}.")
    problem = cuda_problem() if backend in ("auto", "cupy") else None
    if backend == "cupy" and problem:
        raise RuntimeError(f"--backend cupy needs a CUDA GPU: {problem}. Use --backend numba (or auto).")
    if backend == "auto":
        return "numba" if problem else "cupy"
    return backend


KERNEL_OPTIONS = ("--fmad=false",)  # no fused multiply-add: the kernels then round as the Numba code does


class CupyLauncher:
    """``launch(name, n, *args)``: run kernel ``name`` of one ``cuda/*.cu`` source over ``n`` threads.

    Arguments are CuPy arrays and NumPy scalars typed as the kernel's signature (np.int32, np.float64).
    The same interface is implemented on the CPU by ``tests/cuda_on_cpu.py``, which compiles the sources
    with a C++ compiler so that the host loops below are tested without a GPU.
    """

    threads = 256

    def __init__(self, source: str):
        import cupy  # deferred: cupy is optional (GPU)

        self.module = cupy.RawModule(code=(CUDA_DIR / source).read_text(), options=KERNEL_OPTIONS)

    def __call__(self, name: str, n: int, *args) -> None:
        self.module.get_function(name)(((n + self.threads - 1) // self.threads,), (self.threads,), args)


@functools.cache
def cupy_launcher(source: str) -> CupyLauncher:
    return CupyLauncher(source)


def exact_flow_on_device(x: FlowInputs, depth_tol: float, xp, launch):
    """The exact-flow kernel over a batch; ``xp`` is the array module (cupy, or numpy for the CPU emulation)."""
    b, _, h, w = x.depth.shape
    g = x.geom_xpos.shape[2]
    f = (h / 2.0) / np.tan(np.radians(x.fovy) / 2.0)
    inv0 = _inverse_affines(x.shake_affine[:, 0].astype(np.float64))
    args = [xp.asarray(np.ascontiguousarray(a, dt)) for a, dt in (
        (x.depth, np.float32), (x.geom_id, np.int16), (x.camera_pos, np.float64), (x.camera_mat, np.float64),
        (x.geom_xpos, np.float64), (x.geom_xmat, np.float64), (inv0, np.float64),
        (x.shake_affine[:, 1], np.float64))]
    flow = xp.empty((b, 2, h, w), xp.float32)
    valid = xp.empty((b, h, w), xp.uint8)
    launch("exact_flow", b * h * w, *args, np.int32(b), np.int32(h), np.int32(w), np.int32(g), np.float64(f),
           np.float64(depth_tol), flow, valid)
    return flow, valid


def exact_flow_cupy(x: FlowInputs, depth_tol: float = DEPTH_TOL) -> tuple[np.ndarray, np.ndarray]:
    import cupy  # deferred: cupy is optional (GPU)

    flow, valid = exact_flow_on_device(x, depth_tol, cupy, cupy_launcher("exact_flow.cu"))
    return cupy.asnumpy(flow), cupy.asnumpy(valid).astype(bool)


def exact_flow(x: FlowInputs, backend: str = "auto", depth_tol: float = DEPTH_TOL):
    """Exact flow of a batch of pairs on the chosen backend: (B, 2, H, W) float32, (B, H, W) bool."""
    if resolve_backend(backend) == "cupy":
        return exact_flow_cupy(x, depth_tol)
    return exact_flow_numba(x, depth_tol)


def estimate_flow_on_device(g0, g1, params: TVL1Params, xp, launch):
    """Coarse-to-fine TV-L1 (estimate.py's ``_tvl1_pair``) as a host loop over the ``cuda/tvl1.cu`` kernels.

    g0, g1: (B, H, W) float32 grey levels in ``xp`` arrays. Every kernel runs on the whole batch at once.
    """
    b = g0.shape[0]
    i32 = np.int32
    pyr0, pyr1 = [g0], [g1]
    for _ in range(params.scales - 1):
        sh, sw = pyr0[-1].shape[1:]
        if sh < 16 or sw < 16:
            break
        for pyr in (pyr0, pyr1):
            d = xp.empty((b, sh // 2, sw // 2), xp.float32)
            launch("tvl1_downsample", d.size, pyr[-1], d, i32(b), i32(sh // 2), i32(sw // 2), i32(sh), i32(sw))
            pyr.append(d)
    u = xp.zeros((b, 2, *pyr0[-1].shape[1:]), xp.float32)
    for k in range(len(pyr0) - 1, -1, -1):
        h, w = pyr0[k].shape[1:]
        n = b * h * w
        dims = (i32(b), i32(h), i32(w))
        if k < len(pyr0) - 1:
            up = xp.empty((b, 2, h, w), xp.float32)
            launch("tvl1_upsample_flow", n, u, up, i32(b), i32(u.shape[2]), i32(u.shape[3]), i32(h), i32(w))
            u = up
        gx, gy, ix, iy, g2, rho_c = (xp.empty((b, h, w), xp.float32) for _ in range(6))
        p = xp.zeros((b, 4, h, w), xp.float32)
        v = xp.zeros((b, 2, h, w), xp.float32)
        launch("tvl1_gradient", n, pyr1[k], gx, gy, *dims)
        for _ in range(params.warps):
            launch("tvl1_warp", n, pyr0[k], pyr1[k], gx, gy, u, ix, iy, g2, rho_c, *dims)
            for _ in range(params.iters):
                launch("tvl1_threshold", n, u, ix, iy, g2, rho_c, v, np.float64(params.lam * params.theta), *dims)
                launch("tvl1_primal", n, v, p, u, np.float64(params.theta), *dims)
                launch("tvl1_dual", n, u, p, np.float64(params.tau / params.theta), *dims)
            if params.median:
                smooth = xp.empty_like(u)
                launch("tvl1_median3", 2 * n, u, smooth, i32(2 * b), i32(h), i32(w))
                u = smooth
    return u


def estimate_flow_cupy(frames0: np.ndarray, frames1: np.ndarray, params: TVL1Params | None = None) -> np.ndarray:
    """TV-L1 flow on the GPU; same inputs and outputs as ``estimate_flow_numba``."""
    import cupy  # deferred: cupy is optional (GPU)

    g0, g1 = gray_pairs(frames0, frames1)
    u = estimate_flow_on_device(cupy.asarray(g0), cupy.asarray(g1), params or TVL1Params(), cupy,
                                cupy_launcher("tvl1.cu"))
    return cupy.asnumpy(u)


def estimate_flow(frames0: np.ndarray, frames1: np.ndarray, backend: str = "auto",
                  params: TVL1Params | None = None) -> np.ndarray:
    """Flow from RGB alone on the chosen backend: (B, 3, H, W) uint8 or (B, H, W) grey pairs -> (B, 2, H, W)."""
    if resolve_backend(backend) == "cupy":
        return estimate_flow_cupy(frames0, frames1, params)
    return estimate_flow_numba(frames0, frames1, params)
