"""Exact resumption of a stable-baselines3 run: what its checkpoints hold besides SB3's ``model.zip``.

An SB3 checkpoint alone resumes a different run: ``load`` reseeds torch's and numpy's global generators with the
run's seed (``set_random_seed``), so the actions PPO samples and its minibatch order start over; it drops the
rollout's last observation and resets the envs, so every env starts its first episode again; and VecNormalize
does not keep its running discounted returns. A resumed run then trained on other data than the uninterrupted
one, and its later evaluations differed.

Here a checkpoint also keeps (``resume.pt``, checksummed): the global random states (torch, numpy, Python, the
action space's), VecNormalize's returns, and the envs' replay log (:class:`ResumableVecEnv`): where every env last
started an episode at once (``envs.vec_env``) and the agent's actions since. Resuming sends fresh envs back to
that start, steps those actions again, and checks that they arrive at the observation the run had (bit for bit);
the run then continues as if never stopped. Where they do not (another machine renders differently; an env that
is not ours), it says so in one line and resumes as before, from a reset.
"""

from __future__ import annotations

import random
import sys
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper, VecNormalize

from envs.vec_env import DistractedVecEnv


def _base_env(venv) -> DistractedVecEnv | None:
    while venv is not None and not isinstance(venv, DistractedVecEnv):
        venv = getattr(venv, "venv", None)
    return venv


def _copy(obs):
    return {k: np.array(v, copy=True) for k, v in obs.items()} if isinstance(obs, dict) else np.array(obs, copy=True)


def _equal(a, b) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    return b is not None and np.array_equal(a, b)


class ResumableVecEnv(VecEnvWrapper):
    """Keeps what brings a VecEnv (ours, under any wrappers) back to its state: where every env last started an
    episode at once and the agent's actions since (a DMC episode lasts a fixed number of steps, so the log never
    holds more than an episode, or the few episodes until a skill chunk ends with one)."""

    def __init__(self, venv: VecEnv):
        super().__init__(venv)
        self.base = _base_env(venv)
        self.start: dict | None = None
        self.actions: list[np.ndarray] = []
        self.last_obs: Any = None
        self._pending: np.ndarray | None = None

    def reset(self):
        obs = self.venv.reset()
        self._started(obs)
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._pending = np.array(actions, copy=True)
        self.venv.step_async(actions)

    def step_wait(self):
        obs, rewards, dones, infos = self.venv.step_wait()
        self.actions.append(self._pending)
        if self.base is not None and self.base.steps_since_start == 0:  # every env started an episode here
            self._started(obs)
        else:
            self.last_obs = _copy(obs)
        return obs, rewards, dones, infos

    def _started(self, obs) -> None:
        self.start = self.base.episode_start() if self.base is not None else None
        self.actions = []
        self.last_obs = _copy(obs)

    def state(self) -> dict[str, Any] | None:
        """The replay log (None where the envs cannot be sent back: not ours, or never reset)."""
        if self.start is None:
            return None
        return {"start": self.start, "actions": np.stack(self.actions) if self.actions else None, "obs": self.last_obs}

    def restore(self, state: dict[str, Any] | None) -> bool:
        """Send the envs back to ``state`` (a :meth:`state`): its episode start, then its actions again; whether
        they arrived at the observation recorded."""
        if state is None or self.base is None:
            return False
        self.base.resume_at(state["start"])
        obs = self.reset()
        for actions in state["actions"] if state["actions"] is not None else []:
            self.step_async(actions)
            obs = self.step_wait()[0]
        return _equal(obs, state["obs"])


def resumable(venv) -> ResumableVecEnv | None:
    while venv is not None and not isinstance(venv, ResumableVecEnv):
        venv = getattr(venv, "venv", None)
    return venv


def run_state(model) -> dict[str, Any]:
    """What a checkpoint of ``model`` keeps besides SB3's own file: random states, VecNormalize's returns, the
    envs' replay log."""
    env = model.get_env()
    log = resumable(env)
    return {"rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
                    "action_space": model.action_space.np_random.bit_generator.state},
            "returns": np.array(env.returns, copy=True) if isinstance(env, VecNormalize) else None,
            "envs": log.state() if log is not None else None}


def restore_run_state(model, state: dict[str, Any], where: str) -> bool:
    """Bring a model just loaded (with ``force_reset=False``) and its envs to ``state`` (:func:`run_state`);
    whether the run resumes exactly. Otherwise its envs reset when training starts, as SB3 would (said in one line,
    naming the checkpoint ``where``)."""
    env = model.get_env()
    log = resumable(env)
    exact = log is not None and log.restore(state["envs"])
    if exact:
        if isinstance(env, VecNormalize) and state["returns"] is not None:
            env.returns = state["returns"]
    else:
        model._last_obs = None  # SB3 resets the envs when training starts
        print(f"{where}: the envs could not be replayed to the checkpoint's state (another renderer, or envs that "
              "are not rl_laof's); the run resumes from fresh episodes, not bit for bit", file=sys.stderr, flush=True)
    rng = state["rng"]
    torch.set_rng_state(rng["torch"])
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])
    model.action_space.np_random.bit_generator.state = rng["action_space"]
    return exact
