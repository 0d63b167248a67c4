"""Collecting a video dataset (the library behind ``python -m rl_laof.collect``).

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

import contextlib
import json
import multiprocessing as mp
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from envs import ensure_gl, get_task, make_from_config
from envs.config import DistractorConfig
from rl_laof.data import format as fmt
from rl_laof.data.config import CollectConfig
from rl_laof.data.labels import make_label_splits
from rl_laof.presets import free_disk, refuse_beyond
from rl_laof.progress import progress_bar
from rl_laof.runs import atomic_path, check_room, dataset_dir, lock_run, read_json, run_folder, write_json

#: loads an expert run's policy: (run folder, "best" | "final") -> an object with ``act(states)`` and ``config``
LoadExpert = Callable[[str, str], Any]
#: a split's code in the episode seeds is its index in ``fmt.SPLITS`` (val, added last, is 3): never reorder
_SPLIT_CODE = {s: i for i, s in enumerate(fmt.SPLITS)}
#: config fields added after datasets were collected without them, and the value those datasets hold
_ADDED_FIELDS = {"val_episodes": 0}
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


def expert_run(cfg: CollectConfig, expert: str | None = None) -> str:
    """``"random"``, or the expert run folder to roll out: ``expert`` (the pipeline's, found or trained), else
    ``cfg.expert``; a folder without the expert's model is refused."""
    name = str(expert if expert is not None else cfg.expert)
    if name == "random":
        return "random"
    if name == "auto":
        raise ValueError("expert 'auto' is the preset's expert, found or trained by rl_laof.pipeline.dataset "
                         "(python -m rl_laof.collect); pass an expert run folder or 'random' here")
    path = Path(name)
    if not (path / cfg.expert_which / "model.zip").exists():
        raise FileNotFoundError(f"--expert {path}: not an expert run directory (no {cfg.expert_which}/model.zip). "
                                "Train one with `python -m rl_laof.expert`, or use --expert auto / random.")
    return str(path)


def load_policy(expert: str, cfg: CollectConfig, action_dim: int, load_expert: LoadExpert | None):
    """The policy an episode is rolled out with: random actions, or the expert (loaded by ``load_expert``) with
    the config's action noise; an expert of another task or action repeat is refused."""
    if expert == "random":
        return RandomPolicy(action_dim)
    if load_expert is None:
        raise ValueError(f"expert {expert}: collecting with an expert needs its loader (load_expert, e.g. "
                         "agents.expert.Expert.load; rl_laof.pipeline.dataset passes it)")
    loaded = load_expert(expert, cfg.expert_which)
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


def _pool_worker_init(*init) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle (one line, then the pool ends)
    _worker_init(*init)


def _worker_init(cfg_dict: dict, expert: str, action_dim: int, load_expert: LoadExpert | None) -> None:
    torch.set_num_threads(1)  # one core per worker, and bit-reproducible inference
    cfg = CollectConfig(**_revive(cfg_dict))
    _WORKER.update(cfg=cfg, policy=load_policy(expert, cfg, action_dim, load_expert))


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

def finished(cfg: CollectConfig, out: str | Path | None = None) -> Path | None:
    """The finished ``dataset.h5`` of ``cfg`` in ``out`` (default runs/datasets/<task>/<name>), or None while
    episodes are left to collect. A folder of another config is refused, before anything is collected (or an
    expert trained for it)."""
    get_task(cfg.task)
    out = run_folder(out if out is not None else dataset_dir(cfg.task, cfg.name))
    final = out / "dataset.h5"
    config = json.loads(json.dumps(cfg.to_dict()))
    cfg_file = out / "collect.json"
    old = read_json(cfg_file)["config"] if cfg_file.exists() else config
    predates = sorted(k for k in _ADDED_FIELDS if k not in old)
    old = {**_ADDED_FIELDS, **old}  # a dataset from before a field existed holds that field's "none" value
    diff = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k) and k not in _NOT_IDENTITY)
    if diff and set(diff) <= set(predates):
        raise ValueError(f"{out} holds a dataset collected before the val split existed (it has no val "
                         f"episodes; {cfg.val_episodes} asked for): use it as it is with --val-episodes 0 "
                         "(CollectConfig(val_episodes=0)), or delete the folder and collect again (its train, eval "
                         "and heldout_bg episodes come out identical).")
    if diff:
        raise ValueError(f"{out} holds a dataset of another config (differs in {diff}); "
                         "use another --out, or delete the folder to start over.")
    if final.exists():
        with fmt.open_h5(final) as f:
            if fmt.root_attrs(f)["complete"]:
                return final
    check_disk(cfg, out)
    return None


