"""Where every stage writes, and how a later stage finds what an earlier one made.

Stages talk only through files under one root (``$RL_LAOF_RUNS``, default ``./runs``):

    runs/experts/<task>/<algo>[-ar<k>]-<preset>-s<seed>/  expert checkpoints, eval history, report.json
    runs/datasets/<task>/<name>/dataset.h5          video datasets (rl_laof.collect)
    runs/lam/<task>/<dataset>/<run>/                latent action models (rl_laof.pretrain)

Every file is written atomically (:func:`atomic_path`): a killed run leaves the previous version or
nothing, never half a file.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def runs_root() -> Path:
    return Path(os.environ.get("RL_LAOF_RUNS", "runs"))


def expert_dir(task: str, algo: str = "ppo", preset: str = "quick", seed: int = 0, action_repeat: int = 1) -> Path:
    """``<algo>-<preset>-s<seed>``, with ``-ar<k>`` after the algorithm when the expert acts every k > 1 steps."""
    ar = f"-ar{action_repeat}" if action_repeat != 1 else ""
    return runs_root() / "experts" / task / f"{algo.lower()}{ar}-{preset}-s{seed}"


def dataset_dir(task: str, name: str) -> Path:
    return runs_root() / "datasets" / task / name


def lam_dir(task: str, dataset: str, run: str) -> Path:
    return runs_root() / "lam" / task / dataset / run


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write to; rename it onto ``path`` on success.

    The temporary name keeps the suffix (some writers, e.g. SB3's ``save``, add one otherwise)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def latest_checkpoint(run_dir: str | os.PathLike, key: str) -> Path | None:
    """The checkpoint ``checkpoints/latest.json`` points to (its entry ``key``), if it still exists."""
    latest = Path(run_dir) / "checkpoints" / "latest.json"
    if not latest.exists():
        return None
    path = latest.parent / read_json(latest)[key]
    return path if path.exists() else None


def refuse_other_config(run_dir: Path, config: dict, ignore: tuple[str, ...] = (),
                        fix: str = "use another --out, or delete the folder to start over") -> bool:
    """Raise if ``run_dir/config.json`` records a config that differs from ``config`` in a field outside
    ``ignore`` (a run folder holds one run); returns whether a config was recorded there."""
    cfg_file = Path(run_dir) / "config.json"
    if not cfg_file.exists():
        return False
    old = read_json(cfg_file)["config"]
    diff = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k) and k not in ignore)
    if diff:
        raise ValueError(f"{run_dir} holds a run of another config (differs in {diff}); {fix}.")
    return True


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=_json_default) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
