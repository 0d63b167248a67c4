"""The HDF5 layout of an rl_laof video dataset, and how it is written and opened safely.

One file, ``dataset.h5``::

    /                       attrs: format, version, task, seed, config (JSON), versions (JSON),
                                   expert (JSON), complete
    /agent_geoms            (G,) bool: which geoms are the agent (exact-flow datasets)
    /episodes/<split>/<i>   one group per episode (split: train, eval, heldout_bg, val; i: 00000...;
                            a split without episodes may have no group: files from before ``val`` have none),
                            attrs: index, seed, length T, return; multi-task datasets
                            (rl_laof.data.multitask) add task, task_id and the root attr tasks (JSON)
        obs                 (T+1, 3, H, W) uint8    distracted frames, as the agent sees them
        actions             (T, A)        float32  a_t, applied between obs[t] and obs[t+1]
        rewards             (T,)          float32
        states              (T+1, S)      float32  proprioceptive state (the expert's input)
        physics_states      (T+1, P)      float64  full MuJoCo state: re-render or re-simulate
        agent_mask          (T+1, H, W)   bool     the agent's pixels, after camera shake and occluders
      exact-flow inputs (collect.exact_flow_inputs), all in the *raw* render, before camera shake:
        depth               (T+1, H, W)   float32  metres along the view axis
        geom_id             (T+1, H, W)   int16    the geom each pixel shows, -1 for the sky
        camera_pos, camera_mat, geom_xpos, geom_xmat   (T+1, 3), (T+1, 3, 3), (T+1, G, 3), (T+1, G, 3, 3)
        shake_affine        (T+1, 2, 3)   float32  raw pixel -> displayed pixel (camera-shake distractor)
        attrs: camera_fovy
    flow-<method>.h5 beside it (``python -m rl_laof.flow``), same episode groups:
        flow                (T, 2, H, W)  float16  flow of (t, t+1) in displayed pixels (dx, dy)
        flow_valid          (T, H, W)     bool     visible in both frames
    /labels/<name>          (N,) bool over the train split's transitions in episode order
                            (``frac-0.01``, ``traj-8``...); attrs kind, value, count, seed

Every dataset carries HDF5's fletcher32 checksum, so a corrupted chunk fails loudly when read;
:class:`DatasetError` names the file and the episode. Files are written to a temporary name and
renamed, so an interrupted writer never leaves a partial ``dataset.h5``.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from rl_laof.runs import write_bytes

FORMAT = "rl_laof-video"
VERSION = 1
#: ``val`` is last: a split's index here is its code in the episode seeds (``collection.episode_seed``), so
#: appending keeps every episode of the older splits identical. ``val`` (choices: defaults, budgets, sweeps)
#: and ``eval`` (reported figures) come from the same distractor distribution as ``train``; ``heldout_bg``
#: uses the held-out background videos (reported figures, generalisation).
SPLITS = ("train", "eval", "heldout_bg", "val")
PER_FRAME = ("obs", "states", "physics_states", "agent_mask", "depth", "geom_id", "camera_pos", "camera_mat",
             "geom_xpos", "geom_xmat", "shake_affine")
PER_TRANSITION = ("actions", "rewards", "flow", "flow_valid", "agent_flow_camfree", "agent_camfree")
#: what every episode of a dataset holds: a video and its actions. The simulator's arrays (state, agent mask, the
#: exact-flow inputs) are optional, so that a dataset of video alone opens (the ``rgb`` flow tier reads none)
REQUIRED = ("obs", "actions", "rewards")
#: what a collected episode holds besides (a collection's part without it is unfinished)
COLLECTED = (*REQUIRED, "states", "agent_mask")
FLOW_KEYS = ("flow", "flow_valid")
#: in exact flow files: the agent's flow with the camera shake removed (``rl_laof.flow.calibrate``)
FLOW_OPTIONAL_KEYS = ("agent_flow_camfree", "agent_camfree")
FLOW_METHODS = ("exact", "estimate")


def flow_path(dataset: Path, method: str) -> Path:
    """Flow targets live beside the dataset (``flow-<method>.h5``): the dataset itself is never rewritten."""
    return Path(dataset).parent / f"flow-{method}.h5"


class DatasetError(RuntimeError):
    """A dataset file is missing, truncated, corrupt or not an rl_laof dataset."""


def check_flow_of(f, path: str | os.PathLike, dataset_id: str, method: str) -> str:
    """The identity of the open flow file ``f`` (``path``) of a dataset whose identity is ``dataset_id``
    (``VideoDataset.identity``): its method, creation time and dataset. A flow file made for another dataset (one
    collected again in its folder since) is refused; one written before flow files recorded their dataset passes."""
    made_for = f.attrs.get("dataset_id")
    if made_for is not None and str(made_for) != dataset_id:
        raise DatasetError(f"{path}: flow targets of another dataset (the dataset beside it was collected again "
                           f"since); delete it and run python -m rl_laof.flow --dataset {Path(path).parent} "
                           f"--method {method}")
    key = json.dumps([dataset_id, method, str(f.attrs.get("created", ""))])
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def unfinished_collection(folder: Path) -> str | None:
    """How to resume the unfinished collection in ``folder`` (its full command, from ``collect.json``), or None
    when no collection was started there."""
    record = folder / "collect.json"
    if not record.exists():
        return None
    try:
        command = json.loads(record.read_text()).get("command")
    except (OSError, ValueError):
        command = None
    how = f"`{command}`" if command else f"the command that started it (its config: {record})"
    return f"the collection there is unfinished: resume it with {how}"


def repair_hint(path: str | os.PathLike) -> str:
    """What mends a damaged file: a flow file is recomputed by ``rl_laof.flow``; a dataset is collected again
    (a merged dataset's episode parts are gone, so its episodes are rolled out again; parts left by an
    unfinished collection are reused)."""
    path = Path(path)
    folder = path.parent
    if path.name.startswith("flow-") and path.suffix == ".h5":
        method = path.stem.removeprefix("flow-")
        return f"delete it and run python -m rl_laof.flow --dataset {folder} --method {method}"
    return f"delete it and run the python -m rl_laof.collect command that made {folder} again"


def episode_name(index: int) -> str:
    return f"{index:05d}"


def _chunks(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (min(shape[0], 32), *shape[1:]) if len(shape) else ()


def write_episode(group, arrays: dict[str, np.ndarray], attrs: dict[str, Any], compression: str | None) -> None:
    """Write one episode's arrays into an (empty) h5py group, with checksums."""
    for key, value in arrays.items():
        value = np.asarray(value)
        kwargs: dict[str, Any] = {}
        if value.ndim:
            kwargs = dict(chunks=_chunks(value.shape), fletcher32=True, compression=compression)
        group.create_dataset(key, data=value, **kwargs)
    for key, value in attrs.items():
        group.attrs[key] = value


