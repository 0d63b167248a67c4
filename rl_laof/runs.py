"""Where every stage writes, and how a later stage finds what an earlier one made: the one module that names
run folders.

Stages talk only through files under one root (``$RL_LAOF_RUNS``, default ``./runs``):

    runs/experts/<task>/<algo>[-ar<k>]-<preset>-s<seed>/           experts (rl_laof.expert)
    runs/datasets/<task>/<level>-ar<k>-<preset>-s<seed>/dataset.h5  video datasets (rl_laof.collect)
    runs/lam/<task>/<dataset>/<method>[-<labels>]-<preset>-s<seed>/ latent action models (rl_laof.lam)
    runs/imitation/<task>/<dataset>/<tag>-<preset>-s<seed>/         latent policies (rl_laof.imitation)
    runs/skills/<task>/<dataset>/sof-<preset>-s<seed>/              SOF skills (rl_laof.skills)
    runs/train/<task>/<tag>/                                        agents (rl_laof.train)
    runs/sweeps/<study>/                                            sweeps (sweeps.tune)

Every file is written atomically (:func:`atomic_path`): a killed run leaves the previous version or
nothing, never half a file. A write that fills the disk ends as an OSError ENOSPC naming the file, whatever the
writer (torch, h5py) raised, and its temporary file is removed; :func:`check_room` refuses, before writing, what
cannot fit. A run folder has one writer at a time (:func:`lock_run`: a second is refused, naming
the first's process), and records what its run was made from (its config, and its inputs: dataset, flow file,
latent model), so that a folder of another config or other inputs is refused (:func:`refuse_other_config`), never
handed back or resumed. Model and checkpoint files (:func:`save_torch`) carry a SHA-256 checksum of their
contents, checked by :func:`load_torch`, so a damaged byte is refused with the file named (the datasets have
HDF5's fletcher32 for the same reason).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np


def runs_root() -> Path:
    return Path(os.environ.get("RL_LAOF_RUNS", "runs"))


def expert_dir(task: str, algo: str = "ppo", preset: str = "quick", seed: int = 0, action_repeat: int = 1) -> Path:
    """``<algo>-<preset>-s<seed>``, with ``-ar<k>`` after the algorithm when the expert acts every k > 1 steps."""
    ar = f"-ar{action_repeat}" if action_repeat != 1 else ""
    return runs_root() / "experts" / task / f"{algo.lower()}{ar}-{preset}-s{seed}"


def dataset_name(level: str, action_repeat: int, preset: str, seed: int) -> str:
    """A collected dataset's folder name: its distractor level, action repeat, preset and seed."""
    return f"{level}-ar{action_repeat}-{preset}-s{seed}"


def dataset_dir(task: str, name: str) -> Path:
    return runs_root() / "datasets" / task / name


def dataset_label(dataset: str | os.PathLike) -> str:
    """The name a dataset gives the runs made from it (their ``<dataset>`` folder): its folder's, whether
    ``dataset`` is that folder or its ``dataset.h5``. (Named after the file, every dataset's runs shared one
    ``dataset.h5/`` folder, and a run of one dataset was handed back for another.) Two datasets in folders of one
    name still meet in a folder: a run records its inputs, and another dataset's is refused there
    (:func:`refuse_other_config`)."""
    path = Path(os.path.abspath(dataset))  # "." and ".." named, symbolic links kept as the user named them
    return path.parent.name if path.suffix == ".h5" or path.is_file() else path.name


def lam_dir(task: str, dataset: str | os.PathLike, method: str, preset: str, seed: int,
            label_split: str | None = None) -> Path:
    """A latent action model's run: ``<method>[-<label split>]-<preset>-s<seed>`` under the dataset's name
    (:func:`dataset_label`; ``dataset`` its folder or its file)."""
    tag = method if label_split is None else f"{method}-{label_split}"
    return runs_root() / "lam" / task / dataset_label(dataset) / f"{tag}-{preset}-s{seed}"


def imitation_dir(task: str, dataset: str | os.PathLike, tag: str, preset: str, seed: int) -> Path:
    """A latent policy's run (``rl_laof.imitation``) under the dataset's name (:func:`dataset_label`)."""
    return runs_root() / "imitation" / task / dataset_label(dataset) / f"{tag}-{preset}-s{seed}"


def skills_dir(task: str, dataset: str | os.PathLike, preset: str, seed: int) -> Path:
    """A skills run (``rl_laof.skills``): ``task`` is the (multi-task) dataset's; under the dataset's name
    (:func:`dataset_label`)."""
    return runs_root() / "skills" / task / dataset_label(dataset) / f"sof-{preset}-s{seed}"


