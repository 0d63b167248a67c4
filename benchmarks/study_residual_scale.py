"""How far PPO's initial exploration moves the executed actions in the latent residual space and in the raw-action
residual space (``action_residual``), per initial std: the scale that makes the two explore alike.

    python benchmarks/study_residual_scale.py [--log-std -1,-0.5] [--states 1024]

The frozen LAOF latent BC policy of the main job (the shipped ``laof-bc``) acts on its own states (``--states``
frame stacks from 8 envs of the main job's env, the policy acting with no residual); on each state, PPO's initial
Gaussian (mean 0, std e^log_std) is sampled once per space:

- latent: a = clip(decode(z_BC + sum_i u_i sigma_i v_i)), u ~ N(0, std^2 I_8) clipped to [-3, 3]
  (``agents.latent_env.ResidualLatentVecEnv``);
- raw: a = clip(clip(a0) + s u), u ~ N(0, std^2 I_6) clipped to [-3, 3] (``ResidualActionVecEnv``).

Reported per std: the RMS deviation of the executed action from the policy's own (clipped) one in the latent space,
the raw space's at the configured ``action_residual_scale`` and at a grid of scales, and the scale at which the raw
space's matches the latent's (linear interpolation on the grid). Writes
``benchmarks/results/study_residual_scale.json``.
"""

from __future__ import annotations

import argparse
import json

import bench_train as bt
import numpy as np
import torch
from bench_args import alone, write_result

import envs  # noqa: F401  (loads EGL before anything imports envpool)
from agents.latent_env import ACTION_RESIDUAL_BOUND, RESIDUAL_BOUND, stored_pca
from agents.training import load_latent_space, make_env
from rl_laof.pipeline import latent_policy

SCALES = np.round(np.arange(0.2, 0.81, 0.05), 2)


def own_states(cfg, policy, meta, count: int) -> np.ndarray:
    """``count`` pixel observations the frozen policy meets acting alone in the main job's env (residual 0)."""
    venv = make_env(cfg, cfg.num_envs, cfg.seed + 321, policy, meta)
    try:
        venv.reset()
        frames = [venv.pixels]
        zeros = np.zeros((cfg.num_envs, *venv.action_space.shape), np.float32)
        while sum(len(f) for f in frames) < count:
            venv.step(zeros)
            frames.append(venv.pixels)
        return np.concatenate(frames)[:count]
    finally:
        venv.close()


@torch.no_grad()
def deviations(policy, pca, obs: np.ndarray, log_std: float, seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    std = float(np.exp(log_std))
    feats = policy.policy.encoder(torch.from_numpy(np.ascontiguousarray(obs)))
    z0 = policy.policy.head(feats)
    a0 = policy.decoder(z0).clamp(-1, 1)
    u_lat = (torch.randn(len(obs), pca.k, generator=gen) * std).clamp(-RESIDUAL_BOUND, RESIDUAL_BOUND)
    a_lat = policy.decoder(z0 + pca.offset(u_lat)).clamp(-1, 1)
    u_raw = (torch.randn(a0.shape, generator=gen) * std).clamp(-ACTION_RESIDUAL_BOUND, ACTION_RESIDUAL_BOUND)

    def rms(a: torch.Tensor) -> float:
        return round(float((a - a0).pow(2).mean().sqrt()), 4)

    raw = {f"{s:g}": rms((a0 + float(s) * u_raw).clamp(-1, 1)) for s in SCALES}
    latent = rms(a_lat)
    values = np.array(list(raw.values()))
    match = float(np.interp(latent, values, SCALES)) if np.all(np.diff(values) > 0) else None
    return {"std": round(std, 4), "latent": latent, "raw_at_scale": raw,
            "raw_at_configured": rms((a0 + bt.base_config().action_residual_scale * u_raw).clamp(-1, 1)),
            "matching_scale": None if match is None else round(match, 3)}


def main() -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--log-std", default="-1,-0.5", help="comma-separated initial log stds (default %(default)s)")
    p.add_argument("--states", type=int, default=1024)
    args = p.parse_args()
    try:
        log_stds = [float(s) for s in args.log_std.split(",")]
    except ValueError:
        p.error(f"--log-std {args.log_std}: comma-separated numbers, e.g. -1,-0.5")
    if not all(-5 <= s <= 2 for s in log_stds):
        p.error(f"--log-std {args.log_std}: each in [-5, 2] (std e^-5 to e^2)")
    cfg = bt.base_config()
    if args.states < cfg.num_envs:
        p.error(f"--states {args.states}: at least {cfg.num_envs} (one step of the {cfg.num_envs} envs)")
    folder = latent_policy(cfg, progress=False)
    policy, meta = load_latent_space(cfg, folder)
    pca = stored_pca(meta, cfg.residual_pcs)
    obs = own_states(cfg, policy, meta, args.states)
    result = {"latent_policy": str(folder), "states": len(obs), "residual_pcs": cfg.residual_pcs,
              "action_residual_scale": cfg.action_residual_scale,
              "by_log_std": {f"{s:g}": deviations(policy, pca, obs, s) for s in log_stds}}
    write_result("study_residual_scale", result)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    alone(main)