def check_episode(group, where: str, required: tuple[str, ...] = REQUIRED) -> int:
    """Structural check of one episode group; returns its length T. Raises :class:`DatasetError`."""
    missing = [k for k in required if k not in group]
    if missing:
        raise DatasetError(f"{where}: missing arrays {missing}")
    length = int(group.attrs.get("length", -1))
    for key in group:
        want = length + 1 if key in PER_FRAME else length if key in PER_TRANSITION else None
        if want is not None and group[key].shape[0] != want:
            raise DatasetError(f"{where}: {key} has {group[key].shape[0]} entries, expected {want} "
                               f"for an episode of {length} steps (truncated episode?)")
    return length


def write_part(path: Path, arrays: dict[str, np.ndarray], attrs: dict[str, Any], compression: str | None,
               extra: dict[str, np.ndarray] | None = None) -> None:
    """One episode in its own file (group ``episode``, plus ``extra`` datasets at the root), written
    atomically and marked ``complete`` last: what resumable stages write before merging.

    The file is built in memory and written in one plain write: on a full disk that is an OSError ENOSPC naming
    the part (``rl_laof.runs.atomic_path``), where HDF5 writing to the disk itself fills stderr with errors from
    its objects' destructors and can crash the process as it closes the file."""
    with h5py.File(str(path), "w", driver="core", backing_store=False) as f:  # the name only identifies it
        write_episode(f.create_group("episode"), arrays, attrs, compression)
        for key, value in (extra or {}).items():
            f.create_dataset(key, data=value)
        f.attrs["complete"] = True
        f.flush()
        image = f.id.get_file_image()
    write_bytes(path, image)


