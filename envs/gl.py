"""Headless OpenGL for MuJoCo rendering, made safe to use.

EnvPool renders MuJoCo pixels in C++ threads; on Linux it needs a GL platform library loaded
*globally* before the first render, or the process aborts inside MuJoCo without a Python
exception. Loading ``libEGL.so.1`` with ``RTLD_GLOBAL`` in-process does it. dm_control picks its
backend from ``MUJOCO_GL``, which we set to ``egl``; any other value is refused (the two simulators must
render alike, and EnvPool has no other headless backend).
Without a GPU, Mesa's llvmpipe renders (Debian: libegl1, libegl-mesa0, libgl1-mesa-dri).
"""

from __future__ import annotations

import ctypes
import glob
import os
import sys

APT_HINT = "apt-get update && apt-get install -y libegl1 libegl-mesa0 libgl1-mesa-dri"

_EGL_HANDLE: ctypes.CDLL | None = None


class GLUnavailableError(RuntimeError):
    """No usable headless GL: rendering would abort the process, so we refuse early."""


#: where glvnd looks for EGL vendor files when no environment variable says otherwise
DEFAULT_VENDOR_DIRS = ("/etc/glvnd/egl_vendor.d", "/usr/share/glvnd/egl_vendor.d")


def _egl_vendor_files() -> tuple[list[str], str]:
    """The EGL vendor files glvnd would read, and where it looked, by glvnd's rule: the files listed in
    ``__EGL_VENDOR_LIBRARY_FILENAMES`` only, if it is set; else the folders of ``__EGL_VENDOR_LIBRARY_DIRS``
    only, if it is set; else the default folders."""
    files = os.environ.get("__EGL_VENDOR_LIBRARY_FILENAMES")
    if files:
        return [f for f in files.split(":") if f and os.path.exists(f)], f"__EGL_VENDOR_LIBRARY_FILENAMES={files}"
    dirs = os.environ.get("__EGL_VENDOR_LIBRARY_DIRS")
    where = f"__EGL_VENDOR_LIBRARY_DIRS={dirs}" if dirs else ", ".join(DEFAULT_VENDOR_DIRS)
    found: list[str] = []
    for d in (dirs.split(":") if dirs else DEFAULT_VENDOR_DIRS):
        if d:
            found += sorted(glob.glob(os.path.join(d, "*.json")))
    return found, where


def _egl_mapped() -> bool:
    try:
        with open("/proc/self/maps") as f:
            return "libEGL.so" in f.read()
    except OSError:
        return False


def ensure_gl() -> None:
    """Load libEGL globally (once) and point dm_control at EGL.

    Must run before ``import envpool`` (``import envs`` does it): EnvPool imported first fails to
    make its EGL context and aborts the process on the first render.
    Raises GLUnavailableError, naming the Debian packages to install, when EGL or a vendor
    driver (Mesa or NVIDIA) is missing, or when envpool was imported too early.
    """
    global _EGL_HANDLE
    os.environ.setdefault("MUJOCO_GL", "egl")
    if os.environ["MUJOCO_GL"] != "egl":
        raise GLUnavailableError(
            f"MUJOCO_GL={os.environ['MUJOCO_GL']}: the environments render headless with EGL (EnvPool needs it, "
            "and dm_control must share it); unset MUJOCO_GL or set it to egl")
    os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
    if _EGL_HANDLE is not None:
        return
    if "envpool" in sys.modules and not _egl_mapped():
        raise GLUnavailableError(
            "envpool was imported before libEGL was loaded, so its pixel rendering would abort the "
            "process. Import envs (or call envs.ensure_gl()) before importing envpool, or run with "
            "LD_PRELOAD=libEGL.so.1."
        )
    try:
        handle = ctypes.CDLL("libEGL.so.1", mode=ctypes.RTLD_GLOBAL)
    except OSError as exc:
        raise GLUnavailableError(
            f"Cannot load libEGL.so.1 ({exc}); MuJoCo pixel rendering needs headless EGL. "
            f"Install it with: {APT_HINT}"
        ) from exc
    vendors, where = _egl_vendor_files()
    if not vendors:
        raise GLUnavailableError(
            f"libEGL.so.1 loads but no EGL vendor driver is registered (no *.json in {where}), so rendering "
            f"would abort. Install Mesa's EGL driver with: {APT_HINT}"
            + (" (or unset the __EGL_VENDOR_LIBRARY_* variable)" if where.startswith("__EGL") else "")
        )
    _EGL_HANDLE = handle
