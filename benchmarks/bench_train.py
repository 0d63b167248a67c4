"""PPO on pixels with distractors: raw actions vs LAPO's and LAOF's latent action spaces, at equal budgets.

    python benchmarks/bench_train.py [--quick]

cheetah-run with hard distractors, the ``quick`` train preset (20k agent steps at action repeat 4, 8 envs,
the same seed; ``--quick``: 4096 steps). ``--latent lapo`` / ``laof`` act through the shipped latent
policies and decoders (``artifacts/``; built when missing), starting from latent BC; ``none`` is PPO on
raw actions with the same encoder. Reported: the final evaluation return (8 held-out episodes) and the
best periodic evaluation, and training throughput in agent steps/s (rollouts and updates; evaluation
excluded), the runs one after another in this process. Targets: sps_laof >= 0.8 x sps_none;
ret_laof >= ret_none and ret_laof >= ret_lapo. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import envs  # noqa: E402,F401  (loads EGL before anything imports envpool)
from rl_laof.artifacts import runs_root  # noqa: E402
from rl_laof.config import TRAIN_PRESETS, TrainConfig, from_preset  # noqa: E402
from rl_laof.train import train  # noqa: E402

TASK = "cheetah-run"
LATENTS = ("none", "lapo", "laof")
QUICK = dict(total_steps=4096, eval_every=2048, checkpoint_every=2048)


def main() -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="4096 agent steps per run instead of 20k")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args()
    t0 = time.perf_counter()
    base = from_preset(TrainConfig, TRAIN_PRESETS, "quick", task=TASK, **(QUICK if args.quick else {}))
    out_root = runs_root() / "bench" / "train" / ("quick" if args.quick else "full")
    result: dict = {"task": TASK, "quick": args.quick, "total_steps": base.total_steps, "seed": base.seed}
    for latent in LATENTS:
        cfg = dataclasses.replace(base, latent=latent)
        rep = train(cfg, out_root / latent, resume=True, progress=not args.no_progress)
        result[f"ret_{latent}"] = round(rep["final"]["mean"], 1)
        result[f"ret_std_{latent}"] = round(rep["final"]["std"], 1)
        result[f"best_eval_{latent}"] = round(rep["best_eval"]["mean"], 1) if rep["best_eval"] else None
        result[f"first_eval_{latent}"] = round(rep["eval_history"][0]["mean"], 1) if rep["eval_history"] else None
        result[f"sps_{latent}"] = rep["steps_per_s"]
    result["sps_laof_vs_none"] = round(result["sps_laof"] / result["sps_none"], 3)
    result["targets"] = {
        "sps_laof_ge_0.8_none": result["sps_laof_vs_none"] >= 0.8,
        "ret_laof_ge_none": result["ret_laof"] >= result["ret_none"],
        "ret_laof_ge_lapo": result["ret_laof"] >= result["ret_lapo"],
    }
    result["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
