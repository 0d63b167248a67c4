"""Episode returns: the one loop that runs a policy in a VecEnv until every env has finished an episode, and
the evaluation of a pixel policy over background sets and seeds built on it.

A policy here is a callable ``act(obs) -> actions`` on a batch of observations; a stateful one (an SB3
recurrent policy) is told which envs just finished through ``on_dones``. Returns are the VecMonitor's
(``info["episode"]["r"]``): the first episode of each env counts, later ones are ignored.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from envs import make
from envs.config import DistractorConfig, resolve_backend

#: the one evaluation seed (defined here, the lowest layer, for every stage). A pool of n envs made with seed s
#: runs env i on seed s + i (EnvPool's and our dm_control backend's rule: env 1 of seed s starts where env 0 of
#: seed s + 1 does), so evaluations that must not share episodes take seed blocks n apart:
#: :func:`policy_returns` evaluates evaluation seed k of evaluation set b (EVAL_SETS) on EVAL_SEED + 1000 b + k n
#: (the same for every method, so every policy meets the same episodes); an agent's periodic evaluation runs on
#: its seed + EVAL_SEED, its final one on its seed + EVAL_SEED + eval_episodes (agents.training: episodes the
#: periodic ones never saw), an expert's periodic one on its seed + EVAL_SEED (agents.expert)
EVAL_SEED = 50_000
#: the seeds of one evaluation set in :func:`policy_returns` (seeds x episodes must fit in it)
BACKGROUND_SEED_BLOCK = 1000
#: :func:`policy_returns`' evaluation sets: name -> (the distractors' background videos, its seed block b).
#: "val" shows the data's background videos on episodes of its own: choices are made there, never on "train" /
#: "eval", which report
EVAL_SETS = {"train": ("train", 0), "eval": ("eval", 1), "val": ("train", 2)}


def run_episodes(venv, act: Callable[[np.ndarray], np.ndarray], record: Callable[[np.ndarray], None] | None = None,
                 on_dones: Callable[[np.ndarray], None] | None = None,
                 executed: list[np.ndarray] | None = None) -> np.ndarray:
    """The return of the first episode of every env of ``venv`` (a VecMonitor'd VecEnv) under ``act``.

    ``record(obs)`` sees every observation of env 0's first episode (before its action); ``on_dones(dones)``
    sees each step's done flags (a recurrent policy starts a new episode's state there). ``executed`` (a list)
    receives, each step, the actions the simulator executed in the envs still in their first episode (after every
    action-space wrapper and the env's clipping: :func:`executed_actions`), so a policy's actions on its own
    states can be measured."""
    obs = venv.reset()
    returns = np.full(venv.num_envs, np.nan)
    while np.isnan(returns).any():
        if record is not None and np.isnan(returns[0]):
            record(obs)
        live = np.isnan(returns)
        obs, _, dones, infos = venv.step(act(obs))
        if executed is not None:
            executed.append(executed_actions(venv)[live])
        if on_dones is not None:
            on_dones(dones)
        for i in np.flatnonzero(dones):
            if np.isnan(returns[i]):
                returns[i] = infos[i]["episode"]["r"]
    return returns


def executed_actions(venv) -> np.ndarray:
    """The actions the innermost env of ``venv`` executed on its last step (``DistractedVecEnv.last_actions``:
    whatever latent or residual wrapper made them, clipped to the action bounds)."""
    actions = getattr(venv.unwrapped, "last_actions", None)
    if actions is None:
        raise ValueError(f"{type(venv.unwrapped).__name__} does not keep its executed actions (last_actions): "
                         "build the env with envs.make")
    return np.asarray(actions, np.float32).reshape(venv.unwrapped.num_envs, -1)


def policy_returns(act: Callable[[np.ndarray], np.ndarray], task: str, distractors: Any, image_size: int,
                   frame_stack: int, action_repeat: int, backgrounds: Sequence[str] = ("train",), seeds: int = 1,
                   episodes: int = 8, progress: bool = True, backend: str = "auto") -> dict[str, dict[str, Any]]:
    """Returns of a pixel policy on the pixel env of ``backend`` (``"auto"``: the faster one at ``action_repeat``,
    :func:`envs.config.resolve_backend`) with ``distractors`` (a level, a dict or a
    :class:`DistractorConfig`), per evaluation set (:data:`EVAL_SETS`: ``train`` the training background videos,
    ``eval`` the held-out ones, ``val`` the training videos on episodes of its own, for choices) over ``seeds`` x
    ``episodes`` episodes (each seed's episodes run in parallel; every episode's return is kept, seeds x episodes,
    so a bimodal spread shows), and ``action_std``, the per-dimension std of the actions the env executed in those
    episodes (the policy on its own states). A stateful ``act`` (one with ``reset()``, e.g. a skill policy
    executing chunks) is reset per env batch."""
    dist = DistractorConfig.parse(distractors)
    backend = resolve_backend(backend, "pixels", action_repeat)
    if seeds * episodes > BACKGROUND_SEED_BLOCK:
        raise ValueError(f"{seeds} seeds x {episodes} episodes: at most {BACKGROUND_SEED_BLOCK} episodes per "
                         "background set")
    if unknown := [b for b in backgrounds if b not in EVAL_SETS]:
        raise ValueError(f"evaluation sets {unknown}: use some of {', '.join(EVAL_SETS)}")
    out: dict[str, dict[str, Any]] = {}
    for background in backgrounds:
        split, b = EVAL_SETS[background]
        per_seed, executed = [], []
        for s in range(seeds):
            venv = make(task, num_envs=episodes, obs="pixels",
                        distractors=dataclasses.replace(dist, background_split=split),
                        image_size=image_size, frame_stack=frame_stack, action_repeat=action_repeat,
                        seed=EVAL_SEED + BACKGROUND_SEED_BLOCK * b + s * episodes, backend=backend,
                        exact_flow_info=False)
            if hasattr(act, "reset"):
                act.reset()
            try:
                per_seed.append(run_episodes(venv, act, executed=executed))
            finally:
                venv.close()
        r = np.stack(per_seed)
        out[background] = {"mean": float(r.mean()), "std_episodes": float(r.std()),
                           "std_seeds": float(r.mean(1).std()), "seed_means": r.mean(1).round(2).tolist(),
                           "episodes": int(r.size), "episode_returns": r.round(1).tolist(),
                           "action_std": np.concatenate(executed).std(0).round(4).tolist()}
        if progress:
            print(f"  returns, {background} backgrounds: {r.mean():.1f} +- {r.std():.1f} ({r.size} episodes)")
    return out