def dataset_bytes(cfg: CollectConfig) -> tuple[int, int]:
    """(frames, bytes) of the dataset ``cfg`` describes, estimated: per frame its RGB pixels (frames under
    distractors hardly compress: lzf kept 83 %, measured at 32 px) and, with the exact-flow inputs, about 2 bytes
    a pixel more (depth and geom ids after compression; 1.6 measured)."""
    max_steps = 1000 // cfg.action_repeat  # a DMC episode: 1000 control steps
    steps = max_steps if cfg.episode_steps is None else min(cfg.episode_steps, max_steps)
    frames = sum(cfg.split_sizes().values()) * (steps + 1)
    return frames, frames * cfg.image_size ** 2 * (3 + (2 if cfg.exact_flow_inputs else 0))


def check_disk(cfg: CollectConfig, out: Path) -> None:
    """Refuse a collection the disk at ``out`` cannot hold, before an expert is trained or an episode listed:
    the episode parts and, while they merge, the dataset beside them (twice its size), less the parts already
    there (a resumed collection)."""
    frames, size = dataset_bytes(cfg)
    done = sum(p.stat().st_size for p in (out / "parts").glob("*.h5")) if (out / "parts").is_dir() else 0
    episodes = sum(cfg.split_sizes().values())
    refuse_beyond(f"{episodes} episodes ({frames} frames at {cfg.image_size} px)", 2 * size - done, free_disk(out),
                  f"disk space at {out}", "collect fewer or shorter episodes, or free space there")


def collect(cfg: CollectConfig, out: str | Path | None = None, progress: bool = True, keep_parts: bool = False,
            expert: str | None = None, load_expert: LoadExpert | None = None, command: str | None = None) -> Path:
    """Collect (or resume, or find finished) the dataset ``cfg`` describes; returns ``out/dataset.h5``.

    ``expert``: the expert run folder (or "random"), else ``cfg.expert``; ``load_expert(run_dir, which)`` loads
    it (worker processes call it: it must pickle, e.g. ``agents.expert.Expert.load``). ``rl_laof.pipeline.dataset``
    passes both, the expert found or trained only where :func:`finished` says episodes are left. ``command``: the
    command line that resumes this collection, kept in ``collect.json`` for messages about it."""
    done = finished(cfg, out)
    if done is not None:
        return done
    out = run_folder(out if out is not None else dataset_dir(cfg.task, cfg.name))
    final = out / "dataset.h5"
    config = json.loads(json.dumps(cfg.to_dict()))
    cfg_file = out / "collect.json"
    expert = expert_run(cfg, expert)
    # check the expert fits here, in the parent: a Pool worker whose initializer raises is respawned
    # forever, and the collection would hang instead of failing
    load_policy(expert, cfg, _action_dim(cfg.task), load_expert)
    ensure_gl()  # no headless GL: one line here, not a traceback from every worker
    # one collection in a folder at a time: a second would merge or remove the parts the first still writes
    with lock_run(out):
        done = finished(cfg, out)  # finished by the collection that held the folder before
        if done is not None:
            return done
        write_json(cfg_file, dict(config=config, expert=expert, command=command))
        for stale in [*out.glob(".*.tmp-*"), *out.glob("parts/.*.tmp-*")]:  # left by a killed writer
            stale.unlink(missing_ok=True)
        _collect_episodes(cfg, out, progress, expert, load_expert)
        if not keep_parts:
            shutil.rmtree(out / "parts", ignore_errors=True)
    return final