def skills_dirs(task: str, preset: str, seed: int) -> list[Path]:
    """Every skills run folder of ``task`` (a multi-task dataset's) at ``preset`` and ``seed``, any dataset."""
    return list((runs_root() / "skills" / task).glob(f"*/sof-{preset}-s{seed}"))


def run_folder(path: str | os.PathLike) -> Path:
    """``path`` as the folder a run writes to, refused (before anything is written) where it is a file."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} is a file, not a folder: give --out a folder (new or a run's)")
    return path


def clear_run(folder: str | os.PathLike) -> None:
    """Empty a run folder to start its run over (``--fresh``), refused while another process writes there; its
    lock file stays, so that a writer starting meanwhile still meets this one's lock (:func:`lock_run`)."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    with lock_run(folder):
        for path in folder.iterdir():
            if path.name == LOCK_FILE:
                continue
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()


def train_dir(task: str, tag: str) -> Path:
    """An agent's run (``rl_laof.train``)."""
    return runs_root() / "train" / task / tag


def sweep_dir(study: str) -> Path:
    """A sweep's outputs and trial folders on this machine (``python -m sweeps.tune``)."""
    return runs_root() / "sweeps" / study


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write to; rename it onto ``path`` on success.

    The temporary name keeps the suffix (some writers, e.g. SB3's ``save``, add one otherwise). A write that fails
    on a full disk is raised as an OSError ENOSPC (or EDQUOT) naming ``path``, from the writer's own error (torch's
    says "unexpected pos"; h5py's "file write failed"), and the temporary file goes in every case."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:
        code = exc.errno if isinstance(exc, OSError) and exc.errno in DISK_FULL else None
        if code is not None and exc.filename:  # said already, with its file
            raise
        if code is not None or no_space_left(path.parent):  # asked while the temporary file still fills the disk
            raise OSError(code or errno.ENOSPC, os.strerror(code or errno.ENOSPC), str(path)) from exc
        raise
    finally:
        if tmp.exists():
            tmp.unlink()


#: the errors of a full disk: no space left, or the user's quota spent
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def no_space_left(folder: str | os.PathLike) -> bool:
    """Whether the disk of ``folder`` is full: a 64 KiB probe written and synced there is refused with ENOSPC or
    EDQUOT (asked after a write failed with an error that does not say why, as torch's does)."""
    probe = Path(folder) / f".space-probe-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            data = memoryview(bytes(1 << 16))
            while data:
                data = data[os.write(fd, data):]
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        return exc.errno in DISK_FULL
    finally:
        probe.unlink(missing_ok=True)
    return False


def check_room(folder: str | os.PathLike, need: float, what: str) -> None:
    """Refuse to start writing about ``need`` bytes of ``what`` under ``folder`` where its disk has less free: an
    OSError ENOSPC whose text the command base says as it is (one line, exit status 2)."""
    existing = Path(folder).absolute()
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    if free < need:
        raise OSError(errno.ENOSPC, f"no space left on the disk of {folder} for {what} (about {_mb(need)} needed, "
                      f"{_mb(free)} free)", str(folder))


def _mb(size: float) -> str:
    return f"{size / 1e6:.1f} MB" if size < 1e9 else f"{size / 1e9:.1f} GB"


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """``data`` to ``path``, atomically (a file built in memory: an HDF5 part, see ``rl_laof.data.format``)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def latest_checkpoint(run_dir: str | os.PathLike, key: str) -> Path | None:
    """The checkpoint ``checkpoints/latest.json`` points to (its entry ``key``), if it still exists."""
    latest = Path(run_dir) / "checkpoints" / "latest.json"
    if not latest.exists():
        return None
    path = latest.parent / read_json(latest)[key]
    return path if path.exists() else None


def refuse_other_config(run_dir: Path, config: dict, ignore: tuple[str, ...] = (),
                        fix: str = "use another --out, or delete the folder to start over",
                        inputs: dict[str, Any] | None = None) -> bool:
    """Raise if ``run_dir/config.json`` records a config that differs from ``config`` in a field outside
    ``ignore`` (a run folder holds one run), or inputs other than ``inputs`` (see :func:`refuse_other_inputs`);
    returns whether a config was recorded there."""
    cfg_file = Path(run_dir) / "config.json"
    if not cfg_file.exists():
        return False
    recorded = read_json(cfg_file)
    if not isinstance(recorded, dict) or "config" not in recorded:
        raise ValueError(f"{run_dir} holds another kind of run (its config.json records no stage config); {fix}.")
    old = recorded["config"]
    diff = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k) and k not in ignore)
    if diff:
        raise ValueError(f"{run_dir} holds a run of another config (differs in {diff}); {fix}.")
    refuse_other_inputs(run_dir, recorded.get(INPUTS, {}), inputs or {}, fix)
    return True


#: the key of a run's ``config.json`` that records what the run was made from (dataset, flow file, ...)
INPUTS = "inputs"


def refuse_other_inputs(run_dir: str | os.PathLike, recorded: dict[str, Any], inputs: dict[str, Any],
                        fix: str = "use another --out, or delete the folder to start over") -> None:
    """Raise, naming both, where ``recorded`` (a run's ``config.json`` ``inputs``) says the run was made from
    another input than ``inputs`` asks for: the same config on another dataset (or flow file, or latent model)
    is another run, never one to hand back or resume. An input is ``{"path": ..., "id": ...}`` (compared by its
    id, so a dataset moved or copied is the same input; the path names it) or a plain value; one the run did not
    record (a run saved before inputs were recorded) is not compared."""
    for name, new in inputs.items():
        if name not in recorded or _input_id(recorded[name]) == _input_id(new):
            continue
        what, old_name, new_name = name.replace("_", " "), _input_name(recorded[name]), _input_name(new)
        if old_name == new_name:  # the same path: the file there was made again since
            raise ValueError(f"{run_dir} holds a run made from an earlier {what} at {old_name} (since replaced); "
                             f"{fix}.")
        raise ValueError(f"{run_dir} holds a run made from {what} {old_name}, not {new_name}; {fix}.")


def _input_id(value: Any) -> Any:
    return value.get("id") if isinstance(value, dict) else value


def _input_name(value: Any) -> str:
    if value is None:
        return "none"
    return str(value.get("path") if isinstance(value, dict) else value)


#: a run folder's lock file (:func:`lock_run`)
LOCK_FILE = ".lock"
_HELD: dict[str, list] = {}  # lock file (real path) -> [its descriptor, holders in this process]


class RunLock:
    """This process's hold on a run folder (:func:`lock_run`); released by :meth:`release`, at the end of a
    ``with`` block, when the holder is collected, or by the kernel when the process ends (a crash included)."""

    def __init__(self, key: str):
        self.key, self.held = key, True

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        entry = _HELD.get(self.key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            del _HELD[self.key]
            os.close(entry[0])  # closing the descriptor drops the flock

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at interpreter exit the module may be gone; the kernel frees it
            self.release()


def lock_run(folder: str | os.PathLike, name: str = LOCK_FILE,
             fix: str = "wait for it or choose another --out") -> RunLock:
    """Take the exclusive lock of a run folder (``flock`` on ``folder/<name>``, made with the folder), or refuse
    in one line naming the process that holds it: two writers in one folder race (a part written by one is
    merged or removed by the other). The kernel drops the lock with the process, so a killed run leaves none;
    taking it again in the process that holds it is allowed (nested stages). Take it once everything is
    checked, just before the folder is written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    key = os.path.realpath(path)
    if key in _HELD:
        _HELD[key][1] += 1
        return RunLock(key)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # BlockingIOError: held by another process
        pid = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise ValueError(f"{folder} is in use by another run (pid {pid}); {fix}.") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _HELD[key] = [fd, 1]
    return RunLock(key)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=_json_default) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """A run's JSON file; a damaged one (cut short by a full disk or a kill, edited by hand) is refused with the
    file named, not with the parser's position alone."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc.msg}, line {exc.lineno} column {exc.colno}): it was cut "
                         "short or edited. Restore it, or remove its run folder to start that run again.") from None


#: the zip comment a checksummed torch file ends with: this tag, then the SHA-256 (hex) of the archive as
#: ``torch.save`` wrote it (that is, with an empty comment)
CHECKSUM_TAG = b"rl_laof-sha256:"
_COMMENT = len(CHECKSUM_TAG) + 64
_EOCD, _EOCD_SIZE = b"PK\x05\x06", 22  # a zip's end-of-central-directory record: signature, fixed size


def save_torch(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save(obj)`` to ``path``, atomically, with a checksum (:data:`CHECKSUM_TAG`).

    The checksum is the zip archive's comment, so the file stays a valid zip that ``torch.load`` (or any zip
    reader) opens unchanged; :func:`load_torch` checks it. Torch's own reader checks no CRC: without this a
    flipped byte in a weight loads silently."""
    import torch  # deferred: runs.py serves torch-free stages (data, flow) too

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
        size = tmp.stat().st_size
        with open(tmp, "r+b") as f:
            f.seek(size - _EOCD_SIZE)
            eocd = f.read(_EOCD_SIZE)
            if eocd[:4] != _EOCD or eocd[-2:] != b"\0\0":  # torch.save writes no comment; a new format might
                raise RuntimeError(f"{path}: torch.save wrote an archive without a plain end record; cannot sign it")
            digest = _sha256(f, size).hexdigest().encode()
            f.seek(size - 2)
            f.write(struct.pack("<H", _COMMENT) + CHECKSUM_TAG + digest)


def _sha256(f, size: int, tail: bytes = b"") -> Any:
    """SHA-256 of the first ``size`` bytes of the open file ``f``, then ``tail``."""
    h = hashlib.sha256()
    f.seek(0)
    left = size
    while left > 0:
        chunk = f.read(min(left, 1 << 22))
        if not chunk:
            break
        h.update(chunk)
        left -= len(chunk)
    h.update(tail)
    return h


def torch_checksum(path: str | os.PathLike, verify: bool = True) -> tuple[str, str] | None:
    """(recorded, actual) SHA-256 of a file :func:`save_torch` wrote; None for a file without a checksum (written
    by an earlier version, or by ``torch.save`` directly). ``verify=False``: the recorded one alone (actual "";
    the file is not read through), e.g. to tell one model file from another."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        if size < _EOCD_SIZE + _COMMENT:
            return None
        f.seek(size - _EOCD_SIZE - _COMMENT)
        end = f.read()
        eocd, comment = end[:_EOCD_SIZE], end[_EOCD_SIZE:]
        if eocd[:4] != _EOCD or struct.unpack("<H", eocd[-2:])[0] != _COMMENT:
            return None
        if not comment.startswith(CHECKSUM_TAG):  # the record says a checksum follows: its tag was damaged
            return comment.hex(), ""
        actual = _sha256(f, size - _COMMENT - 2, b"\0\0").hexdigest() if verify else ""
    return comment[len(CHECKSUM_TAG):].decode("ascii", "replace"), actual


def load_torch(path: str | os.PathLike) -> Any:
    """A model or checkpoint file (``torch.save``'s), on the CPU; a cut-short or damaged one is refused with the
    file named instead of torch's zip-reader message, and so is one whose checksum (:func:`save_torch`) does not
    match its contents. Files without a checksum (written before it existed) load as they are."""
    import pickle  # deferred: only for the error types of a damaged file
    import zipfile  # deferred: the same

    import torch  # deferred: runs.py serves torch-free stages (data, flow) too

    fix = "Restore it, or remove its run folder to train that run again."
    sums = torch_checksum(path) if Path(path).is_file() else None
    if sums is not None and sums[0] != sums[1]:
        raise _damaged(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"{path} cannot be read as a torch file ({first}): it was cut short or damaged. {fix}"
                         ) from None


def _damaged(path: str | os.PathLike) -> ValueError:
    return ValueError(f"{path} is damaged: its contents do not match the checksum written with it (a changed or "
                      "corrupted byte). Restore it, or remove its run folder to train that run again.")


#: a folder's manifest: the SHA-256 of each of its other files (agents' checkpoint folders: SB3's files, pickles)
CHECKSUMS = "checksums.json"


def file_sha256(path: str | os.PathLike) -> str:
    with open(path, "rb") as f:
        return _sha256(f, Path(path).stat().st_size).hexdigest()


def write_checksums(folder: str | os.PathLike) -> None:
    """Record the SHA-256 of every file directly in ``folder`` in its :data:`CHECKSUMS` (written last)."""
    folder = Path(folder)
    write_json(folder / CHECKSUMS, {p.name: file_sha256(p) for p in sorted(folder.iterdir())
                                    if p.is_file() and p.name != CHECKSUMS})


def check_checksums(folder: str | os.PathLike) -> None:
    """Refuse, naming the file, a file of ``folder`` missing or changed since :func:`write_checksums`; a folder
    without a manifest (written by an earlier version) passes."""
    manifest = Path(folder) / CHECKSUMS
    if not manifest.exists():
        return
    for name, digest in read_json(manifest).items():
        path = Path(folder) / name
        if not path.is_file():
            raise ValueError(f"{path} is missing from its checkpoint. Remove the checkpoint folder to resume from the "
                             "one before, or the run folder to train that run again.")
        if file_sha256(path) != digest:
            raise _damaged(path)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
