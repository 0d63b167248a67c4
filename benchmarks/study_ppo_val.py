"""Which PPO settings improve a good latent BC start within the main job's budget? Chosen on ``val`` episodes only.

    python benchmarks/study_ppo_val.py [--variants base,epochs10_mb64,...] [--seeds 100,101,102]

The main job (PPO in LAOF's residual latent space around the shipped ``laof-bc`` policy, quick preset: 60k agent
steps) does not move its start on held-out episodes at seed 0 (65.3 -> 65.2 on 32 episodes; docs/train.md, "PPO
from a good start"), although each update moves the policy (approx. KL ~0.01, clip fraction ~0.1 per rollout in
bench_train's EnvPool runs). Hypotheses, one variant each, every other setting the preset's (each variant names
all three settings it screens, so its runs stay what they were after the preset took ``std06_epochs10``'s):

  base            the preset until this study (log_std_init -1: std 0.37; n_epochs 4, minibatch 256: 32 gradient
                  steps per 2048-sample rollout)
  epochs10_mb64   MuJoCo PPO's usual sample reuse (10 epochs of minibatch 64: 320 steps per rollout; the encoder
                  is frozen, so an update costs an MLP's) -- too few updates per sample?
  std06           log_std_init -0.5 (std 0.61 of the data's spread along each direction, not 0.37) -- too little
                  exploration to find a better action?
  std06_epochs10  both (added after the first two seeds showed each of them above base)

Agent seeds 100-102 (no benchmark's: bench_train's PPO seeds are 0-4), on the shipped policy (the main job's
start, no benchmark's test policy). Each run's final model and its start (the same model with its action mean zeroed
= the frozen latent BC policy, ``agents.replay.evaluate_run(..., "start")``) are replayed on the same 32 ``val``
episodes (env seeds from ``VAL_SEED`` = EVAL_SEED + 30000: no run's own evaluation and not bench_train's held-out
block, EVAL_SEED + 20000), so the gain is paired episode by episode: ``gain`` = mean(final - start) with its 95 %
bootstrap interval over episodes. Three seeds per variant: a screen for which setting bench_train should run, not a
claim; the claim is bench_train's, on its own test episodes.

Writes ``benchmarks/results/study_ppo_val.json`` once every variant ran; each finished run leaves its record in
``benchmarks/results/study_ppo_val_runs/`` (a fresh clone continues from them).
"""

from __future__ import annotations

import argparse
import dataclasses
import json

import bench_train as bt
import numpy as np
from bench_args import alone, recorded, subset, write_result

import envs  # noqa: F401  (loads EGL before anything imports envpool)
from agents.config import TrainConfig
from envs.rollout import EVAL_SEED
from rl_laof import stats
from rl_laof.pipeline import agent as train
from rl_laof.runs import runs_root

VAL_SEED = EVAL_SEED + 30_000
VAL_EPISODES = 32
SEEDS = (100, 101, 102)
VARIANTS: dict[str, dict] = {
    "base": dict(log_std_init=-1.0, n_epochs=4, batch_size=256),  # the preset's until this study
    "epochs10_mb64": dict(log_std_init=-1.0, n_epochs=10, batch_size=64),
    "std06": dict(log_std_init=-0.5, n_epochs=4, batch_size=256),
    "std06_epochs10": dict(log_std_init=-0.5, n_epochs=10, batch_size=64),  # the preset's since (issue 31)
}
RECORDS = bt.RESULTS.parent / "study_ppo_val_runs"


def variant_config(variant: str, seed: int, threads: int | None = None) -> TrainConfig:
    """The main job's config (latent laof, shipped policy) at agent seed ``seed`` with the variant's changes."""
    return dataclasses.replace(bt.base_config(), seed=seed, threads=threads, **VARIANTS[variant])


def paired_gain(final: list[float], start: list[float]) -> dict:
    """mean(final - start) over the same episodes, with its 95 % bootstrap interval over episodes."""
    diff = np.asarray(final, float) - np.asarray(start, float)
    return {k: round(v, 2) for k, v in stats.interval(diff.tolist()).items() if k in ("mean", "lo", "hi")}


def run_record(variant: str, seed: int, progress: bool, threads: int | None = None) -> dict:
    cfg = variant_config(variant, seed, threads)

    def make() -> dict:
        folder = runs_root() / "study" / "ppo_val" / f"{variant}-s{seed}"
        rep = train(cfg, folder, resume=True, progress=progress)
        val = bt.heldout_eval(folder, VAL_EPISODES, VAL_SEED)  # final and start on the same val episodes
        return {"variant": variant, "seed": seed, "latent_policy": rep.get("latent_policy"),
                "val_start": round(val["start"], 2), "val_final": round(val["ret"], 2),
                "val_start_returns": val["start_returns"], "val_final_returns": val["returns"],
                "gain": paired_gain(val["returns"], val["start_returns"]),
                "spread_final": val["spread"], "spread_start": val["start_spread"],
                "final_8ep": round(rep["final"]["mean"], 2), "sps": rep["steps_per_s"],
                "curve": [{"step": h["step"], "mean": round(h["mean"], 2)} for h in rep["eval_history"]]}

    identity = {"train": {k: v for k, v in cfg.to_dict().items() if k != "threads"}, "val_seed": VAL_SEED,
                "val_episodes": VAL_EPISODES}
    rec = recorded(RECORDS / f"{variant}-s{seed}.json", identity, make)
    print(f"{variant} s{seed}: val start {rec['val_start']:.1f} -> final {rec['val_final']:.1f}, "
          f"gain {rec['gain']['mean']:+.1f} [{rec['gain']['lo']:+.1f}, {rec['gain']['hi']:+.1f}]", flush=True)
    return rec


def summary(records: list[dict]) -> dict:
    """Per variant: the paired gain of each seed, their mean, and the mean final - start over all its episodes."""
    gains = [r["gain"]["mean"] for r in records]
    return {"seeds": [r["seed"] for r in records], "gain_seeds": gains, "gain_mean": round(float(np.mean(gains)), 2),
            "val_start_mean": round(float(np.mean([r["val_start"] for r in records])), 2),
            "val_final_mean": round(float(np.mean([r["val_final"] for r in records])), 2),
            "ratio_final_to_start": round(float(np.mean([r["val_final"] for r in records])
                                                / np.mean([r["val_start"] for r in records])), 3)}


def main() -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated, from " + ", ".join(VARIANTS))
    p.add_argument("--seeds", default=",".join(map(str, SEEDS)), help="agent seeds (default %(default)s)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (not part of a run's identity)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args()
    variants = subset(p, args.variants, VARIANTS, "variants")
    seeds = [s.strip() for s in args.seeds.split(",") if s.strip()]
    if not seeds or not all(s.isdigit() and 100 <= int(s) <= 199 for s in seeds):
        p.error(f"--seeds {args.seeds}: agent seeds in 100-199, comma-separated (bench_train's test seeds are 0-4)")
    seeds = [int(s) for s in seeds]
    if args.threads is not None and args.threads < 1:
        p.error(f"--threads {args.threads}: at least 1")
    records = {v: [run_record(v, s, not args.no_progress, args.threads) for s in seeds] for v in variants}
    result = {"task": bt.TASK, "distractors": bt.LEVEL, "val_seed": VAL_SEED, "val_episodes": VAL_EPISODES,
              "variants": {v: {"summary": summary(recs), "runs": recs} for v, recs in records.items()}}
    if set(VARIANTS) <= set(variants) and set(SEEDS) <= set(seeds):
        write_result("study_ppo_val", result)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    alone(main)
