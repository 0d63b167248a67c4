"""One stable-baselines3 VecEnv over either simulator: distractors, frame stacks, SB3 semantics.

SB3 conventions, exactly as its own DummyVecEnv: ``done = terminated or truncated``; every info
has ``TimeLimit.truncated = truncated and not terminated`` (DMC episodes end by truncation, and
PPO must bootstrap through them); a done env's last observation goes to
``info["terminal_observation"]`` and the returned observation is the first of the next episode.
EnvPool would auto-reset a done env on the *next* step (reward 0, action discarded); we reset all
done envs at once, in the same step, with one batched ``reset(ids)`` call instead.

Pixel observations are ``(3 * frame_stack, H, W)`` uint8, oldest frame first. The stack is built
here, after the distractors, so each frame is distracted once, by the state of its own step.

Resuming exactly: neither EnvPool nor MuJoCo's pool hands out its envs' physics, but an env's state is a
function of its seed, how often it was reset (its random stream, which draws only at resets) and the actions
since its last reset. So wherever every env starts an episode at once (every DMC episode lasts the same number
of steps) the env records that start (:meth:`DistractedVecEnv.episode_start`: the pool's seed, each env's reset
count, the distractors' state); :meth:`DistractedVecEnv.resume_at` makes the next ``reset()`` start those
episodes again (the earlier resets replayed on a fresh pool), and stepping the actions since then brings every
env back to where it was, bit for bit (``agents.resume`` does both).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import VecEnv

from envs.config import EnvConfig
from envs.distractors import Distractors
from envs.simulators import Batch, state_space_from


class DistractedVecEnv(VecEnv):
    render_mode = "rgb_array"  # VecEnv.render() tiles get_images()

    def __init__(self, sim, cfg: EnvConfig):
        self.sim = sim
        self.cfg = cfg
        self.pixels = cfg.obs == "pixels"
        n, size, k = cfg.num_envs, cfg.image_size, cfg.frame_stack
        if self.pixels:
            space: gym.Space = gym.spaces.Box(0, 255, shape=(3 * k, size, size), dtype=np.uint8)
            self.distractors = Distractors(cfg.distractors, n, size, cfg.seed)
            self._stack = np.zeros((n, k, 3, size, size), np.uint8)
        elif cfg.state_as_dict:
            space = gym.spaces.Dict({
                key: gym.spaces.Box(-np.inf, np.inf, shape=s, dtype=np.float32)
                for key, s in sim.state_shapes.items()
            })
        else:
            dim = int(sum(np.prod(s, dtype=int) for s in sim.state_shapes.values()))
            space = gym.spaces.Box(-np.inf, np.inf, shape=(dim,), dtype=np.float32)
        self.state_space = state_space_from(sim.state_shapes)
        super().__init__(n, space, sim.action_space)
        self._actions: np.ndarray | None = None
        self.last_actions: np.ndarray | None = None  # what the simulator was last given: the executed actions
        self._last_frames: np.ndarray | None = None
        self._pool_seed = cfg.seed  # the seed the simulator's envs were last made with
        self._resets = np.zeros(n, np.int64)  # each env's resets since then
        self._start: dict | None = None  # where every env last started an episode at once (episode_start)
        self._resume: dict | None = None  # a start the next reset() returns to (resume_at)
        self.steps_since_start = 0  # steps since that start

    # ------------------------------------------------------------------ observations
    def _state_obs(self, state: dict[str, np.ndarray]):
        if self.cfg.state_as_dict:
            return {k: v.astype(np.float32) for k, v in state.items()}
        n = len(next(iter(state.values())))
        return np.concatenate([state[k].reshape(n, -1) for k in self.sim.state_shapes], axis=1).astype(np.float32)

    def _observe(self, batch: Batch, new_episode: bool):
        """Observations and per-env frame infos for ``batch.ids``."""
        ids = batch.ids
        infos: list[dict] = [{} for _ in ids]
        if not self.pixels:
            return self._state_obs(batch.state), infos
        frames, masks = batch.frames, None
        raw_masks = None
        if batch.extras is not None:
            raw_masks = np.stack([e["agent_mask_raw"] for e in batch.extras])
        # always composited: without distractors the kernel puts the clean sky behind the scene
        frames, masks = self.distractors.apply(frames, ids, raw_masks)
        if batch.extras is not None:
            for j, (e, i) in enumerate(zip(batch.extras, ids, strict=False)):
                infos[j] = dict(e, agent_mask=masks[j], shake_affine=self.distractors.affine(int(i)),
                                frame=frames[j])
        if new_episode:
            self._stack[ids] = frames[:, None]
        else:
            self._stack[ids, :-1] = self._stack[ids, 1:]
            self._stack[ids, -1] = frames
        if self._last_frames is None:
            self._last_frames = np.zeros((self.num_envs, *frames.shape[1:]), np.uint8)
        self._last_frames[ids] = frames
        return self._stack[ids].reshape(len(ids), *self.observation_space.shape).copy(), infos

    @staticmethod
    def _put(obs, ids, values):
        if isinstance(obs, dict):
            for k in obs:
                obs[k][ids] = values[k]
        else:
            obs[ids] = values

    @staticmethod
    def _take(obs, i):
        if isinstance(obs, dict):
            return {k: v[i].copy() for k, v in obs.items()}
        return obs[i].copy()

    # ------------------------------------------------------------------ VecEnv API
    def reset(self):
        if self._resume is not None:
            return self._restart(self._resume)
        if any(s is not None for s in self._seeds):
            self._reseed(self._seeds[0])
            if self.pixels:
                self.distractors = Distractors(self.cfg.distractors, self.num_envs, self.cfg.image_size,
                                               self._seeds[0])
        self._reset_seeds()
        ids = np.arange(self.num_envs)
        batch = self.sim.reset(ids)
        self._resets += 1
        if self.pixels:
            self.distractors.reset(ids)
        obs, infos = self._observe(batch, new_episode=True)
        self.reset_infos = infos
        self._mark_start()
        return obs

    # ------------------------------------------------------------------ exact resumption
    def _reseed(self, seed: int) -> None:
        self.sim.reseed(seed)
        self._pool_seed = int(seed)
        self._resets[:] = 0

    def _mark_start(self) -> None:
        self._start = {"seed": self._pool_seed, "resets": self._resets.copy(),
                       "distractors": self.distractors.state() if self.pixels else None}
        self.steps_since_start = 0

    def episode_start(self) -> dict | None:
        """Where every env last started an episode at once (None before the first reset): the pool's seed, each
        env's resets since it was made (the last one included) and the distractors' state after that reset's
        draws. ``steps_since_start`` counts the steps since."""
        return self._start

    def resume_at(self, start: dict) -> None:
        """Make the next ``reset()`` start again the episodes of ``start`` (an :meth:`episode_start`, of an env of
        the same config), on a pool made anew with its seed, each env reset as often as it was before."""
        self._resume = start

    def _restart(self, start: dict):
        self._resume = None
        self._reset_seeds()
        self._reseed(start["seed"])
        resets = np.asarray(start["resets"], np.int64)
        for k in range(1, int(resets.max())):  # the earlier resets, each a draw of the env's random stream
            self.sim.reset(np.flatnonzero(resets > k))
        ids = np.arange(self.num_envs)
        batch = self.sim.reset(ids)
        self._resets = resets.copy()
        if self.pixels:
            self.distractors.load_state(start["distractors"])
        obs, infos = self._observe(batch, new_episode=True)
        self.reset_infos = infos
        self._mark_start()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        actions = np.asarray(actions, np.float32).reshape(self.num_envs, *self.action_space.shape)
        if not np.all(np.isfinite(actions)):
            raise ValueError("actions contain NaN or inf")
        self._actions = np.clip(actions, self.action_space.low, self.action_space.high)
        self.last_actions = self._actions

    def step_wait(self):
        if self._actions is None:
            raise RuntimeError("step_wait() without step_async(): call step(actions).")
        batch, rew, term, trunc = self.sim.step(self._actions)
        self._actions = None
        if self.pixels:
            self.distractors.step()
        obs, infos = self._observe(batch, new_episode=False)
        dones = np.asarray(term | trunc)
        for i in range(self.num_envs):
            infos[i]["TimeLimit.truncated"] = bool(trunc[i] and not term[i])
        done_ids = np.flatnonzero(dones)
        self.steps_since_start += 1
        if len(done_ids):
            for i in done_ids:
                infos[i]["terminal_observation"] = self._take(obs, i)
            reset_batch = self.sim.reset(done_ids)
            self._resets[done_ids] += 1
            if self.pixels:
                self.distractors.reset(done_ids)
            new_obs, reset_infos = self._observe(reset_batch, new_episode=True)
            self._put(obs, done_ids, new_obs)
            for j, i in enumerate(done_ids):
                self.reset_infos[i] = reset_infos[j]
                if reset_infos[j]:
                    infos[i]["reset_frame_info"] = reset_infos[j]
            if len(done_ids) == self.num_envs:
                self._mark_start()
        return obs, rew.astype(np.float32), dones, infos

    def close(self) -> None:
        self.sim.close()

    def get_images(self) -> Sequence[np.ndarray | None]:
        if self._last_frames is None:
            return [None] * self.num_envs
        return list(self._last_frames.transpose(0, 2, 3, 1))

    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        return [getattr(self, attr_name)] * len(self._get_indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        setattr(self, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> list[Any]:
        raise NotImplementedError(f"{type(self).__name__} runs its envs in one simulator: no per-env methods")

    def env_is_wrapped(self, wrapper_class, indices=None) -> list[bool]:
        return [False] * len(self._get_indices(indices))