def _collect_episodes(cfg: CollectConfig, out: Path, progress: bool, expert: str,
                      load_expert: LoadExpert | None) -> None:
    """Roll out the episodes ``out/parts`` lacks (in worker processes where ``cfg.workers`` > 1), merge every part
    into ``out/dataset.h5`` and record the collection's speed."""
    config = json.loads(json.dumps(cfg.to_dict()))
    jobs = [(split, i, str(part_path(out, split, i))) for split, n in cfg.split_sizes().items() for i in range(n)]
    todo = [j for j in jobs if not fmt.part_is_complete(Path(j[2]))]
    t0 = time.time()
    frames = _collect_parts(cfg, out, jobs, todo, (config, expert, _action_dim(cfg.task), load_expert), progress)
    collect_s = time.time() - t0
    merge(cfg, out, expert, [Path(j[2]) for j in jobs])
    stats = dict(frames=frames, seconds=round(collect_s, 2), fps=round(frames / collect_s, 1) if frames else None)
    write_json(out / "collect_stats.json", stats)


def _collect_parts(cfg: CollectConfig, out: Path, jobs: list, todo: list, init: tuple, progress: bool) -> int:
    """Roll the episodes ``todo`` (of ``jobs``) out into their parts, in ``cfg.workers`` processes; the frames
    written. It stops early, with the finished parts kept, where the disk cannot hold the rest (:func:`_check_room`)."""
    if not todo:
        return 0
    bar = progress_bar(total=len(jobs), initial=len(jobs) - len(todo), unit="episode", enabled=progress,
                       desc=f"collect {cfg.task}", folder=out)
    left = set(todo)
    done = [Path(j[2]).stat().st_size for j in jobs if j not in left]
    _check_room(out, sum(done), len(done), len(todo))
    if cfg.workers == 1:
        _worker_init(*init)
        results, pool = map(_worker_job, todo), None
    else:
        with _deaf_to_ctrl_c():  # the workers: the parent says the one line and ends them
            pool = mp.get_context("spawn").Pool(min(cfg.workers, len(todo)), _pool_worker_init, init)
        results = pool.imap_unordered(_worker_job, todo)
    t0, frames = time.time(), 0
    try:
        for split, index, n in results:
            frames += n
            bar.update(1)
            bar.set_postfix(fps=f"{frames / (time.time() - t0):.0f}")
            done.append(part_path(out, split, index).stat().st_size)
            _check_room(out, sum(done), len(done), len(jobs) - len(done))
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
            pool.join()
            for stale in (out / "parts").glob(".*.tmp-*"):  # a part a worker was writing as it was ended
                stale.unlink(missing_ok=True)
    return frames


@contextlib.contextmanager
def _deaf_to_ctrl_c() -> Iterator[None]:
    """Processes started inside ignore SIGINT from their first instruction (an ignored signal stays ignored across
    exec): a terminal's Ctrl-C reaches the whole process group, and a worker still importing would print a
    traceback of its own before its initializer could ignore it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


#: the merged dataset.h5 over the sum of its parts (HDF5 copies the compressed chunks; each part has its own
#: metadata): a little under 1 (0.994 measured), so a disk a little short of the parts' sum is not refused
_MERGED_SHARE = 0.95


def _check_room(out: Path, done_bytes: int, done: int, left: int) -> None:
    """Stop while the disk can still hold what is written: ``left`` more parts the mean size of the ``done`` ones,
    then the merged dataset (about their sum: the parts are removed only after it is written)."""
    if done:
        mean = done_bytes / done
        what = f"{left} more episodes and the merged dataset.h5" if left else "the merged dataset.h5"
        check_room(out, mean * left + _MERGED_SHARE * mean * (done + left), what)


def _action_dim(task: str) -> int:
    import envpool  # deferred: envpool after EGL is loaded (``import envs`` does it; see envs.gl)

    spec = envpool.make_spec(get_task(task).envpool_id)
    return int(spec.action_space.shape[0])


def merge(cfg: CollectConfig, out: Path, expert: str, parts: list[Path]) -> Path:
    """All episode parts -> one ``dataset.h5`` with label splits and provenance, atomically; refused first where
    the disk cannot hold it."""
    final = out / "dataset.h5"
    check_room(out, _MERGED_SHARE * sum(p.stat().st_size for p in parts), "the merged dataset.h5")
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
