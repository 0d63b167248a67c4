"""Opening a dataset: metadata, splits, label masks, and whole splits loaded into RAM.

    ds = VideoDataset("runs/datasets/cheetah-run/hard-ar4-quick-s0/dataset.h5")   # structural check
    train = ds.load_split("train", keys=("obs", "actions", "agent_mask"))      # checksummed read

Opening checks the structure of every episode (all arrays present, lengths consistent);
``verify="full"`` also reads every chunk so that a corrupted byte anywhere is found now rather
than mid-training. Loading a split always reads (and so checksums) what it loads.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rl_laof.data import format as fmt


@dataclass
class EpisodeInfo:
    split: str
    index: int
    length: int  # transitions T (T + 1 frames)
    ret: float
    seed: int
    task_id: int = 0  # index into VideoDataset.tasks (multi-task datasets, rl_laof.data.multitask)


@dataclass
class SplitArrays:
    """One split, concatenated: frame arrays have ``sum(T+1)`` rows, transition arrays ``sum(T)``."""

    split: str
    lengths: np.ndarray  # (E,) transitions per episode
    frame_start: np.ndarray  # (E,) first frame row of each episode
    trans_start: np.ndarray  # (E,) first transition row of each episode
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def num_transitions(self) -> int:
        return int(self.lengths.sum())

    def __getitem__(self, key: str) -> np.ndarray:
        return self.arrays[key]

    def __contains__(self, key: str) -> bool:
        return key in self.arrays


class VideoDataset:
    def __init__(self, path: str | Path, verify: str = "structure", flow: str | None = "auto"):
        """``flow``: which flow targets to attach (``flow-<method>.h5`` beside the dataset, written by
        ``python -m rl_laof.flow``): "auto" = exact if present, else estimate, else none; None = none."""
        path = Path(path)
        if path.is_dir():
            path = path / "dataset.h5"
        self.path = path
        if verify not in ("structure", "full"):
            raise ValueError(f"verify={verify!r}: use 'structure' or 'full'.")
        with fmt.open_h5(path) as f:
            self.attrs = fmt.root_attrs(f)
            if self.attrs["format"] != fmt.FORMAT:
                raise fmt.DatasetError(f"{path}: not an rl_laof video dataset (format={self.attrs['format']!r}).")
            if self.attrs["version"] != fmt.VERSION:
                raise fmt.DatasetError(f"{path}: dataset format version {self.attrs['version']}, this code reads "
                                       f"{fmt.VERSION}: re-collect it.")
            if not self.attrs["complete"]:
                how = fmt.unfinished_collection(path.parent) or "re-run the command that made it"
                raise fmt.DatasetError(f"{path}: the dataset was never finished (no 'complete' mark); {how}")
            # every split of fmt.SPLITS is a key; one the file has no group for (val in a file written before
            # it existed) is an empty list
            self.episodes: dict[str, list[EpisodeInfo]] = {}
            for split in fmt.SPLITS:
                infos = []
                for index, group, where in fmt.iter_episodes(f, path, split):
                    length = fmt.check_episode(group, where)
                    if verify == "full":
                        fmt.read_arrays(group, where)
                    infos.append(EpisodeInfo(split, index, length, float(group.attrs["return"]),
                                             int(group.attrs["seed"]), int(group.attrs.get("task_id", 0))))
                self.episodes[split] = infos
            if not self.episodes["train"]:
                raise fmt.DatasetError(f"{path}: has no train episodes.")
            self.labels: dict[str, np.ndarray] = {}
            self.label_meta: dict[str, Any] = {}
            if "labels" in f:
                self.label_meta = json.loads(f["labels"].attrs.get("meta", "{}"))
                for name in f["labels"]:
                    self.labels[name] = fmt.read_arrays(f["labels"], f"{path}: label split", (name,))[name]
            n_train = sum(e.length for e in self.episodes["train"])
            for name, mask in self.labels.items():
                if len(mask) != n_train:
                    raise fmt.DatasetError(f"{path}: label split {name} covers {len(mask)} transitions, "
                                           f"the train split has {n_train}.")
            first = f[f"episodes/train/{fmt.episode_name(self.episodes['train'][0].index)}"]
            self.keys = tuple(sorted(first))
            self.image_shape = tuple(first["obs"].shape[1:])
            self.action_dim = int(first["actions"].shape[1])
            self.state_dim = int(first["states"].shape[1]) if "states" in first else 0  # 0: video alone
            self.camera_fovy = float(first.attrs.get("camera_fovy", np.nan))
            self.agent_geoms = f["agent_geoms"][()] if "agent_geoms" in f else None
        self.flow_id: str | None = None  # the attached flow file's (fmt.check_flow_of)
        self.flow_path = self._attach_flow(flow)
        if self.flow_path is not None:
            with fmt.open_h5(self.flow_path) as f:
                first = f[f"episodes/train/{fmt.episode_name(self.episodes['train'][0].index)}"]
                optional = [k for k in fmt.FLOW_OPTIONAL_KEYS if k in first]
            self.keys = tuple(sorted({*self.keys, *fmt.FLOW_KEYS, *optional}))

    def _attach_flow(self, flow: str | None) -> Path | None:
        if flow is None:
            return None
        methods = fmt.FLOW_METHODS if flow == "auto" else (flow,)
        for method in methods:
            path = fmt.flow_path(self.path, method)
            if not path.exists():
                continue
            with fmt.open_h5(path) as f:
                if not f.attrs.get("complete", False):
                    raise fmt.DatasetError(f"{path}: unfinished flow targets: rerun `python -m rl_laof.flow`.")
                self.flow_id = fmt.check_flow_of(f, path, self.identity, method)
                for split, eps in self.episodes.items():
                    for e in eps:
                        name = f"episodes/{split}/{fmt.episode_name(e.index)}"
                        where = f"{path}: episode {split}/{fmt.episode_name(e.index)}"
                        if name not in f:
                            raise fmt.DatasetError(f"{where}: missing; rerun `python -m rl_laof.flow`.")
                        if fmt.check_episode(f[name], where, fmt.FLOW_KEYS) != e.length:
                            raise fmt.DatasetError(f"{where}: flow of another episode length (stale flow file).")
            return path
        if flow != "auto":
            raise fmt.DatasetError(f"{self.path}: no {flow} flow targets ({fmt.flow_path(self.path, flow).name}); "
                                   f"make them with `python -m rl_laof.flow --dataset {self.path.parent} "
                                   f"--method {flow}`.")
        return None

    def _file_for(self, key: str) -> Path:
        in_flow = key in fmt.FLOW_KEYS or key in fmt.FLOW_OPTIONAL_KEYS
        return self.flow_path if in_flow and self.flow_path is not None else self.path

    # ------------------------------------------------------------------ identity
    @property
    def identity(self) -> str:
        """What tells this dataset from another, wherever it lies: a digest of its task, seed, collection config,
        expert and creation time (a dataset moved or copied keeps it; one collected again with another config or
        seed, or at another time, has another)."""
        a = self.attrs
        key = [a["task"], a["tasks"], a["seed"], a["config"], a["expert"], a["created"]]
        return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def inputs(self, flow: bool = False) -> dict[str, Any]:
        """What a run made from this dataset records of it, so that its folder refuses another
        (``rl_laof.runs.refuse_other_inputs``): the dataset and, with ``flow``, the flow file attached (None where
        none is)."""
        out: dict[str, Any] = {"dataset": {"path": os.path.abspath(self.path), "id": self.identity}}
        if flow:
            out["flow_file"] = (None if self.flow_path is None
                                else {"path": os.path.abspath(self.flow_path), "id": self.flow_id})
        return out

    # ------------------------------------------------------------------ metadata
    @property
    def config(self) -> dict:
        return self.attrs["config"]

    @property
    def task(self) -> str:
        return self.attrs["task"]

    @property
    def tasks(self) -> list[str]:
        """The tasks of the episodes (``EpisodeInfo.task_id`` indexes it): one for a single-task dataset."""
        return list(self.attrs.get("tasks") or [self.task])

    @property
    def env_settings(self) -> dict[str, Any]:
        """The env the data was collected in, as ``envs.rollout.policy_returns`` takes it: task, distractors,
        image size and action repeat (the frame stack is the policy's)."""
        return {"task": self.task, "distractors": self.config["distractors"], "image_size": self.image_shape[-1],
                "action_repeat": int(self.config.get("action_repeat", 1))}

    def task_ids(self, split: str, episodes: int | None = None) -> np.ndarray:
        """(E,) task id of each episode of ``split`` (the first ``episodes``), in load_split's order."""
        return np.array([e.task_id for e in self.episodes[split][:episodes]], np.int64)

    def label_mask(self, split: str, name: str) -> np.ndarray:
        """Which transitions of ``split`` keep their action: a label split of the train split; held-out
        splits are for evaluation and keep all actions. ``all`` / ``none`` are always available."""
        n = sum(e.length for e in self.episodes[split])
        if name == "all" or split != "train":
            return np.ones(n, bool)
        if name == "none":
            return np.zeros(n, bool)
        if name not in self.labels:
            raise KeyError(f"{self.path}: no label split {name!r}; available: all, none, {', '.join(self.labels)}")
        return self.labels[name]

    def summary(self, brief: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = dict(task=self.task, image_shape=list(self.image_shape), action_dim=self.action_dim)
        for split, eps in self.episodes.items():
            rets = np.array([e.ret for e in eps]) if eps else np.zeros(0)
            out[split] = dict(episodes=len(eps), transitions=int(sum(e.length for e in eps)),
                              frames=int(sum(e.length + 1 for e in eps)),
                              return_mean=round(float(rets.mean()), 2) if len(rets) else None,
                              return_std=round(float(rets.std()), 2) if len(rets) else None)
        out["labels"] = {name: int(mask.sum()) for name, mask in self.labels.items()}
        if not brief:
            out["keys"] = list(self.keys)
            out["distractors"] = self.config.get("distractors")
            out["expert"] = self.attrs["expert"]
            out["versions"] = self.attrs["versions"]
        return out

    # ------------------------------------------------------------------ data
    def episode(self, split: str, index: int, keys: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
        keys = tuple(keys or self.keys)
        out: dict[str, np.ndarray] = {}
        for path in dict.fromkeys(self._file_for(k) for k in keys):
            with fmt.open_h5(path) as f:
                name = f"episodes/{split}/{fmt.episode_name(index)}"
                if name not in f:
                    raise KeyError(f"{path}: no episode {split}/{index}")
                mine = tuple(k for k in keys if self._file_for(k) == path)
                out.update(fmt.read_arrays(f[name], f"{path}: episode {split}/{fmt.episode_name(index)}", mine))
        return out

    def load_split(self, split: str, keys: tuple[str, ...] = ("obs", "actions"),
                   episodes: int | None = None) -> SplitArrays:
        """Concatenate ``keys`` of the first ``episodes`` episodes of ``split`` (all by default) in RAM."""
        if split not in self.episodes:
            raise KeyError(f"no split {split!r}; splits: {', '.join(self.episodes)}")
        eps = self.episodes[split][:episodes]
        if not eps:
            hint = ""
            if split == "val":  # files from before the val split, or collected with val_episodes=0
                hint = (" (collected without a val split: collect it again with --val-episodes N; its train, "
                        "eval and heldout_bg episodes come out identical)")
            raise fmt.DatasetError(f"{self.path}: split {split!r} has no episodes{hint}.")
        missing = [k for k in keys if k not in self.keys]
        if missing:
            raise KeyError(f"{self.path}: no {missing} arrays (dataset holds {', '.join(self.keys)})")
        lengths = np.array([e.length for e in eps], np.int64)
        frame_start = np.concatenate([[0], np.cumsum(lengths + 1)[:-1]])
        trans_start = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        out = SplitArrays(split, lengths, frame_start, trans_start)
        for key in keys:
            with fmt.open_h5(self._file_for(key)) as f:
                per_frame = key in fmt.PER_FRAME
                rows = int((lengths + 1).sum() if per_frame else lengths.sum())
                first = f[f"episodes/{split}/{fmt.episode_name(eps[0].index)}/{key}"]
                buf = np.empty((rows, *first.shape[1:]), first.dtype)
                starts = frame_start if per_frame else trans_start
                for e, s in zip(eps, starts, strict=True):
                    where = f"{self._file_for(key)}: episode {split}/{fmt.episode_name(e.index)}"
                    dset = f[f"episodes/{split}/{fmt.episode_name(e.index)}/{key}"]
                    try:
                        dset.read_direct(buf, dest_sel=np.s_[s:s + dset.shape[0]])
                    except OSError as exc:
                        raise fmt.DatasetError(f"{where}: array {key!r} is corrupt ({exc}); "
                                               f"{fmt.repair_hint(self._file_for(key))}.") from exc
                out.arrays[key] = buf
        return out
