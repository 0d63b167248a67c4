"""stable-baselines3 agents on pixels: our pixel encoder as their features extractor (so a pretrained latent
policy's weights load into it), their network arguments, and how they start from what was pretrained.

    features    PixelFeatures = rl_laof.models.policy.PixelEncoder behind SB3's interface
    init        latent BC policy -> agent encoder + actor MLP + mean; LAFP -> encoder, mean 0, std 1;
                a residual agent (agents.latent_env: ResidualLatentVecEnv, ResidualActionVecEnv) -> mean 0;
                SOF skills -> the actor distilled from the skill prior
    fine-tuning a pretrained start: a frozen encoder, a critic warm-up (the actor held for the first steps)
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from agents.config import TrainConfig
from agents.skill_env import SkillVecEnv
from rl_laof.models.policy import BCPolicy, FlowPolicy, PixelEncoder


class PixelFeatures(BaseFeaturesExtractor):
    """SB3 features extractor over uint8 frame stacks (SB3 hands them over as float 0..255)."""

    def __init__(self, observation_space: gym.spaces.Box, frame_stack: int, features: int, width: int,
                 kind: str = "halving"):
        super().__init__(observation_space, features)
        self.encoder = PixelEncoder(frame_stack, features, width, observation_space.shape[-1], kind)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.encoder(obs / 255.0 - 0.5)  # = rl_laof.models.lam_model.to_float on the uint8 values


def policy_kwargs(cfg: TrainConfig, encoder: dict[str, Any] | None = None) -> dict[str, Any]:
    """SB3 policy arguments for ``cfg``; ``encoder`` (features, width, kind) sizes the pixel encoder like the
    latent policy it starts from (default: the config's features and width)."""
    arch = [cfg.hidden, cfg.hidden]
    kw: dict[str, Any] = dict(activation_fn=nn.SiLU)
    if cfg.algo in ("sac", "td3", "tqc"):
        kw["net_arch"] = arch
    else:
        kw["net_arch"] = dict(pi=arch, vf=arch)
    if cfg.algo not in ("td3",):
        kw["log_std_init"] = 0.0 if (cfg.latent != "none" and cfg.policy == "lafp") else cfg.log_std_init
    if cfg.obs == "pixels" and not cfg.on_features:  # a residual agent observes the frozen policy's features
        kw.update(features_extractor_class=PixelFeatures, normalize_images=False,
                  features_extractor_kwargs=dict(frame_stack=cfg.frame_stack,
                                                 **(encoder or dict(features=cfg.features, width=cfg.width))))
        if cfg.algo in ("sac", "td3", "tqc"):
            kw["share_features_extractor"] = False
    return kw


def init_from_latent_policy(model, policy: BCPolicy | FlowPolicy) -> list[str]:
    """Copy the pretrained latent policy into an SB3 actor-critic; returns what was copied.

    BC policy: encoder -> features extractor, head = [Linear, SiLU, Linear, SiLU, Linear] -> the actor MLP and
    the action mean, so the agent's initial mean action is the BC prediction. Flow policy (action = its source
    noise): encoder only; the mean is set to 0 (with log std 0: the agent starts as the flow policy's prior).
    """
    pol = model.policy
    copied = []
    # every pixel extractor: shared or actor / critic ones, and off-policy critics' targets (kept equal)
    extractors = [m for m in pol.modules() if isinstance(m, PixelFeatures)]
    for ext in extractors:
        ext.encoder.load_state_dict(policy.encoder.state_dict())
    if extractors:
        copied.append("encoder")
    recurrent = hasattr(pol, "lstm_actor")
    if isinstance(policy, BCPolicy) and hasattr(pol, "mlp_extractor") and not recurrent:
        head, pnet = policy.head, pol.mlp_extractor.policy_net
        if [type(m) for m in head[:-1]] == [type(m) for m in pnet] and \
                all(a.weight.shape == b.weight.shape for a, b in zip(head[:-1:2], pnet[::2], strict=True)):
            for a, b in zip(head[:-1:2], pnet[::2], strict=True):
                b.load_state_dict(a.state_dict())
            pol.action_net.load_state_dict(head[-1].state_dict())
            copied += ["actor", "mean"]
    elif isinstance(policy, FlowPolicy) and hasattr(pol, "action_net"):
        with torch.no_grad():
            pol.action_net.weight.zero_()
            pol.action_net.bias.zero_()
        copied.append("mean=0")
    return copied


def zero_mean(model) -> list[str]:
    """Set an actor-critic's action mean to exactly 0 (a residual agent starts as the policy it corrects)."""
    net = getattr(model.policy, "action_net", None)
    if net is None:
        return []
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
    return ["mean=0"]


def freeze_encoders(model) -> list[str]:
    """Hold every pixel encoder of ``model`` fixed (no gradient, so the optimiser leaves it alone): PPO then
    trains its heads on the pretrained features. Not stored in a checkpoint: apply again after loading."""
    extractors = [m for m in model.policy.modules() if isinstance(m, PixelFeatures)]
    for ext in extractors:
        ext.requires_grad_(False)
    return ["encoder frozen"] if extractors else []


def actor_parameters(model) -> list[nn.Parameter]:
    """The parameters of an on-policy actor-critic that shape the action distribution only: the actor MLP,
    the action head, the log std (and the actor LSTM). The critic and shared encoder are not among them."""
    pol = model.policy
    params: list[nn.Parameter] = []
    for name in ("action_net", "lstm_actor"):
        if getattr(pol, name, None) is not None:
            params += list(getattr(pol, name).parameters())
    extractor = getattr(pol, "mlp_extractor", None)
    if extractor is not None:
        params += list(extractor.policy_net.parameters())
    if isinstance(getattr(pol, "log_std", None), nn.Parameter):
        params.append(pol.log_std)
    return params


class CriticWarmup(BaseCallback):
    """For the first ``steps`` agent steps only the critic learns: the actor's parameters take no gradient in
    those updates, so the pretrained policy is not pushed around by advantages from an untrained value
    function. Decided from ``num_timesteps`` before each update, so a resumed run does the same."""

    def __init__(self, steps: int):
        super().__init__()
        self.steps = steps

    def _on_rollout_end(self) -> None:
        hold = self.num_timesteps <= self.steps
        for p in actor_parameters(self.model):
            p.requires_grad_(not hold)

    def _on_step(self) -> bool:
        return True


def init_from_skill_prior(model, skill_env, obs: np.ndarray, steps: int, seed: int = 0,
                          batch_size: int = 64) -> list[str]:
    """Start a skill-level agent as the SOF skill prior: distil the prior's top-k samples at dataset frames
    ``obs`` (uint8 frame stacks of the agent's task) into the agent's actor by maximum likelihood.

    The agent's token distribution is factorised over the n tokens while the prior's is autoregressive, so
    the agent starts at the closest factorised fit; a continuous agent fits its mean to the sampled codes
    (its log std stays put). Returns what was initialised."""
    assert isinstance(skill_env, SkillVecEnv)
    pol = model.policy
    skills = skill_env.skills
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        x = torch.from_numpy(obs)
        task = torch.full((len(x),), skills.task_id, dtype=torch.long)
        tokens = torch.cat([skills.prior.sample(x[i:i + 256], task[i:i + 256], generator=gen)
                            for i in range(0, len(x), 256)])
    if skill_env.action == "tokens":
        targets = tokens
    else:
        targets = skills.tokenizer.fsq.indices_to_codes(tokens).flatten(1)
    log_std = getattr(pol, "log_std", None)
    params = [p for p in pol.parameters() if p is not log_std]
    opt = torch.optim.Adam(params, 3e-4)
    rng = np.random.default_rng(seed)
    pol.set_training_mode(True)
    for _ in range(steps):
        idx = rng.integers(0, len(x), batch_size)
        dist = pol.get_distribution(x[idx].float())
        loss = -dist.log_prob(targets[idx]).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    pol.set_training_mode(False)
    return [f"actor<-prior ({steps} steps, final nll {float(loss.detach()):.2f})"]
