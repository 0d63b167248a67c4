"""A latent action space for any SB3 VecEnv: the agent acts with latents, a frozen decoder turns them into
environment actions.

    mode "latent"  the action is a normalised latent z in [-1, 1]^D (the latent normaliser's range:
                   every training latent lies inside it); env action = decoder(z)
    mode "noise"   the action is the source noise z0 of the frozen LAFP flow policy, in [-3, 3]^D
                   (+-3 sigma of its N(0, I) prior); z = ODE(z0 | current observation), then decoder(z)

Actions outside the bounds are clipped before decoding; ``last_latents`` / ``last_env_actions`` hold what
the decoder saw and gave on the last step. Everything here is frozen and runs without gradients.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from rl_laof.models.policy import ActionDecoder, FlowPolicy

LATENT_MODES = ("latent", "noise")
NOISE_BOUND = 3.0


class LatentActionVecEnv(VecEnvWrapper):
    def __init__(self, venv: VecEnv, decoder: ActionDecoder, latent_dim: int, mode: str = "latent",
                 flow_policy: FlowPolicy | None = None):
        if mode not in LATENT_MODES:
            raise ValueError(f"Unknown latent action mode {mode!r}; valid: {', '.join(LATENT_MODES)}.")
        if mode == "noise" and flow_policy is None:
            raise ValueError("mode 'noise' needs the frozen LAFP flow policy (an imitation run with --policy lafp).")
        bound = NOISE_BOUND if mode == "noise" else 1.0
        space = gym.spaces.Box(-bound, bound, shape=(latent_dim,), dtype=np.float32)
        super().__init__(venv, action_space=space)
        self.decoder = decoder.eval().requires_grad_(False)
        self.flow_policy = flow_policy.eval().requires_grad_(False) if flow_policy is not None else None
        self.mode = mode
        self._obs: np.ndarray | None = None
        self.last_latents: np.ndarray | None = None
        self.last_env_actions: np.ndarray | None = None

    @torch.no_grad()
    def decode(self, actions: np.ndarray, obs: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """(latents fed to the decoder, environment actions) for agent actions given the current obs."""
        a = torch.from_numpy(np.clip(np.asarray(actions, np.float32).reshape(self.num_envs, -1),
                                     self.action_space.low, self.action_space.high))
        if self.mode == "noise":
            feats = self.flow_policy.encoder(torch.from_numpy(np.ascontiguousarray(obs)))
            a = self.flow_policy.sample_from(feats, a, 0.0)
        return a.numpy(), self.decoder(a).numpy()

    def reset(self):
        self._obs = self.venv.reset()
        return self._obs

    def step_async(self, actions: np.ndarray) -> None:
        self.last_latents, self.last_env_actions = self.decode(actions, self._obs)
        self.venv.step_async(self.last_env_actions)

    def step_wait(self):
        obs, rewards, dones, infos = self.venv.step_wait()
        self._obs = obs
        return obs, rewards, dones, infos
