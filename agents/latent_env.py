"""A latent action space for any SB3 VecEnv: the agent acts with latents, a frozen decoder turns them into
environment actions.

    mode "latent"  the action is a normalised latent z in [-1, 1]^D (the latent normaliser's range:
                   every training latent lies inside it); env action = decoder(z)
    mode "noise"   the action is the source noise z0 of the frozen LAFP flow policy, in [-3, 3]^D
                   (+-3 sigma of its N(0, I) prior); z = ODE(z0 | current observation), then decoder(z)

    ResidualLatentVecEnv
                   the frozen latent BC policy acts; the agent observes that policy's pixel features and
                   adds a residual u in [-3, 3]^k along the k leading principal directions of the training
                   latents, in units of the data's spread along each: z = pi_BC(o) + sum_i u_i std_i v_i,
                   env action = decoder(z). u = 0 is the latent BC policy exactly.

    ResidualActionVecEnv
                   the same start in the raw action space: a frozen pixel policy gives an action a0 (the
                   decoded latent BC policy, or BC on the labelled transitions), the agent observes its
                   features and adds u in [-3, 3]^A: env action = clip(clip(a0) + scale u). u = 0 is the
                   policy exactly: only the action space differs from the latent residual.

Actions outside the bounds are clipped before decoding; ``last_latents`` / ``last_env_actions`` hold what
the decoder saw and gave on the last step. Everything here is frozen and runs without gradients.

Why a residual in a few directions: PPO's Gaussian exploration over all D latent dimensions puts most of
its noise where the data never goes and the decoder extrapolates (``benchmarks/study_ppo_start.py``: at
std 0.37 on 128 dims the decoded actions deviate by 0.95 RMS, near-random rollouts); along the data's
leading directions the same deviation needs a 2.5x larger step. The frozen encoder also makes PPO an MLP
over features: no convolution is trained, which is most of a pixel agent's update time on a CPU.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from rl_laof.models.policy import ActionDecoder, BCPolicy, FlowPolicy, LatentPCA

LATENT_MODES = ("latent", "noise")
NOISE_BOUND = 3.0
RESIDUAL_BOUND = 3.0  # the residual's range along each principal direction, in units of the data's spread
ACTION_RESIDUAL_BOUND = 3.0  # an action residual's range per action dimension, in units of its scale


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


def stored_pca(meta: dict, k: int, where: str = "the latent policy") -> LatentPCA:
    """The ``k`` leading principal directions stored in an imitation run's ``policy.pt`` (``meta``)."""
    state = meta.get("latent_pca")
    if state is None:
        raise ValueError(f"{where} stores no principal directions of its latents (made before they were kept): "
                         "rebuild it with python -m rl_laof.imitation, or pass --set residual_pcs=0")
    stored = state["components"].shape[0]
    if not 1 <= k <= stored:
        raise ValueError(f"residual_pcs={k}: {where} stores {stored} principal directions; use 1..{stored}")
    pca = LatentPCA(state["components"].shape[1], stored)
    pca.load_state_dict(state)
    return pca.leading(k)


