"""Video datasets: ``python -m rl_laof.collect --task cheetah-run --distractors hard --episodes N --out DIR``.

Rolls an expert (with optional Gaussian action noise) out on the dm_control backend, with
distractors, and writes ``DIR/dataset.h5`` (layout: :mod:`rl_laof.data.format`).

* Each episode is a pure function of (config, expert, split, index): its env, distractors and
  action noise are seeded from those alone. So the result does not depend on the number of
  workers, and a resumed collection writes exactly what an uninterrupted one would have.
* Episodes are rolled out by ``workers`` processes; each finished episode is written atomically
  to ``DIR/parts/`` and a rerun skips the parts already there (resume). When all are done they are
  merged into ``dataset.h5`` (written to a temporary name, then renamed) and the parts removed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing as mp
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from envs.config import DistractorConfig
from rl_laof.cli import stage_parser
from rl_laof.config import COLLECT_PRESETS, CollectConfig, from_preset
from rl_laof.data import format as fmt
from rl_laof.data.labels import make_label_splits
from rl_laof.runs import atomic_path, dataset_dir, read_json, write_json

_SPLIT_CODE = {s: i for i, s in enumerate(fmt.SPLITS)}
_NOT_IDENTITY = ("workers",)  # fields that do not change the dataset: a resume may change them


def episode_seed(seed: int, split: str, index: int) -> int:
    """Independent seed per (dataset seed, split, episode): splits never share an initial state stream."""
    return int(np.random.SeedSequence([seed, _SPLIT_CODE[split], index]).generate_state(1)[0] % (2**31 - 1))


# --------------------------------------------------------------------------- policies

class RandomPolicy:
    """Uniform random actions (tests, and tasks without an expert)."""

    def __init__(self, action_dim: int):
        self.action_dim = action_dim

    def __call__(self, state: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(-1.0, 1.0, (len(state), self.action_dim)).astype(np.float32)


class NoisyExpert:
    """Deterministic expert action plus N(0, noise^2), clipped to [-1, 1]."""

    def __init__(self, expert, noise: float):
        self.expert, self.noise = expert, noise

    def __call__(self, state: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        a = self.expert.act(state, deterministic=True)
        if self.noise > 0:
            a = a + rng.normal(0.0, self.noise, a.shape)
        return np.clip(a, -1.0, 1.0).astype(np.float32)


def resolve_expert(cfg: CollectConfig, progress: bool = True) -> str:
    """``"random"``, or the run directory of the expert to roll out (trained first if ``"auto"`` and missing)."""
    if cfg.expert == "random":
        return "random"
    if cfg.expert == "auto":
        from rl_laof.pipeline import expert

        return str(expert(cfg.task, cfg.expert_preset, progress=progress, action_repeat=cfg.action_repeat))
    path = Path(cfg.expert)
    if not (path / cfg.expert_which / "model.zip").exists():
        raise FileNotFoundError(f"--expert {path}: not an expert run directory (no {cfg.expert_which}/model.zip). "
                                "Train one with `python -m rl_laof.expert`, or use --expert auto / random.")
    return str(path)


def load_policy(expert: str, cfg: CollectConfig, action_dim: int):
    if expert == "random":
        return RandomPolicy(action_dim)
    from agents.expert import Expert

    loaded = Expert.load(expert, cfg.expert_which)
    if loaded.config.get("task") != cfg.task:
        raise ValueError(f"expert {expert} was trained on {loaded.config.get('task')!r}, not {cfg.task!r}")
    if int(loaded.config.get("action_repeat", 1)) != cfg.action_repeat:
        raise ValueError(f"expert {expert} acts every {loaded.config.get('action_repeat')} control steps; the "
                         f"dataset asks for action_repeat={cfg.action_repeat}: train a matching expert.")
    return NoisyExpert(loaded, cfg.action_noise)


# --------------------------------------------------------------------------- one episode

_FRAME_KEYS = ("depth", "geom_id", "camera_pos", "camera_mat", "geom_xpos", "geom_xmat", "shake_affine")


def rollout_episode(cfg: CollectConfig, policy, split: str, index: int) -> tuple[dict, dict]:
    """Roll one episode out; returns (arrays, attrs) in the layout of :mod:`rl_laof.data.format`."""
    from envs import make_from_config

    seed = episode_seed(cfg.seed, split, index)
    venv = make_from_config(cfg.env_config(split, seed), monitor=False)
    rng = np.random.default_rng([seed, 7])
    try:
        venv.reset()
        info = venv.reset_infos[0]
        frames: dict[str, list] = {k: [] for k in ("obs", "states", "physics_states", "agent_mask", *_FRAME_KEYS)}
        actions, rewards = [], []

        def record(i: dict) -> None:
            frames["obs"].append(i["frame"])
            frames["states"].append(i["state"])
            frames["physics_states"].append(i["physics_state"])
            frames["agent_mask"].append(i["agent_mask"].astype(bool))
            if cfg.exact_flow_inputs:
                for k in _FRAME_KEYS:
                    frames[k].append(i[k])

        record(info)
        horizon = venv.sim.max_steps if cfg.episode_steps is None else min(cfg.episode_steps, venv.sim.max_steps)
        for _ in range(horizon):
            action = policy(info["state"][None], rng)
            _, reward, done, infos = venv.step(action)
            info = infos[0]  # the frame of this step (a reset's first frame goes to reset_frame_info)
            actions.append(action[0])
            rewards.append(float(reward[0]))
            record(info)
            if done[0]:
                break
        fovy = info["camera_fovy"]
        agent_geoms = info["agent_geoms"]
    finally:
        venv.close()
    arrays = {k: np.stack(v) for k, v in frames.items() if v}
    arrays["actions"] = np.asarray(actions, np.float32)
    arrays["rewards"] = np.asarray(rewards, np.float32)
    arrays["states"] = arrays["states"].astype(np.float32)
    if cfg.exact_flow_inputs:
        arrays["shake_affine"] = arrays["shake_affine"].astype(np.float32)
    attrs = dict(index=index, split=split, seed=seed, length=len(actions), camera_fovy=float(fovy),
                 **{"return": float(np.sum(rewards))})
    return arrays, dict(attrs, agent_geoms=np.asarray(agent_geoms, bool))


def random_episode(task: str, distractors: str | DistractorConfig | None, steps: int, action_repeat: int = 1,
                   image_size: int = 64, seed: int = 0) -> tuple[dict, dict]:
    """One episode of uniform random actions, in the dataset layout (frames, masks, exact-flow inputs),
    without writing anything: for tests and benchmarks that need real frames and their exact flow."""
    cfg = CollectConfig(task=task, distractors=DistractorConfig.parse(distractors), image_size=image_size,
                        action_repeat=action_repeat, episode_steps=steps, expert="random", seed=seed)
    return rollout_episode(cfg, RandomPolicy(_action_dim(task)), "train", 0)


def part_path(out: Path, split: str, index: int) -> Path:
    return out / "parts" / f"{split}-{fmt.episode_name(index)}.h5"


# --------------------------------------------------------------------------- workers

_WORKER: dict[str, Any] = {}


def _worker_init(cfg_dict: dict, expert: str, action_dim: int) -> None:
    import torch

    torch.set_num_threads(1)  # one core per worker, and bit-reproducible inference
    cfg = CollectConfig(**_revive(cfg_dict))
    _WORKER.update(cfg=cfg, policy=load_policy(expert, cfg, action_dim))


def _revive(d: dict) -> dict:
    d = dict(d)
    d["distractors"] = DistractorConfig(**d["distractors"])
    return d


def _worker_job(job: tuple[str, int, str]) -> tuple[str, int, int]:
    split, index, path = job
    cfg = _WORKER["cfg"]
    arrays, attrs = rollout_episode(cfg, _WORKER["policy"], split, index)
    attrs = dict(attrs)
    agent_geoms = attrs.pop("agent_geoms")
    fmt.write_part(Path(path), arrays, attrs, cfg.compression, extra={"agent_geoms": agent_geoms})
    return split, index, int(attrs["length"]) + 1


# --------------------------------------------------------------------------- the dataset

def collect(cfg: CollectConfig, out: str | Path | None = None, progress: bool = True,
            keep_parts: bool = False) -> Path:
    """Collect (or resume, or find finished) the dataset ``cfg`` describes; returns ``out/dataset.h5``."""
    from tqdm import tqdm

    from envs import get_task

    get_task(cfg.task)
    out = Path(out) if out is not None else dataset_dir(cfg.task, cfg.name)
    final = out / "dataset.h5"
    out.mkdir(parents=True, exist_ok=True)
    config = json.loads(json.dumps(cfg.to_dict()))
    cfg_file = out / "collect.json"
    old = read_json(cfg_file)["config"] if cfg_file.exists() else config
    diff = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k) and k not in _NOT_IDENTITY)
    if diff:
        raise ValueError(f"{out} holds a dataset of another config (differs in {diff}); "
                         "use another --out, or delete the folder to start over.")
    if final.exists():
        with fmt.open_h5(final) as f:
            if fmt.root_attrs(f)["complete"]:
                return final
    expert = resolve_expert(cfg, progress)
    # check the expert fits here, in the parent: a Pool worker whose initializer raises is respawned
    # forever, and the collection would hang instead of failing
    load_policy(expert, cfg, _action_dim(cfg.task))
    write_json(cfg_file, dict(config=config, expert=expert))
    for stale in [*out.glob(".*.tmp-*"), *out.glob("parts/.*.tmp-*")]:  # left by a killed writer
        stale.unlink(missing_ok=True)

    jobs = [(split, i, str(part_path(out, split, i))) for split, n in cfg.split_sizes().items() for i in range(n)]
    todo = [j for j in jobs if not fmt.part_is_complete(Path(j[2]))]
    action_dim = _action_dim(cfg.task)
    t0 = time.time()
    frames = 0
    if todo:
        bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), unit="episode", disable=not progress,
                   desc=f"collect {cfg.task}", dynamic_ncols=True)
        init = (config, expert, action_dim)
        if cfg.workers == 1:
            _worker_init(*init)
            results = map(_worker_job, todo)
            pool = None
        else:
            pool = mp.get_context("spawn").Pool(min(cfg.workers, len(todo)), _worker_init, init)
            results = pool.imap_unordered(_worker_job, todo)
        try:
            for _, _, n in results:
                frames += n
                bar.update(1)
                bar.set_postfix(fps=f"{frames / (time.time() - t0):.0f}")
        finally:
            bar.close()
            if pool is not None:
                pool.terminate()
                pool.join()
    collect_s = time.time() - t0
    merge(cfg, out, expert, [Path(j[2]) for j in jobs])
    if not keep_parts:
        shutil.rmtree(out / "parts", ignore_errors=True)
    stats = dict(frames=frames, seconds=round(collect_s, 2), fps=round(frames / collect_s, 1) if frames else None)
    write_json(out / "collect_stats.json", stats)
    return final


def _action_dim(task: str) -> int:
    import envpool

    from envs import get_task  # loads EGL before envpool (see envs.gl)

    spec = envpool.make_spec(get_task(task).envpool_id)
    return int(spec.action_space.shape[0])


def merge(cfg: CollectConfig, out: Path, expert: str, parts: list[Path]) -> Path:
    """All episode parts -> one ``dataset.h5`` with label splits and provenance, atomically."""
    import h5py

    final = out / "dataset.h5"
    train_lengths = []
    with atomic_path(final) as tmp, h5py.File(tmp, "w") as f:
        f.attrs.update(format=fmt.FORMAT, version=fmt.VERSION, task=cfg.task, seed=cfg.seed, complete=False,
                       config=json.dumps(cfg.to_dict()), versions=json.dumps(fmt.library_versions()),
                       expert=json.dumps(_expert_info(expert)), created=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        for path in parts:
            with h5py.File(path, "r") as p:
                src = p["episode"]
                split, index = str(src.attrs["split"]), int(src.attrs["index"])
                group = f.require_group(f"episodes/{split}")
                p.copy(src, group, name=fmt.episode_name(index))
                if "agent_geoms" not in f and cfg.exact_flow_inputs:
                    f.create_dataset("agent_geoms", data=p["agent_geoms"][()])
                if split == "train":
                    train_lengths.append(int(src.attrs["length"]))
        masks, meta = make_label_splits(train_lengths, cfg.label_fractions, cfg.label_trajectories, cfg.seed)
        labels = f.create_group("labels")
        for name, mask in masks.items():
            d = labels.create_dataset(name, data=mask, compression="gzip", fletcher32=True)
            for k, v in meta[name].items():
                d.attrs[k] = v
        labels.attrs["meta"] = json.dumps(meta)
        f.attrs["complete"] = True  # last: a file without it was never finished
    return final


def _expert_info(expert: str) -> dict:
    if expert == "random":
        return dict(kind="random")
    info: dict[str, Any] = dict(kind="sb3", run_dir=str(Path(expert).resolve()))
    report = Path(expert) / "report.json"
    if report.exists():
        r = read_json(report)
        info.update(algo=r.get("algo"), steps=r.get("steps"),
                    return_envpool=r.get("best", {}).get("envpool", {}).get("mean"),
                    return_dm_control=r.get("best", {}).get("dm_control", {}).get("mean"))
    return info


# --------------------------------------------------------------------------- CLI

def build_parser() -> argparse.ArgumentParser:
    p = stage_parser("rl_laof.collect", __doc__, COLLECT_PRESETS,
                     "quick: 32+8+4 episodes of <= 500 steps (minutes on 2 cores); paper: 500+50+50 full episodes")
    p.add_argument("--distractors", default=None,
                   help="none / easy / medium / hard / laom (LAOM's setting: camera and colour 0.1, every video, "
                        "no occluders), or 'hard:background,camera' (default: hard)")
    p.add_argument("--episodes", type=int, default=None, help="train episodes")
    p.add_argument("--eval-episodes", type=int, default=None, help="held-out episodes (same distractors)")
    p.add_argument("--heldout-bg-episodes", type=int, default=None,
                   help="held-out episodes with held-out background videos (generalisation split)")
    p.add_argument("--episode-steps", type=int, default=None, help="agent steps per episode (default: preset)")
    p.add_argument("--full-episodes", action="store_true", help="whole 1000-step episodes, whatever the preset")
    p.add_argument("--image-size", type=int, default=None, help="frame size in pixels")
    p.add_argument("--action-repeat", type=int, default=None, help="control steps per agent step")
    p.add_argument("--expert", default=None,
                   help="'auto' (the preset's expert, trained if missing), an expert run directory, or 'random'")
    p.add_argument("--action-noise", type=float, default=None, help="std of Gaussian noise on the expert's actions")
    p.add_argument("--workers", type=int, default=None, help="collection processes")
    p.add_argument("--seed", type=int, default=None, help="dataset seed (episodes, label splits)")
    p.add_argument("--no-exact-flow-inputs", dest="exact_flow_inputs", action="store_false", default=None,
                   help="do not store depth, geom ids and poses (smaller files; no exact flow later)")
    p.add_argument("--compression", default=None, choices=["lzf", "gzip", "none"], help="HDF5 compression")
    p.add_argument("--out", type=Path, default=None, help="dataset folder (default runs/datasets/<task>/<name>)")
    p.add_argument("--keep-parts", action="store_true", help="keep the per-episode part files after merging")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def config_from_args(args: argparse.Namespace) -> CollectConfig:
    compression = None if args.compression in (None, "none") else args.compression
    overrides: dict[str, Any] = dict(
        task=args.task, distractors=DistractorConfig.parse(args.distractors) if args.distractors else None,
        episodes=args.episodes, eval_episodes=args.eval_episodes, heldout_bg_episodes=args.heldout_bg_episodes,
        episode_steps=args.episode_steps, image_size=args.image_size, action_repeat=args.action_repeat,
        expert=args.expert, action_noise=args.action_noise, workers=args.workers, seed=args.seed,
        exact_flow_inputs=args.exact_flow_inputs, compression=compression,
    )
    cfg = from_preset(CollectConfig, COLLECT_PRESETS, args.preset, **overrides)
    if args.compression == "none":
        cfg = dataclasses.replace(cfg, compression=None)
    if args.full_episodes:
        cfg = dataclasses.replace(cfg, episode_steps=None)
    return cfg


def main(argv: list[str] | None = None) -> Path:
    args = build_parser().parse_args(argv)
    cfg = config_from_args(args)
    path = collect(cfg, args.out, progress=not args.no_progress, keep_parts=args.keep_parts)
    from rl_laof.data.dataset import VideoDataset

    print(json.dumps(dict(dataset=str(path), **VideoDataset(path).summary(brief=True))))
    return path


if __name__ == "__main__":
    from rl_laof.cli import run

    run(main)
