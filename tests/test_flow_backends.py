"""Flow backends: selection, CUDA sources that compile, the CUDA kernels = Numba (emulated on the CPU
everywhere, and on a real GPU where there is one)."""

import shutil
import subprocess

import numpy as np
import pytest
from conftest import record
from cuda_on_cpu import CXX, CpuLauncher, _parse
from scipy import ndimage

from rl_laof.flow import backends
from rl_laof.flow.backends import CUDA_DIR, cuda_problem, estimate_flow, exact_flow, resolve_backend
from rl_laof.flow.estimate import TVL1Params, estimate_flow_numba

NVCC = shutil.which("nvcc")
SOURCES = sorted(p.name for p in CUDA_DIR.glob("*.cu"))
needs_cxx = pytest.mark.skipif(CXX is None, reason="no C++ compiler to emulate the CUDA kernels")


def test_backend_selection():
    with pytest.raises(ValueError, match="Unknown flow backend 'opencl'"):
        resolve_backend("opencl")
    assert resolve_backend("numba") == "numba"
    problem = cuda_problem()
    assert resolve_backend("auto") == ("numba" if problem else "cupy")
    if problem:
        with pytest.raises(RuntimeError, match="needs a CUDA GPU.*--backend numba"):
            resolve_backend("cupy")
        with pytest.raises(RuntimeError, match="needs a CUDA GPU"):
            estimate_flow(np.zeros((1, 16, 16)), np.zeros((1, 16, 16)), "cupy")


@pytest.mark.skipif(NVCC is None, reason="nvcc not installed (the CUDA sources are compiled where it exists)")
@pytest.mark.parametrize("source", SOURCES)
def test_cuda_sources_compile_with_nvcc(source, tmp_path):
    r = subprocess.run([NVCC, "--ptx", "--fmad=false", str(CUDA_DIR / source), "-o", str(tmp_path / "k.ptx")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    ptx = (tmp_path / "k.ptx").read_text()
    kernels = _parse((CUDA_DIR / source).read_text())
    assert kernels and all(f".entry {name}(" in ptx for name in kernels)


def frame_pairs(h: int, w: int, b: int = 3, seed: int = 0):
    """Textured grey frames moved by a different sub-pixel shift per pair."""
    rng = np.random.default_rng(seed)
    img = ndimage.gaussian_filter(rng.uniform(0, 255, (h + 8, w + 8)), 2.0)
    shifts = rng.uniform(-1.5, 1.5, (b, 2))
    i0 = np.stack([img[4:4 + h, 4:4 + w]] * b)
    i1 = np.stack([ndimage.shift(img, s, order=3, mode="nearest")[4:4 + h, 4:4 + w] for s in shifts])
    return i0.astype(np.float32), i1.astype(np.float32)


@needs_cxx
@pytest.mark.parametrize("h,w,params", [(64, 64, TVL1Params()),
                                        (42, 50, TVL1Params(scales=4, warps=2, iters=7, median=True))])
def test_cuda_tvl1_kernels_match_numba_emulated(h, w, params):
    i0, i1 = frame_pairs(h, w)
    u_cuda = backends.estimate_flow_on_device(i0, i1, params, np, CpuLauncher("tvl1.cu"))
    u_nb = estimate_flow_numba(i0, i1, params)
    assert np.abs(u_nb).max() > 0.5  # it moved
    np.testing.assert_allclose(u_cuda, u_nb, atol=1e-4)


@needs_cxx
def test_cuda_exact_flow_kernel_matches_numba_emulated(gl):
    from rl_laof.flow import FlowInputs, exact_flow_numba

    ep, fovy = record("hard:camera", 12)
    x = FlowInputs.from_episode(ep, fovy)
    f_cuda, v_cuda = backends.exact_flow_on_device(x, 0.05, np, CpuLauncher("exact_flow.cu"))
    f_nb, v_nb = exact_flow_numba(x, 0.05)
    np.testing.assert_array_equal(v_cuda.astype(bool), v_nb)
    np.testing.assert_allclose(f_cuda, f_nb, atol=1e-4)


@needs_cxx
def test_emulator_refuses_wrong_argument_types():
    launch = CpuLauncher("tvl1.cu")
    with pytest.raises(TypeError, match="float32 array"):
        launch("tvl1_gradient", 4, np.zeros((1, 2, 2)), np.zeros((1, 2, 2), np.float32),
               np.zeros((1, 2, 2), np.float32), 1, 2, 2)


@pytest.mark.gpu
def test_cupy_exact_flow_matches_numba(gl):
    from rl_laof.flow import FlowInputs

    ep, fovy = record("hard:camera", 12)
    x = FlowInputs.from_episode(ep, fovy)
    f_nb, v_nb = exact_flow(x, "numba")
    f_cp, v_cp = exact_flow(x, "cupy")
    np.testing.assert_array_equal(v_cp, v_nb)
    np.testing.assert_allclose(f_cp, f_nb, atol=1e-4)


@pytest.mark.gpu
@pytest.mark.parametrize("h,w,params", [(64, 64, TVL1Params()), (42, 50, TVL1Params(scales=4, median=True))])
def test_cupy_tvl1_matches_numba(h, w, params):
    i0, i1 = frame_pairs(h, w, b=8)
    np.testing.assert_allclose(estimate_flow(i0, i1, "cupy", params), estimate_flow(i0, i1, "numba", params),
                               atol=1e-4)
