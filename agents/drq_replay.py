"""DrQ-v2's replay buffer over this project's pixel envs: every frame stored once (uint8), frame stacks and n-step
returns rebuilt at sampling time, never across an episode's end.

The env's observation is a stack of the last ``frame_stack`` frames, oldest first, the first frame of an
episode repeated where the episode is younger than the stack (``envs.vec_env``). A stacked buffer would hold
every frame ``frame_stack`` times (DrQ-v2's own stores the stacked observations of its episodes); here each env
has a ring of *slots*, one per frame it saw: an episode's first frame, then the newest frame of every later
observation, its last (terminal) observation included, so an episode of T steps takes T + 1 slots. A slot keeps
where its episode started (absolute position), the action taken from it and the reward that followed, and
whether it ends its episode (``ended``) and whether that end is a real terminal state (``terminal``: the value of
what follows is 0). DMC episodes end by the time limit, which is not terminal: their last observation is
bootstrapped from, as DrQ-v2 does (its DMC discount stays 1 at the time limit).

A sample starting at slot p uses n_eff = min(n, steps to its episode's end) steps: R = sum_j gamma^j r_{p+j},
discount gamma^n_eff (0 when it ends on a terminal state), next observation the stack at p + n_eff. DrQ-v2's
reference instead samples only starts with n whole steps left in their episode, so the last n - 1 states of each
episode are never a start; truncating there uses every transition and bootstraps from the episode's last
observation, which is right for a time limit. Starts whose n steps are not yet written (an episode under way) or
whose stack reaches frames the ring has overwritten are never drawn; valid starts are drawn uniformly (rejection
sampling over the stored slots).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

_FIELDS = ("frames", "actions", "rewards", "episode_start", "ended", "terminal")


class FrameReplay:
    """A replay buffer of ``num_envs`` rings of at most ``ceil(capacity / num_envs)`` slots each (grown on
    demand, so a short run holds only what it stored)."""

    def __init__(self, num_envs: int, capacity: int, frame_shape: tuple[int, ...], action_dim: int,
                 frame_stack: int):
        self.num_envs, self.frame_stack = int(num_envs), int(frame_stack)
        self.cap = max(2, math.ceil(capacity / num_envs))
        self.count = np.zeros(num_envs, np.int64)  # slots written per env: absolute positions 0 .. count - 1
        self._alloc(min(self.cap, 1024), tuple(frame_shape), int(action_dim))

    def _alloc(self, size: int, frame_shape: tuple[int, ...], action_dim: int) -> None:
        n = self.num_envs
        self.frames = np.zeros((n, size, *frame_shape), np.uint8)
        self.actions = np.zeros((n, size, action_dim), np.float32)
        self.rewards = np.zeros((n, size), np.float32)
        self.episode_start = np.zeros((n, size), np.int64)
        self.ended = np.zeros((n, size), bool)
        self.terminal = np.zeros((n, size), bool)

    @property
    def size(self) -> int:
        """Slots allocated per env (the ring wraps once it reaches ``cap``)."""
        return self.frames.shape[1]

    def _grow(self, needed: int) -> None:
        if needed <= self.size or self.size >= self.cap:
            return
        old = {f: getattr(self, f) for f in _FIELDS}
        self._alloc(min(self.cap, max(needed, 2 * self.size)), self.frames.shape[2:], self.actions.shape[2])
        for f, values in old.items():
            getattr(self, f)[:, :values.shape[1]] = values

    def _append(self, envs: np.ndarray, frames: np.ndarray, starts: np.ndarray | None) -> np.ndarray:
        """A new slot per env of ``envs`` holding ``frames``; ``starts``: those that begin an episode (others
        continue the episode of their previous slot). Returns the slots' ring indices."""
        self._grow(int(self.count[envs].max()) + 1)
        pos = self.count[envs]
        idx = pos % self.size
        self.frames[envs, idx] = frames
        prev = self.episode_start[envs, (pos - 1) % self.size]
        self.episode_start[envs, idx] = pos if starts is None else np.where(starts, pos, prev)
        self.ended[envs, idx] = False
        self.terminal[envs, idx] = False
        self.actions[envs, idx] = 0.0
        self.rewards[envs, idx] = 0.0
        self.count[envs] += 1
        return idx

    def start(self, frames: np.ndarray, envs: np.ndarray | None = None) -> None:
        """Episodes begin in ``envs`` (default all) with their first frames ``frames`` (n, 3, H, W)."""
        envs = np.arange(self.num_envs) if envs is None else np.asarray(envs)
        if len(envs):
            self._append(envs, frames, np.ones(len(envs), bool))

    def step(self, actions: np.ndarray, rewards: np.ndarray, next_frames: np.ndarray, dones: np.ndarray,
             terminals: np.ndarray, reset_frames: np.ndarray | None = None) -> None:
        """Every env took ``actions`` from its newest slot, got ``rewards`` and saw ``next_frames`` (the newest
        frame of its next observation; of its last one where ``dones``); ``terminals``: a done that is a real
        terminal state, not a time limit. Done envs then begin an episode with ``reset_frames``."""
        envs = np.arange(self.num_envs)
        last = (self.count - 1) % self.size
        self.actions[envs, last] = actions
        self.rewards[envs, last] = rewards
        idx = self._append(envs, next_frames, np.zeros(self.num_envs, bool))
        dones = np.asarray(dones, bool)
        self.ended[envs, idx] = dones
        self.terminal[envs, idx] = dones & np.asarray(terminals, bool)
        if dones.any():
            self.start(reset_frames[dones], envs[dones])

    def transitions(self) -> int:
        """Slots kept (an upper bound on the transitions that can be sampled)."""
        return int(np.minimum(self.count, self.cap).sum())

    def stacks(self, envs: np.ndarray, pos: np.ndarray) -> np.ndarray:
        """The observations (m, 3 * frame_stack, H, W) at absolute slots ``pos`` of ``envs``: the frames of the
        stack's steps, the episode's first repeated before it began."""
        k = self.frame_stack
        first = self.episode_start[envs, pos % self.size]
        q = np.maximum(pos[:, None] - (k - 1) + np.arange(k)[None, :], first[:, None])
        frames = self.frames[envs[:, None], q % self.size]  # (m, k, 3, H, W)
        return frames.reshape(len(pos), -1, *frames.shape[3:])

    def _n_step(self, envs: np.ndarray, pos: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(n_eff, valid) of starts ``pos``: steps until the n-step horizon or the episode's end, and whether the
        start can be sampled (its transitions written, its stack's frames still kept)."""
        count = self.count[envs][:, None]
        ahead = pos[:, None] + np.arange(n + 1)[None, :]
        written = ahead <= count - 1
        ended = self.ended[envs[:, None], ahead % self.size] & written
        inner = ended[:, 1:n]
        n_eff = np.where(inner.any(1), inner.argmax(1) + 1, n) if n > 1 else np.ones(len(pos), np.int64)
        oldest = np.maximum(self.count[envs] - self.cap, 0)
        first = self.episode_start[envs, pos % self.size]
        valid = (~ended[:, 0]) & (pos + n_eff <= count[:, 0] - 1) \
            & (np.maximum(pos - (self.frame_stack - 1), first) >= oldest)
        return n_eff, valid

    def draw(self, batch: int, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(envs, start positions, n_eff) of ``batch`` starts drawn uniformly among the valid ones."""
        kept = np.minimum(self.count, self.cap)
        if kept.sum() < 2:
            raise RuntimeError("the replay buffer holds no transition yet")
        edges = np.cumsum(kept)
        oldest = self.count - kept
        out_e, out_p, out_n = [], [], []
        got = 0
        for _ in range(1000):
            flat = rng.integers(0, edges[-1], 2 * batch)
            e = np.searchsorted(edges, flat, side="right")
            p = oldest[e] + flat - (edges[e] - kept[e])
            n_eff, valid = self._n_step(e, p, n)
            out_e.append(e[valid])
            out_p.append(p[valid])
            out_n.append(n_eff[valid])
            got += int(valid.sum())
            if got >= batch:
                return (np.concatenate(out_e)[:batch], np.concatenate(out_p)[:batch],
                        np.concatenate(out_n)[:batch])
        raise RuntimeError(f"the replay buffer has no {n}-step transition to sample yet")

    def sample(self, batch: int, n: int, gamma: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """A batch: obs, action, reward (n-step, discounted), discount (gamma^n_eff, 0 after a terminal state),
        next_obs."""
        e, p, n_eff = self.draw(batch, n, rng)
        steps = np.arange(n)[None, :]
        inside = steps < n_eff[:, None]
        at = (p[:, None] + np.minimum(steps, n_eff[:, None] - 1)) % self.size
        reward = (np.where(inside, self.rewards[e[:, None], at], 0.0) * gamma ** steps).sum(1)
        end = p + n_eff
        discount = np.where(self.terminal[e, end % self.size], 0.0, gamma ** n_eff)
        return {"obs": self.stacks(e, p), "action": self.actions[e, p % self.size],
                "reward": reward.astype(np.float32), "discount": discount.astype(np.float32),
                "next_obs": self.stacks(e, end)}

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps: the slots in use (torch tensors, which ``save_torch`` writes raw), the counts."""
        used = int(min(self.size, self.count.max()))
        state: dict[str, Any] = {f: torch.from_numpy(np.ascontiguousarray(getattr(self, f)[:, :used]))
                                 for f in _FIELDS}
        state.update(count=self.count.copy(), cap=self.cap, frame_stack=self.frame_stack)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Back to a :meth:`state_dict` (of a buffer made with the same envs, frames and capacity)."""
        frames = state["frames"]
        if int(state["cap"]) != self.cap or frames.shape[0] != self.num_envs \
                or tuple(frames.shape[2:]) != self.frames.shape[2:] or int(state["frame_stack"]) != self.frame_stack:
            raise ValueError("the checkpoint's replay buffer was made for other envs, frames or buffer size")
        self._alloc(max(1, frames.shape[1]), self.frames.shape[2:], self.actions.shape[2])
        for f in _FIELDS:
            getattr(self, f)[:, :frames.shape[1]] = state[f].numpy()
        self.count = np.asarray(state["count"], np.int64).copy()