def part_is_complete(path: Path, required: tuple[str, ...] = COLLECTED) -> bool:
    try:
        with h5py.File(path, "r") as f:
            if not f.attrs.get("complete", False):
                return False
            check_episode(f["episode"], str(path), required)
            return True
    except (OSError, KeyError, DatasetError):
        return False


def open_h5(path: str | os.PathLike, mode: str = "r"):
    """h5py.File with errors that name the file and say what to do."""
    path = Path(path)
    for link in (path, *path.parents):
        if os.path.islink(link) and not link.exists():  # a loop or a dangling target: collecting there cannot help
            raise DatasetError(f"{path}: {link} is a symbolic link that leads nowhere (a loop, or its target is "
                               "gone); point it at a dataset folder or pass the folder itself")
    if path.is_file() and path.suffix != ".h5" and not h5py.is_hdf5(path):
        beside = (path.parent / "dataset.h5").exists() or (path.parent / "collect.json").exists()
        which = f": here {path.parent}" if beside else ""
        raise DatasetError(f"{path}: a file, not a dataset; pass the dataset's folder (the one holding dataset.h5"
                           f"{which}) or its dataset.h5")
    if not path.exists():
        folder = path.parent if path.suffix == ".h5" else path
        how = unfinished_collection(folder) or f"make one with `python -m rl_laof.collect --out {folder}`"
        raise DatasetError(f"{path}: no such dataset; {how}")
    try:
        return h5py.File(path, mode)
    except OSError as exc:
        raise DatasetError(f"{path}: cannot be opened as HDF5 ({exc}); the file is truncated or corrupt — "
                           f"{repair_hint(path)}.") from exc


def read_arrays(group, where: str, keys: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """Read (and so checksum) an episode's arrays; a corrupt chunk raises :class:`DatasetError`."""
    out = {}
    for key in keys or tuple(group):
        if key not in group:
            raise DatasetError(f"{where}: has no {key!r} array (present: {sorted(group)})")
        try:
            out[key] = group[key][()]
        except OSError as exc:  # fletcher32 mismatch, bad compressed data, short read
            raise DatasetError(f"{where}: array {key!r} is corrupt ({exc}); {repair_hint(where.split(': ')[0])}."
                               ) from exc
    return out


def iter_episodes(f, path: Path, split: str) -> Iterator[tuple[int, Any, str]]:
    """(index, group, where) of each episode of ``split``; nothing for a split the file has no group for
    (a split of 0 episodes, or ``val`` in a file written before it existed)."""
    if f"episodes/{split}" not in f:
        return
    for name in sorted(f[f"episodes/{split}"]):
        yield int(name), f[f"episodes/{split}/{name}"], f"{path}: episode {split}/{name}"


def root_attrs(f) -> dict[str, Any]:
    """The file's root attributes, its JSON ones parsed; a corrupt one raises :class:`DatasetError` naming the
    file and the attribute."""
    a = f.attrs

    def parsed(name: str, empty: str) -> Any:
        try:
            return json.loads(a.get(name, empty))
        except (ValueError, TypeError) as exc:  # json.JSONDecodeError is a ValueError; bytes that do not decode
            raise DatasetError(f"{f.filename}: root attribute {name!r} is corrupt ({exc}); "
                               f"{repair_hint(f.filename)}.") from None

    try:
        return dict(
            format=str(a.get("format", "")), version=int(a.get("version", -1)), task=str(a.get("task", "")),
            seed=int(a.get("seed", -1)), complete=bool(a.get("complete", False)),
            config=parsed("config", "{}"), versions=parsed("versions", "{}"), expert=parsed("expert", "{}"),
            created=str(a.get("created", "")), tasks=parsed("tasks", "[]"),
        )
    except (OSError, ValueError) as exc:  # an attribute h5py cannot read or decode, a number that is not one
        raise DatasetError(f"{f.filename}: its root attributes are corrupt ({exc}); {repair_hint(f.filename)}."
                           ) from None


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("numpy", "torch", "mujoco", "dm-control", "envpool", "h5py", "stable-baselines3", "gymnasium",
                "numba"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "missing"
    return out
