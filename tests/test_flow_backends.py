"""Flow backends: selection, CUDA sources that compile, and CuPy = Numba on a GPU."""

import shutil
import subprocess

import numpy as np
import pytest

from rl_laof.flow.backends import CUDA_DIR, cuda_problem, exact_flow, resolve_backend

NVCC = shutil.which("nvcc")


def test_backend_selection():
    with pytest.raises(ValueError, match="Unknown flow backend 'opencl'"):
        resolve_backend("opencl")
    assert resolve_backend("numba") == "numba"
    problem = cuda_problem()
    assert resolve_backend("auto") == ("numba" if problem else "cupy")
    if problem:
        with pytest.raises(RuntimeError, match="needs a CUDA GPU.*--backend numba"):
            resolve_backend("cupy")


@pytest.mark.skipif(NVCC is None, reason="nvcc not installed (the CUDA sources are compiled where it exists)")
@pytest.mark.parametrize("source", sorted(p.name for p in CUDA_DIR.glob("*.cu")))
def test_cuda_sources_compile_with_nvcc(source, tmp_path):
    r = subprocess.run([NVCC, "--ptx", str(CUDA_DIR / source), "-o", str(tmp_path / "k.ptx")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "exact_flow" in (tmp_path / "k.ptx").read_text() or source != "exact_flow.cu"


@pytest.mark.gpu
def test_cupy_exact_flow_matches_numba(gl):
    from test_flow_exact import record

    from rl_laof.flow import FlowInputs

    ep, fovy = record("hard:camera", 12)
    x = FlowInputs.from_episode(ep, fovy)
    f_nb, v_nb = exact_flow(x, "numba")
    f_cp, v_cp = exact_flow(x, "cupy")
    np.testing.assert_array_equal(v_cp, v_nb)
    np.testing.assert_allclose(f_cp, f_nb, atol=1e-4)
