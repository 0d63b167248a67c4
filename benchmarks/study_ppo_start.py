"""What does PPO start from in a latent action space? The latent BC policy's return with Gaussian exploration
noise of several sizes added to its latent actions (PPO's rollouts are drawn so).

    python benchmarks/study_ppo_start.py --agent RUN_DIR [--distractors laom] [--stds 0,0.05,0.1,0.2,0.37]

The agent is an imitation run (``policy.pt``: latent policy + decoder; default: the shipped LAOF latent BC
policy). For each noise std the latent action is mean + std * N(0, I) in the normalised latent space (the
one PPO acts in, [-1, 1]^D, clipped), decoded by the frozen decoder; ``--pcs K`` instead draws the noise
in the K leading principal directions of the policy's own latents on the first rollout, scaled by their
std (noise of the same size as the data's spread, in the directions the data spreads in). Reports the mean
return over ``--episodes`` episodes per std, and the action-space noise each std causes (the std of decoded
actions around the noiseless ones). Writes ``benchmarks/results/study_ppo_start.json`` (one entry per noise
kind: ``all_dims``, ``pcs<K>``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from bench_args import alone

import envs  # noqa: F401  (loads EGL before anything imports envpool)
from envs.rollout import run_episodes
from envs.tasks import get_task
from rl_laof.runs import write_json

RESULTS = Path(__file__).resolve().parent / "results" / "study_ppo_start.json"


def rollout(agent, decoder, venv, std: float, rng: np.random.Generator, basis: np.ndarray | None):
    """(returns of the first episode per env, mean action-space deviation caused by the noise)."""
    n = venv.num_envs
    dev, zs = [], []

    @torch.no_grad()
    def act(obs: np.ndarray) -> np.ndarray:
        z = agent.policy.act(torch.from_numpy(np.ascontiguousarray(obs))).numpy()
        zs.append(z)
        if basis is None:
            noise = rng.normal(0, std, z.shape)
        else:
            noise = rng.normal(0, std, (n, basis.shape[0])) @ basis
        zn = np.clip(z + noise, -1, 1).astype(np.float32)
        a0 = decoder(torch.from_numpy(z)).numpy()
        a = decoder(torch.from_numpy(zn)).numpy()
        dev.append(np.sqrt(((a - a0) ** 2).mean()))
        return np.clip(a, -1, 1)

    returns = run_episodes(venv, act)
    return returns, float(np.mean(dev)), np.concatenate(zs)


def main() -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--agent", default="pretrained/cheetah-run/laof-bc", help="an imitation run folder")
    p.add_argument("--distractors", default="hard")
    p.add_argument("--stds", default="0,0.05,0.1,0.2,0.37")
    p.add_argument("--pcs", type=int, default=0, help="noise in the K leading principal directions (0: all dims)")
    p.add_argument("--episodes", type=int, default=8)
    args = p.parse_args()
    from rl_laof.imitation.policy import load_latent_policy

    agent, meta = load_latent_policy(args.agent)
    ds_cfg = meta["config"]
    venv = envs.make(meta["task"], num_envs=args.episodes, obs="pixels", distractors=args.distractors,
                     image_size=meta["image_size"], frame_stack=ds_cfg["frame_stack"],
                     action_repeat=get_task(meta["task"]).pixel_action_repeat,
                     seed=20_000, backend="envpool")
    rng = np.random.default_rng(0)
    out = {"agent": args.agent, "distractors": args.distractors, "pcs": args.pcs, "rows": []}
    basis = None
    try:
        for std in [float(s) for s in args.stds.split(",")]:
            r, dev, zs = rollout(agent, agent.decoder, venv, std, rng, basis)
            if args.pcs and basis is None:  # from the noiseless first rollout's latents
                zc = zs - zs.mean(0)
                _, s, vt = np.linalg.svd(zc, full_matrices=False)
                basis = vt[: args.pcs] * (s[: args.pcs, None] / np.sqrt(len(zc)))  # scaled by the data's spread
                out["pc_std"] = (s[: args.pcs] / np.sqrt(len(zc))).round(4).tolist()
                out["pc_share"] = float((s[: args.pcs] ** 2).sum() / (s ** 2).sum())
            row = {"std": std, "return": round(float(r.mean()), 1), "return_std": round(float(r.std()), 1),
                   "action_noise": round(dev, 3)}
            out["rows"].append(row)
            print(json.dumps(row), flush=True)
    finally:
        venv.close()
    # one entry per noise kind ("all_dims", "pcs<K>"), beside the others already in the file
    saved = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    saved[f"pcs{args.pcs}" if args.pcs else "all_dims"] = out
    write_json(RESULTS, saved)
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    alone(main)
