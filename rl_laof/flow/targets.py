"""Flow targets for a whole dataset: :func:`fill_flow` (the command: ``python -m rl_laof.flow --dataset DIR
--method exact``, in :mod:`rl_laof.commands.flow`).

Writes ``DIR/flow-<method>.h5`` beside the dataset (which is never rewritten): per episode the raw
flow of every transition, (T, 2, H, W) float16 in displayed pixels, and its validity (T, H, W).
Exact flow also stores the agent's own flow with the camera shake removed (``agent_flow_camfree``,
(T, 2, H, W) float16, already masked to the raw render's agent pixels, and that mask
``agent_camfree``), and the file's ``agent_speed`` attribute holds the agent-speed percentiles of the
training split that calibrate LAOF's sigma (``rl_laof.flow.calibrate``).
Episodes are computed in batches of pairs, each written atomically to ``DIR/flow-<method>-parts/``;
a rerun skips finished episodes, then everything is merged into one file (temporary name, renamed,
``complete`` set last). :class:`rl_laof.data.VideoDataset` attaches the file and the window loader
returns ``flow`` / ``flow_valid``.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path

import h5py
import numpy as np

from rl_laof.data import format as fmt
from rl_laof.data.dataset import VideoDataset
from rl_laof.flow.backends import estimate_flow, exact_flow, resolve_backend
from rl_laof.flow.calibrate import FLOW_SOURCES, agent_speeds, masked_agent_flow, source_keys, speed_summary
from rl_laof.flow.exact import FlowInputs
from rl_laof.progress import progress_bar
from rl_laof.runs import atomic_path, check_room, lock_run

EXACT_KEYS = ("depth", "geom_id", "camera_pos", "camera_mat", "geom_xpos", "geom_xmat", "shake_affine")


def fill_flow(dataset: str | Path, method: str = "exact", backend: str = "auto", batch: int = 256,
              progress: bool = True) -> Path:
    """Compute (or resume, or find) the ``method`` flow targets of a dataset; returns the flow file. A finished
    file made for another dataset (one collected again in the folder since) is refused, not returned."""
    if method not in fmt.FLOW_METHODS:
        raise ValueError(f"Unknown flow method {method!r}; valid: {', '.join(fmt.FLOW_METHODS)}.")
    if batch < 1:
        raise ValueError(f"--batch {batch}: need at least 1 frame pair per kernel call")
    backend = resolve_backend(backend)
    ds = VideoDataset(dataset, flow=None)
    out = fmt.flow_path(ds.path, method)
    if _finished(out, ds, method):
        return out
    missing = [k for k in EXACT_KEYS if k not in ds.keys]
    if method == "exact" and missing:
        raise fmt.DatasetError(f"{ds.path}: has no {missing}: it was collected with --no-exact-flow-inputs, so "
                               "exact flow cannot be computed (use --method estimate, or collect again).")
    # one writer of this method's parts and file at a time (the other method's flow may be computed beside it)
    with lock_run(out.parent, f".flow-{method}.lock", "wait for it (one computation per dataset and method)"):
        if not _finished(out, ds, method):  # not finished by the writer that held the lock before
            _compute_flow(ds, method, backend, batch, progress)
    return out


def _finished(out: Path, ds: VideoDataset, method: str) -> bool:
    """Whether ``out`` holds the finished ``method`` flow of ``ds`` (one of another dataset is refused)."""
    if not out.exists():
        return False
    with fmt.open_h5(out) as f:
        if not f.attrs.get("complete", False):
            return False
        fmt.check_flow_of(f, out, ds.identity, method)
        return True


def _compute_flow(ds: VideoDataset, method: str, backend: str, batch: int, progress: bool) -> None:
    """The flow of every episode of ``ds`` (each kept as a part, so a rerun skips finished ones), then merged."""
    out = fmt.flow_path(ds.path, method)
    parts = out.parent / f"flow-{method}-parts"
    jobs = [(split, e) for split, eps in ds.episodes.items() for e in eps]
    t0 = time.perf_counter()
    pairs = 0
    for split, e in progress_bar(jobs, unit="episode", desc=f"flow {method}", enabled=progress,
                                 folder=out.parent):
        part = parts / f"{split}-{fmt.episode_name(e.index)}.h5"
        if fmt.part_is_complete(part, fmt.FLOW_KEYS):
            continue
        arrays = ds.episode(split, e.index, EXACT_KEYS if method == "exact" else ("obs",))
        out_arrays: dict[str, list[np.ndarray]] = {}
        for s in range(0, e.length, batch):
            t = np.arange(s, min(e.length, s + batch))
            if method == "exact":
                inputs = FlowInputs.from_episode(arrays, ds.camera_fovy, t)
                f, v = exact_flow(inputs, backend)
                cf, cm = camfree_agent_flow(inputs, ds.agent_geoms, backend)
                out_arrays.setdefault("agent_flow_camfree", []).append(cf.astype(np.float16))
                out_arrays.setdefault("agent_camfree", []).append(cm)
            else:  # from RGB only: every pixel gets a flow (no occlusion reasoning)
                f = estimate_flow(arrays["obs"][t], arrays["obs"][t + 1], backend)
                v = np.ones((len(t), *f.shape[-2:]), bool)
            # float16: ~5e-4 px resolution at 1 px, half the size of float32
            out_arrays.setdefault("flow", []).append(f.astype(np.float16))
            out_arrays.setdefault("flow_valid", []).append(v)
        pairs += e.length
        fmt.write_part(part, {k: np.concatenate(v) for k, v in out_arrays.items()},
                       {"index": e.index, "split": split, "length": e.length}, "lzf")
    _merge_flow(ds, method, backend, jobs, pairs / (time.perf_counter() - t0) if pairs else np.nan)


def _merge_flow(ds: VideoDataset, method: str, backend: str, jobs: list, pairs_per_s: float) -> None:
    """The parts merged into the flow file (written atomically, ``complete`` set last), with the agent-speed
    statistics of the training split and the dataset it was made for; the parts are then removed."""
    out = fmt.flow_path(ds.path, method)
    parts = out.parent / f"flow-{method}-parts"
    speeds: dict[str, list[np.ndarray]] = {k: [] for k in FLOW_SOURCES}
    has_mask = "agent_mask" in ds.keys  # a video without the simulator's mask: unmasked speeds only
    check_room(out.parent, 0.95 * sum(p.stat().st_size for p in parts.glob("*.h5")), out.name)  # ~ the parts' sum
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as f:
        f.attrs.update(format="rl_laof-flow", method=method, backend=backend, dataset=str(ds.path.name),
                       dataset_id=ds.identity, created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                       complete=False, units="displayed pixels, (dx, dy)")
        for split, e in jobs:
            with h5py.File(parts / f"{split}-{fmt.episode_name(e.index)}.h5", "r") as p:
                p.copy(p["episode"], f.require_group(f"episodes/{split}"), name=fmt.episode_name(e.index))
                if split == "train":  # the agent-speed statistics that calibrate sigma
                    g = p["episode"]
                    mask = ds.episode(split, e.index, ("agent_mask",))["agent_mask"][:-1] if has_mask else None
                    for source in [k for k in FLOW_SOURCES if all(x in g or (x == "agent_mask" and has_mask)
                                                                  for x in source_keys(k))]:
                        arrays = {k: g[k][()] for k in source_keys(source) if k in g}
                        speeds[source].append(agent_speeds(*masked_agent_flow(source, arrays, mask)))
        frames = sum(e.length for e in ds.episodes["train"])
        hw = int(np.prod(ds.image_shape[-2:]))
        f.attrs["agent_speed"] = json.dumps({k: speed_summary(np.concatenate(v), frames, hw)
                                             for k, v in speeds.items() if v})
        f.attrs["pairs_per_s"] = pairs_per_s
        f.attrs["complete"] = True
    shutil.rmtree(parts, ignore_errors=True)


def camfree_agent_flow(inputs: FlowInputs, agent_geoms: np.ndarray | None, backend: str = "auto"
                       ) -> tuple[np.ndarray, np.ndarray]:
    """The agent's own flow with the camera shake removed: exact flow of the raw render (identity shake
    affines), masked by the raw render's agent pixels at t. Returns ((B, 2, H, W) float32 masked flow,
    (B, H, W) bool mask of valid agent pixels)."""
    if agent_geoms is None:
        raise fmt.DatasetError("the dataset has no agent_geoms: camera-free agent flow needs them (re-collect)")
    ident = np.zeros_like(inputs.shake_affine)
    ident[..., 0, 0] = ident[..., 1, 1] = 1.0
    f, v = exact_flow(dataclasses.replace(inputs, shake_affine=ident), backend)
    ids = np.flatnonzero(np.asarray(agent_geoms, bool))
    mask = np.isin(inputs.geom_id[:, 0], ids) & v
    return f * mask[:, None], mask
