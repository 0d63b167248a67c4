"""Multi-task video data for one embodiment: :func:`merge_datasets` (the command: ``python -m
rl_laof.commands.multitask --sources A B C --out DIR``, ``rl-laof-multitask``).

Merges single-task datasets of one domain (``walker-stand``, ``walker-walk``, ``walker-run``; each from
``rl_laof.collect`` with its own expert) into one dataset of the same layout (:mod:`rl_laof.data.format`):

* every episode keeps its arrays (copied, not re-encoded) and gains the attrs ``task`` and ``task_id`` (the
  index into the root attr ``tasks``, JSON); episodes are renumbered per split in source order;
* the root attr ``task`` is ``<domain>-multitask``;
* a label split present in every source is kept as the union of the sources' masks, so ``traj-2`` is two
  labelled trajectories *per task*, exactly the labels the single-task baselines get;
* flow targets (``flow-<method>.h5``) are merged the same way when every source has them;
* a split (``val``, ``eval``, ``heldout_bg``) must have episodes in every source or in none.

The sources must agree on what a frame is: domain, image size, action repeat and distractors.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import h5py
import numpy as np

from rl_laof.data import format as fmt
from rl_laof.data.dataset import VideoDataset
from rl_laof.runs import atomic_path, run_folder

MULTITASK_SUFFIX = "-multitask"


def multitask_name(tasks: list[str]) -> str:
    domains = sorted({t.split("-")[0] for t in tasks})
    if len(domains) != 1:
        raise ValueError(f"tasks {tasks} span the domains {domains}: multi-task data is for one embodiment.")
    return domains[0] + MULTITASK_SUFFIX


def _check_compatible(sets: list[VideoDataset]) -> None:
    first = sets[0]
    tasks = [d.task for d in sets]
    if len(set(tasks)) != len(tasks):
        raise ValueError(f"sources repeat a task: {tasks}")
    multitask_name(tasks)
    for d in sets[1:]:
        for what, a, b in (("image shape", first.image_shape, d.image_shape),
                           ("action dim", first.action_dim, d.action_dim),
                           ("action repeat", first.config.get("action_repeat"), d.config.get("action_repeat")),
                           ("distractors", first.config.get("distractors"), d.config.get("distractors"))):
            if a != b:
                raise ValueError(f"{d.path} has {what} {b}, {first.path} has {a}: collect them alike to merge.")
    # a held-out split of only some tasks would make a "multi-task" figure (or a choice, on val) over those
    # tasks alone; sources collected before the val split existed have no val episodes
    for split in fmt.SPLITS:
        without = [str(d.path) for d in sets if not d.episodes[split]]
        if without and len(without) < len(sets):
            raise ValueError(f"split {split!r}: {', '.join(without)} have no {split} episodes and the other sources "
                             f"do; collect every source with {split} episodes (--{split.replace('_', '-')}-episodes "
                             "N), or all without.")


def merge_datasets(sources: list[str | Path], out: str | Path, progress: bool = True) -> Path:
    """Write ``out/dataset.h5`` (and merged flow files) from single-task ``sources``; returns ``out``."""
    out = run_folder(out)
    sets = [VideoDataset(s, flow=None) for s in sources]
    _check_compatible(sets)
    tasks = [d.task for d in sets]
    target = out / "dataset.h5"
    if target.exists():
        existing = VideoDataset(target, flow=None)
        if existing.tasks == tasks:
            return out
        raise ValueError(f"{target} already holds tasks {existing.tasks}, not {tasks}: choose another --out.")
    if len(sets) < 2:
        raise ValueError(f"--sources: merging needs two or more single-task datasets (got {len(sets)})")
    out.mkdir(parents=True, exist_ok=True)
    names = [set(d.labels) for d in sets]
    shared_labels = sorted(set.intersection(*names))
    with atomic_path(target) as tmp, h5py.File(tmp, "w") as f:
        with h5py.File(sets[0].path, "r") as f0:
            for key, value in f0.attrs.items():
                f.attrs[key] = value
            if "agent_geoms" in f0:
                f0.copy(f0["agent_geoms"], f, name="agent_geoms")
        config = dict(sets[0].config, task=multitask_name(tasks), tasks=tasks,
                      sources=[str(d.path) for d in sets], per_task_config=[d.config for d in sets])
        f.attrs.update(task=multitask_name(tasks), tasks=json.dumps(tasks), config=json.dumps(config),
                       expert=json.dumps({t: d.attrs["expert"] for t, d in zip(tasks, sets, strict=True)}),
                       created=time.strftime("%Y-%m-%dT%H:%M:%S"), complete=False)
        _copy_episodes(f, sets, tasks, lambda d: d.path)
        masks = {name: np.concatenate([d.labels[name] for d in sets]) for name in shared_labels}
        grp = f.create_group("labels")
        for name, mask in masks.items():
            grp.create_dataset(name, data=mask, fletcher32=True)
        meta = {name: dict(kind="per-task union", count=int(m.sum()),
                           per_task={t: d.label_meta.get(name, {}) for t, d in zip(tasks, sets, strict=True)})
                for name, m in masks.items()}
        grp.attrs["meta"] = json.dumps(meta)
        f.attrs["complete"] = True
    merged_id = VideoDataset(target, flow=None).identity  # what its flow files are made for (fmt.check_flow_of)
    for method in fmt.FLOW_METHODS:
        flows = [fmt.flow_path(d.path, method) for d in sets]
        if all(p.exists() for p in flows):
            with atomic_path(fmt.flow_path(target, method)) as tmp, h5py.File(tmp, "w") as f:
                with h5py.File(flows[0], "r") as f0:
                    for key, value in f0.attrs.items():
                        f.attrs[key] = value
                f.attrs.update(dataset=target.name, dataset_id=merged_id, created=time.strftime("%Y-%m-%dT%H:%M:%S"),
                               complete=False)
                _copy_episodes(f, sets, tasks, lambda d, m=method: fmt.flow_path(d.path, m))
                f.attrs["complete"] = True
    if progress:
        merged = VideoDataset(target)
        print(json.dumps({"dataset": str(target), "tasks": tasks,
                          "episodes": {s: len(e) for s, e in merged.episodes.items()},
                          "labels": {k: int(v.sum()) for k, v in merged.labels.items()},
                          "flow": str(merged.flow_path) if merged.flow_path else None}))
    return out


def _copy_episodes(f, sets: list[VideoDataset], tasks: list[str], file_of) -> None:
    for split in fmt.SPLITS:
        new = 0
        for task_id, d in enumerate(sets):
            with h5py.File(file_of(d), "r") as src:
                for e in d.episodes[split]:
                    group = src[f"episodes/{split}/{fmt.episode_name(e.index)}"]
                    name = fmt.episode_name(new)
                    src.copy(group, f.require_group(f"episodes/{split}"), name=name)
                    g = f[f"episodes/{split}/{name}"]
                    g.attrs.update(index=new, task=tasks[task_id], task_id=task_id, source_index=e.index)
                    new += 1
