"""One API over the flow kernels: ``numba`` (CPU, parallel) and ``cupy`` (GPU RawKernels).

``auto`` picks CuPy when a CUDA device is usable, Numba otherwise; asking for ``cupy`` without one
is an error that says what is missing. The CUDA sources live in ``rl_laof/flow/cuda/*.cu`` (each
kernel mirrors its Numba twin line for line; tests check they agree to 1e-4 on a GPU, and that the
sources compile with ``nvcc`` wherever it exists, GPU or not).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from rl_laof.flow.exact import DEPTH_TOL, FlowInputs, _inverse_affines, exact_flow_numba

BACKENDS = ("auto", "numba", "cupy")
CUDA_DIR = Path(__file__).parent / "cuda"


def cuda_problem() -> str | None:
    """Why CuPy cannot run here (None when it can)."""
    try:
        import cupy
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


@functools.cache
def _kernel(name: str):
    import cupy

    return cupy.RawKernel((CUDA_DIR / f"{name}.cu").read_text(), name)


def exact_flow_cupy(x: FlowInputs, depth_tol: float = DEPTH_TOL) -> tuple[np.ndarray, np.ndarray]:
    import cupy

    b, _, h, w = x.depth.shape
    g = x.geom_xpos.shape[2]
    f = (h / 2.0) / np.tan(np.radians(x.fovy) / 2.0)
    inv0 = _inverse_affines(x.shake_affine[:, 0].astype(np.float64))
    args = [cupy.asarray(np.ascontiguousarray(a, dt)) for a, dt in (
        (x.depth, np.float32), (x.geom_id, np.int16), (x.camera_pos, np.float64), (x.camera_mat, np.float64),
        (x.geom_xpos, np.float64), (x.geom_xmat, np.float64), (inv0, np.float64),
        (x.shake_affine[:, 1], np.float64))]
    flow = cupy.empty((b, 2, h, w), cupy.float32)
    valid = cupy.empty((b, h, w), cupy.uint8)
    n = b * h * w
    threads = 256
    _kernel("exact_flow")(((n + threads - 1) // threads,), (threads,),
                          (*args, np.int32(b), np.int32(h), np.int32(w), np.int32(g), np.float64(f),
                           np.float64(depth_tol), flow, valid))
    return cupy.asnumpy(flow), cupy.asnumpy(valid).astype(bool)


def exact_flow(x: FlowInputs, backend: str = "auto", depth_tol: float = DEPTH_TOL):
    """Exact flow of a batch of pairs on the chosen backend: (B, 2, H, W) float32, (B, H, W) bool."""
    if resolve_backend(backend) == "cupy":
        return exact_flow_cupy(x, depth_tol)
    return exact_flow_numba(x, depth_tol)
