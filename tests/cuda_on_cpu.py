"""Run the CUDA kernels of ``rl_laof/flow/cuda/*.cu`` on the CPU, one simulated thread at a time.

The sources are compiled as C++ (g++, no FMA contraction, like ``--fmad=false`` on the GPU) with the
CUDA qualifiers defined away and ``blockIdx`` / ``threadIdx`` as globals; for every ``extern "C"
__global__`` kernel a ``launch_<name>(n, ...)`` loop is generated that calls it once per thread index.
``CpuLauncher`` has the interface of ``rl_laof.flow.backends.CupyLauncher`` with NumPy arrays, so the
host loops that drive the kernels (pyramids, warps, iterations) and the kernels themselves are tested
against the Numba code on machines without a GPU. It does not model shared memory or synchronisation;
our kernels use neither.
"""

from __future__ import annotations

import ctypes
import hashlib
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from rl_laof.flow.backends import CUDA_DIR

CXX = shutil.which("g++") or shutil.which("c++")

PRELUDE = r"""
#include <math.h>
struct emu_dim3 { unsigned int x, y, z; };
static emu_dim3 blockIdx = {0, 0, 0}, threadIdx = {0, 0, 0}, blockDim = {1, 1, 1};
#define __global__
#define __device__
#define __forceinline__ inline
"""

KERNEL = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(([^)]*)\)', re.S)
POINTEES = {"float*": np.float32, "double*": np.float64, "short*": np.int16, "int*": np.int32,
            "unsigned char*": np.uint8}
SCALARS = {"int": ctypes.c_int, "long long": ctypes.c_longlong, "float": ctypes.c_float, "double": ctypes.c_double}


def _parse(source: str) -> dict[str, list[tuple[str, str]]]:
    """kernel name -> [(C type, parameter name)]"""
    kernels = {}
    for name, params in KERNEL.findall(source):
        out = []
        for p in params.split(","):
            ctype, pname = p.strip().rsplit(None, 1)
            if pname.startswith("*"):
                ctype, pname = ctype + "*", pname[1:]
            out.append((ctype.replace("const ", "").strip(), pname))
        kernels[name] = out
    return kernels


def _ctype(ctype: str):
    if ctype.endswith("*"):
        return ctypes.c_void_p
    return SCALARS[ctype]


class CpuLauncher:
    def __init__(self, source_name: str):
        if CXX is None:
            raise RuntimeError("no C++ compiler (g++) to emulate the CUDA kernels")
        source = (CUDA_DIR / source_name).read_text()
        self.kernels = _parse(source)
        launchers = []
        for name, params in self.kernels.items():
            decl = ", ".join(f"{t} {p}" for t, p in params)
            call = ", ".join(p for _, p in params)
            launchers.append(f'extern "C" void launch_{name}(long long n, {decl}) {{\n'
                             f"  for (long long i = 0; i < n; ++i) {{\n"
                             f"    blockIdx.x = (unsigned int)i;\n    {name}({call});\n  }}\n}}")
        code = PRELUDE + source + "\n" + "\n".join(launchers) + "\n"
        key = hashlib.sha256(code.encode()).hexdigest()[:16]
        lib = Path(tempfile.gettempdir()) / f"rl_laof_cuda_on_cpu_{source_name}_{key}.so"
        if not lib.exists():
            tmp = lib.with_suffix(f".{id(self)}.tmp")
            r = subprocess.run([CXX, "-O2", "-ffp-contract=off", "-shared", "-fPIC", "-x", "c++", "-", "-o", str(tmp)],
                               input=code, capture_output=True, text=True)
            if r.returncode:
                raise RuntimeError(f"g++ could not compile {source_name}:\n{r.stderr}")
            tmp.replace(lib)
        self.lib = ctypes.CDLL(str(lib))
        for name, params in self.kernels.items():
            fn = getattr(self.lib, f"launch_{name}")
            fn.argtypes = [ctypes.c_longlong] + [_ctype(t) for t, _ in params]
            fn.restype = None

    def __call__(self, name: str, n: int, *args) -> None:
        params = self.kernels[name]
        if len(args) != len(params):
            raise TypeError(f"{name} takes {len(params)} arguments, got {len(args)}")
        values = []
        for (ctype, pname), a in zip(params, args, strict=True):
            if ctype.endswith("*"):
                if not (isinstance(a, np.ndarray) and a.flags.c_contiguous and a.dtype == POINTEES[ctype]):
                    raise TypeError(f"{name}({pname}): needs a C-contiguous {np.dtype(POINTEES[ctype])} array")
                values.append(a.ctypes.data)
            else:
                values.append(a.item() if isinstance(a, np.generic) else a)
        getattr(self.lib, f"launch_{name}")(int(n), *values)