class _FeaturesVecEnv(VecEnvWrapper):
    """A frozen pixel policy acts and the agent, observing that policy's encoder features (float32, in [-1, 1]: the
    encoder ends in tanh), corrects it with ``action_space``'s actions: the residual spaces' common part.
    Subclasses say what the policy gives at the current observations (``_base_of``) and how an agent's action
    changes it (``decode``)."""

    def __init__(self, venv: VecEnv, policy: BCPolicy, action_space: gym.spaces.Box):
        features = policy.encoder.norm.normalized_shape[0]
        obs_space = gym.spaces.Box(-1.0, 1.0, shape=(features,), dtype=np.float32)
        super().__init__(venv, observation_space=obs_space, action_space=action_space)
        self.policy = policy.eval().requires_grad_(False)
        self._base: torch.Tensor | None = None  # what the policy gives at the current observations
        self.pixels: np.ndarray | None = None  # the current pixel observations (what the features are of)
        self.last_latents: np.ndarray | None = None
        self.last_env_actions: np.ndarray | None = None

    def _base_of(self, feats: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def decode(self, actions: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
        raise NotImplementedError

    @torch.no_grad()
    def _observe(self, obs: np.ndarray) -> np.ndarray:
        self.pixels = obs
        feats = self.policy.encoder(torch.from_numpy(np.ascontiguousarray(obs)))
        self._base = self._base_of(feats)
        return feats.numpy()

    def _residual(self, actions: np.ndarray, bound: float) -> torch.Tensor:
        return torch.from_numpy(np.clip(np.asarray(actions, np.float32).reshape(self.num_envs, -1), -bound, bound))

    def reset(self):
        return self._observe(self.venv.reset())

    def step_async(self, actions: np.ndarray) -> None:
        self.last_latents, self.last_env_actions = self.decode(actions)
        self.venv.step_async(self.last_env_actions)

    def step_wait(self):
        obs, rewards, dones, infos = self.venv.step_wait()
        ended = [i for i, info in enumerate(infos) if "terminal_observation" in info]
        if ended:  # SB3 bootstraps truncated episodes from terminal_observation: give it features (one batch)
            with torch.no_grad():
                feats = self.policy.encoder(torch.from_numpy(np.stack([infos[i]["terminal_observation"]
                                                                       for i in ended]))).numpy()
            for i, f in zip(ended, feats, strict=True):
                infos[i]["terminal_observation"] = f
        return self._observe(obs), rewards, dones, infos


class ResidualLatentVecEnv(_FeaturesVecEnv):
    """The frozen latent BC policy plus an agent's residual in ``pca``'s directions (see the module docstring)."""

    def __init__(self, venv: VecEnv, policy: BCPolicy, decoder: ActionDecoder, pca: LatentPCA):
        if not isinstance(policy, BCPolicy):
            raise ValueError("a residual agent acts around a latent BC policy (an imitation run with --policy bc)")
        space = gym.spaces.Box(-RESIDUAL_BOUND, RESIDUAL_BOUND, shape=(pca.k,), dtype=np.float32)
        super().__init__(venv, policy, space)
        self.decoder = decoder.eval().requires_grad_(False)
        self.pca = pca.eval()

    def _base_of(self, feats: torch.Tensor) -> torch.Tensor:
        return self.policy.head(feats)  # the BC policy's latents

    @torch.no_grad()
    def decode(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        z = self._base + self.pca.offset(self._residual(actions, RESIDUAL_BOUND))
        return z.numpy(), self.decoder(z).numpy()


class ResidualActionVecEnv(_FeaturesVecEnv):
    """A frozen pixel policy that gives actions — a latent BC policy and its decoder, or BC on the labels
    (``decoder`` None) — plus an agent's residual u in [-3, 3]^A in the raw action space:
    env action = clip(clip(a0) + scale u) with a0 the policy's action at o, clipped to the action bounds (what
    the env executes of a0 anyway). Clipping a0 first keeps every residual effective where the policy's action
    lies outside the bounds; u = 0 executes exactly the policy's action. ``last_latents``: the latent policy's
    latents (None without a decoder)."""

    def __init__(self, venv: VecEnv, policy: BCPolicy, decoder: ActionDecoder | None, scale: float):
        if not isinstance(policy, BCPolicy):
            raise ValueError("an action residual acts around a BC policy (an imitation run with --policy bc)")
        out = decoder.net[-1].out_features if decoder is not None else policy.out_dim
        if out != venv.action_space.shape[0]:
            raise ValueError(f"the policy gives {out}-d actions, the env takes {venv.action_space.shape[0]}")
        space = gym.spaces.Box(-ACTION_RESIDUAL_BOUND, ACTION_RESIDUAL_BOUND, shape=venv.action_space.shape,
                               dtype=np.float32)
        super().__init__(venv, policy, space)
        self.decoder = decoder.eval().requires_grad_(False) if decoder is not None else None
        self.scale = float(scale)
        self.low = torch.as_tensor(venv.action_space.low, dtype=torch.float32)
        self.high = torch.as_tensor(venv.action_space.high, dtype=torch.float32)
        self._latents: torch.Tensor | None = None

    def _base_of(self, feats: torch.Tensor) -> torch.Tensor:
        out = self.policy.head(feats)
        self._latents = out if self.decoder is not None else None
        return torch.clamp(self.decoder(out) if self.decoder is not None else out, self.low, self.high)

    @torch.no_grad()
    def decode(self, actions: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
        a = torch.clamp(self._base + self.scale * self._residual(actions, ACTION_RESIDUAL_BOUND), self.low, self.high)
        return (self._latents.numpy() if self._latents is not None else None), a.numpy()
