"""A skill action space for any SB3 VecEnv: the agent picks a SOF skill, the frozen translator executes it.

One agent step = one skill = H environment steps (SOF / QueST chunks; SPiRL-style skill RL):

    action "tokens"      n FSQ token indices (MultiDiscrete, n x codebook size)
    action "continuous"  the n x q pre-quantisation code, bounded to the FSQ code range (Box)
    codes -> translator(codes or decoded flow, o_t) -> a_t .. a_{t+H-1}, executed open loop

The chunk's reward is the sum of its H rewards (train with discount gamma^H). An env whose episode ends
inside a chunk ends the chunk there: its reward stops at the end, ``done`` is set and its ``info`` (with
``terminal_observation`` and VecMonitor's ``episode``) is the one of the last step. The vector env cannot
pause one env, so for the rest of the chunk that env, already reset, gets zero actions whose rewards are
not credited to any decision (with H dividing the episode length this never happens). With ``kl_coef`` > 0
(tokens only) the chunk reward is lowered by kl_coef x (log pi(tokens | o_t) - log prior(tokens | o_t, task)),
a one-sample estimate of KL(pi || prior) (SPiRL); ``agent_log_prob`` must then be set to the agent's
log-density.
"""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from agents.config import SKILL_ACTIONS
from rl_laof.skills.policy import SkillPolicy


class SkillVecEnv(VecEnvWrapper):
    def __init__(self, venv: VecEnv, skills: SkillPolicy, action: str = "tokens", kl_coef: float = 0.0):
        if action not in SKILL_ACTIONS:
            raise ValueError(f"Unknown skill action {action!r}; valid: {', '.join(SKILL_ACTIONS)}.")
        if kl_coef > 0 and action != "tokens":
            raise ValueError("the KL term needs the prior's density over the actions: use action 'tokens'.")
        cfg = skills.cfg
        self.fsq = skills.tokenizer.fsq
        self.n, self.q, self.chunk = cfg.tokens, self.fsq.dim, cfg.chunk
        if action == "tokens":
            space: gym.Space = gym.spaces.MultiDiscrete([self.fsq.codebook_size] * self.n)
        else:
            lo, hi = (b.numpy().astype(np.float32) for b in self.fsq.code_bounds())
            space = gym.spaces.Box(np.tile(lo, self.n), np.tile(hi, self.n), dtype=np.float32)
        super().__init__(venv, action_space=space)
        self.skills, self.action, self.kl_coef = skills, action, kl_coef
        self.agent_log_prob: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
        self._obs: np.ndarray | None = None
        self._actions: np.ndarray | None = None
        self.last_chunk: np.ndarray | None = None  # (N, H, A) the env actions of the last skill
        self.last_kl: np.ndarray | None = None

    def codes(self, actions: np.ndarray) -> torch.Tensor:
        """(N, n, q) FSQ codes of agent actions (continuous ones clipped to the code range)."""
        if self.action == "tokens":
            return self.fsq.indices_to_codes(torch.as_tensor(np.asarray(actions, np.int64).reshape(-1, self.n)))
        a = np.clip(np.asarray(actions, np.float32).reshape(self.num_envs, -1), self.action_space.low,
                    self.action_space.high)
        return torch.from_numpy(a).view(-1, self.n, self.q)

    def reset(self):
        self._obs = self.venv.reset()
        return self._obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self):
        obs0 = torch.from_numpy(np.ascontiguousarray(self._obs))
        chunk = self.skills.decode(self.codes(self._actions), obs0)
        self.last_chunk = chunk
        n = self.num_envs
        total = np.zeros(n, np.float32)
        ended = np.zeros(n, bool)
        infos: list[dict] = [{} for _ in range(n)]
        obs = self._obs
        for k in range(self.chunk):
            a = chunk[:, k].copy()
            a[ended] = 0.0
            obs, rewards, dones, step_infos = self.venv.step(a)
            live = ~ended
            total[live] += rewards[live]
            for i in np.flatnonzero(live):
                infos[i] = step_infos[i]
            ended |= dones
        if self.kl_coef > 0:
            if self.agent_log_prob is None:
                raise RuntimeError("kl_coef > 0: set SkillVecEnv.agent_log_prob to the agent's log-density")
            tokens = torch.as_tensor(np.asarray(self._actions, np.int64).reshape(n, self.n))
            task = torch.full((n,), self.skills.task_id, dtype=torch.long)
            with torch.no_grad():
                log_prior = self.skills.prior.log_prob(obs0, task, tokens).numpy()
            self.last_kl = self.agent_log_prob(self._obs, self._actions) - log_prior
            total -= self.kl_coef * self.last_kl.astype(np.float32)
        self._obs = obs
        return obs, total, ended, infos
