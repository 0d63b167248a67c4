"""Headless OpenGL for MuJoCo rendering, made safe to use.

EnvPool renders MuJoCo pixels in C++ threads; on Linux it needs a GL platform library loaded
*globally* before the first render, or the process aborts inside MuJoCo without a Python
exception. Loading ``libEGL.so.1`` with ``RTLD_GLOBAL`` in-process does it. dm_control picks its
backend from ``MUJOCO_GL``, which we set to ``egl`` unless the user chose another.
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


def _egl_vendor_files() -> list[str]:
    dirs = os.environ.get("__EGL_VENDOR_LIBRARY_DIRS", "").split(":") + [
        "/usr/share/glvnd/egl_vendor.d",
        "/etc/glvnd/egl_vendor.d",
        "/usr/local/share/glvnd/egl_vendor.d",
    ]
    files = os.environ.get("__EGL_VENDOR_LIBRARY_FILENAMES", "")
    found = [f for f in files.split(":") if f and os.path.exists(f)]
    for d in dirs:
        if d:
            found += glob.glob(os.path.join(d, "*.json"))
    return found


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
    if not _egl_vendor_files():
        raise GLUnavailableError(
            "libEGL.so.1 loads but no EGL vendor driver is registered "
            "(no *.json in /usr/share/glvnd/egl_vendor.d), so rendering would abort. "
            f"Install Mesa's EGL driver with: {APT_HINT}"
        )
    _EGL_HANDLE = handle
