"""Does estimating flow on a higher-resolution render help the 64-px flow target? (issue 30, the RGB tiers)

    python benchmarks/study_flow_resolution.py [--quick]

LAOF computed flow with RAFT on 512 x 512 frames and resized it. Here: the same episodes rendered at 64, 128 and
256 px (same seeds, so the same states and distractors: the exact flows agree to about 0.1 px after pooling),
TV-L1 (``rl_laof.flow.estimate``) at each size, pooled to 64 px (mean over k x k blocks, vectors / k), scored
against the exact flow of the 64-px render on agent pixels visible in both frames (the LAOF target). Episodes:
cheetah-run at the LAOM level (the latent-quality study's primary cell), eval split, the task's quick PPO expert
with the dataset's action noise (what the study's videos show) and uniform random actions beside it.
Also the cost: pairs per second of each size, as a ratio to 64 px in the same run.

Writes ``benchmarks/results/flow_resolution.json`` (not with --quick). The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from bench_args import alone, write_result

import envs  # noqa: F401  (loads EGL before anything imports envpool)
from agents.expert import Expert
from envs.config import DistractorConfig
from rl_laof import pipeline
from rl_laof.data.collection import load_policy, rollout_episode
from rl_laof.data.config import COLLECT_PRESETS, CollectConfig
from rl_laof.flow import FlowInputs, exact_flow_numba
from rl_laof.flow.estimate import estimate_flow_numba
from rl_laof.presets import from_preset

SIZES = (64, 128, 256)
TASK, LEVEL, ACTION_DIM = "cheetah-run", "laom", 6


def pool_flow(flow: np.ndarray, k: int) -> np.ndarray:
    """(N, 2, kH, kW) flow in pixels of the k-times render -> (N, 2, H, W) in pixels of the base render."""
    n, c, h, w = flow.shape
    return flow.reshape(n, c, h // k, k, w // k, k).mean((3, 5)) / k


def end_point_errors(flow: np.ndarray, truth: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """Per-pixel end-point error of ``flow`` against ``truth`` on the ``pixels`` mask."""
    return np.hypot(flow[:, 0] - truth[:, 0], flow[:, 1] - truth[:, 1])[pixels]


def measure(policy_name: str, episodes: int, steps: int) -> dict:
    base = from_preset(CollectConfig, COLLECT_PRESETS, "quick", task=TASK, distractors=DistractorConfig.parse(LEVEL),
                       episode_steps=steps)
    expert = "random" if policy_name == "random" else pipeline.expert_for(base, progress=False)
    errors: dict[str, list] = {}
    seconds = {s: 0.0 for s in SIZES}
    pairs = 0
    for index in range(episodes):
        ref = None
        for size in SIZES:
            cfg = from_preset(CollectConfig, COLLECT_PRESETS, "quick", task=TASK, image_size=size,
                              distractors=DistractorConfig.parse(LEVEL), episode_steps=steps, expert=expert)
            ep, attrs = rollout_episode(cfg, load_policy(expert, cfg, ACTION_DIM, Expert.load), "eval", index)
            gt, valid = exact_flow_numba(FlowInputs.from_episode(ep, attrs["camera_fovy"]))
            t = time.perf_counter()
            est = estimate_flow_numba(ep["obs"][:-1], ep["obs"][1:])
            seconds[size] += time.perf_counter() - t
            k = size // SIZES[0]
            if ref is None:  # the 64-px render: its exact flow and agent mask are the ground truth
                ref = gt, valid & ep["agent_mask"][:-1].astype(bool)
                pairs += len(gt)

            if size == SIZES[0]:
                errors.setdefault("zero", []).append(end_point_errors(np.zeros_like(gt), *ref))
            else:  # the renders agree: the exact flow of each, pooled, against the 64-px one
                errors.setdefault(f"exact_{size}_pooled", []).append(end_point_errors(pool_flow(gt, k), *ref))
            errors.setdefault(f"tvl1_{size}", []).append(end_point_errors(pool_flow(est, k), *ref))
    out = {f"epe_{k}": round(float(np.concatenate(v).mean()), 4) for k, v in errors.items()}
    for size in SIZES:
        out[f"epe_tvl1_{size}_vs_zero"] = round(out[f"epe_tvl1_{size}"] / out["epe_zero"], 3)
        out[f"pps_tvl1_{size}"] = round(pairs / seconds[size], 1)
        out[f"cost_tvl1_{size}_vs_64"] = round(seconds[size] / seconds[SIZES[0]], 2)
    out["pairs"] = pairs
    return out


def main() -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="one short episode per policy")
    args = p.parse_args()
    episodes, steps = (1, 12) if args.quick else (4, 60)
    estimate_flow_numba(np.zeros((1, 3, 16, 16), np.uint8), np.zeros((1, 3, 16, 16), np.uint8))  # compile
    result: dict = {"task": TASK, "level": LEVEL, "sizes": list(SIZES), "episodes": episodes, "steps": steps,
                    "quick": args.quick, "scored_at": SIZES[0], "pixels": "agent, visible in both frames"}
    for policy_name in ("expert", "random"):
        result[policy_name] = measure(policy_name, episodes, steps)
        print(policy_name, result[policy_name], flush=True)
    if not args.quick:
        write_result("flow_resolution", result)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    alone(main)
