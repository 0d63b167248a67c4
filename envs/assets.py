"""A render-optimised copy of the dm_control asset tree, shared by both backends.

Two edits, applied to every XML of EnvPool's copy of the dm_control suite assets:

* ``<quality shadowsize="0" offsamples="0"/>``: shadows and multisampling dominate CPU (llvmpipe)
  rendering cost; without them cheetah-run renders at 64x64 about 10x faster.
* every skybox becomes one flat, unlit texture of :data:`KEY_COLOR`. The skybox is drawn without
  lighting, so sky pixels are *exactly* that colour and nothing lit can reach it (lit colours
  always keep some green from the white headlight), which gives an exact background mask in
  image space. Without multisampling no edge pixel blends sky and agent.

EnvPool reads the model XML from ``base_path/mujoco/assets_dmc``; dm_control gets the same bytes
through :func:`model_and_assets`, so both backends render the same scene.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import xml.etree.ElementTree as ET
from functools import cache
from pathlib import Path

KEY_COLOR = (255, 0, 255)
ASSET_EDIT_VERSION = "1"  # bump when the edits below change, so caches are rebuilt


def envpool_asset_root() -> Path:
    """EnvPool's own asset tree (``.../envpool_assets``), the unmodified source."""
    import envpool_assets  # deferred: envpool's asset package, imported with envpool after EGL (envs.gl)

    root = Path(envpool_assets.__file__).resolve().parent
    if not (root / "mujoco" / "assets_dmc").is_dir():
        raise FileNotFoundError(
            f"{root}/mujoco/assets_dmc is missing: reinstall envpool (pip install --force-reinstall "
            "'envpool>=1.2.3' envpool-assets)."
        )
    return root


def cache_dir() -> Path:
    base = os.environ.get("RL_LAOF_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "rl_laof"
    )
    return Path(base)


def _edit_xml(path: Path) -> bool:
    """Apply the render edits to one XML file in place; returns whether it changed."""
    tree = ET.parse(path)
    root = tree.getroot()
    changed = False
    key = " ".join(f"{c / 255:g}" for c in KEY_COLOR)
    for tex in root.iter("texture"):
        if tex.get("type") == "skybox":
            for attr in ("file", "mark", "markrgb", "random", "gridsize", "gridlayout"):
                tex.attrib.pop(attr, None)
            tex.set("builtin", "flat")
            tex.set("rgb1", key)
            tex.set("rgb2", key)
            tex.set("width", "8")
            tex.set("height", "8")
            changed = True
    for quality in root.iter("quality"):
        quality.set("shadowsize", "0")
        quality.set("offsamples", "0")
        changed = True
    if changed:
        tree.write(path, encoding="utf-8")
    return changed


@cache
def render_asset_root() -> Path:
    """Path to pass as EnvPool's ``base_path``: the edited copy, built once and cached on disk.

    The copy is built in a temporary directory and renamed into place, so concurrent processes
    and interrupted builds never see a half-written tree.
    """
    src = envpool_asset_root()
    stamp = hashlib.sha1(
        (str(src) + ASSET_EDIT_VERSION + str((src / "mujoco/assets_dmc/cheetah.xml").stat().st_mtime))
        .encode()
    ).hexdigest()[:12]
    dst = cache_dir() / "assets" / stamp
    if (dst / "mujoco" / "assets_dmc" / "common" / "visual.xml").exists():
        return dst
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{stamp}-", dir=dst.parent))
    try:
        shutil.copytree(src / "mujoco" / "assets_dmc", tmp / "mujoco" / "assets_dmc")
        tree = tmp / "mujoco" / "assets_dmc"
        for xml in list(tree.glob("*.xml")) + list((tree / "common").glob("*.xml")):
            _edit_xml(xml)
        visual = ET.parse(tree / "common" / "visual.xml").getroot().find("./visual/quality")
        if visual is None or visual.get("offsamples") != "0":
            raise RuntimeError("common/visual.xml of the asset tree has no <quality>: layout changed?")
        try:
            os.rename(tmp, dst)
        except OSError:  # another process won the race; its copy is identical
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dst


def dmc_asset_dir(optimised: bool = True) -> Path:
    return (render_asset_root() if optimised else envpool_asset_root()) / "mujoco" / "assets_dmc"


def model_and_assets(domain: str, optimised: bool = True) -> tuple[bytes, dict[str, bytes]]:
    """(model XML, assets) in the form dm_control's ``Physics.from_xml_string`` expects."""
    base = dmc_asset_dir(optimised)
    xml_path = base / f"{domain}.xml"
    if not xml_path.exists():
        raise FileNotFoundError(f"No model {xml_path} for domain {domain!r}.")
    assets: dict[str, bytes] = {}
    for path in base.rglob("*"):
        if path.is_file() and path != xml_path and path.suffix in {".xml", ".stl", ".png", ".msh", ".obj"}:
            rel = path.relative_to(base).as_posix()
            assets["./" + rel] = path.read_bytes()  # the form the suite's <include>s use
    return xml_path.read_bytes(), assets
