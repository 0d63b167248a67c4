"""The main job, measured: PPO on pixels with distractors in raw actions and in LAPO's / LAOF's latent action
spaces, at equal budgets, over seeds.

    python benchmarks/bench_train.py [--quick] [--seeds 3] [--latents none,lapo,laof] [--latents drq]

cheetah-run with the main job's distractors, the ``quick`` train preset (20k agent steps at action repeat 4,
8 envs; ``--quick``: 4096 steps, 2 seeds: a smoke run). ``lapo`` / ``laof`` act through the shipped latent
policies and decoders (``pretrained/``; built when missing) and start from latent BC; ``none`` is PPO on raw
actions with the same encoder. Seeds vary PPO (its initialisation where it has one, exploration, the env
seeds); the latent policy it starts from is the shipped one, as in the main job. ``drq`` (not a default row) is
the pixel baseline a user would pick instead, DrQ-v2 (``--algo drq --latent none``: its CPU preset,
``agents.config.DrQConfig``), at the same env, frames and seeds.

Reported per latent (mean over seeds and its 95 % bootstrap interval, ``rl_laof.stats``): ``ret_*`` the final
evaluation (8 episodes), ``first_eval_*`` the evaluation at step 0 (the policy PPO starts from), ``best_*``,
and ``sps_*`` training throughput in agent steps/s (rollouts and updates; evaluations excluded).
``sps_env_only``: the same pixel env (8 envs, frame stack, distractors) stepped with random actions and
nothing else, measured in this process before the runs. Targets: ``ret_laof >= 1.25 x first_eval_laof``
and ``ret_laof > ret_none``, each only where the intervals separate; ``sps_laof >= 0.7 x sps_env_only``.
Writes ``benchmarks/results/train.json`` (a full run); the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
from bench_args import seed_count, subset

import envs  # noqa: F401  (loads EGL before anything imports envpool)
from agents.config import TRAIN_PRESETS, TrainConfig
from rl_laof import stats
from rl_laof.pipeline import agent as train
from rl_laof.presets import from_preset
from rl_laof.runs import atomic_path, runs_root

TASK = "cheetah-run"
LATENTS = ("none", "lapo", "laof")  # the default rows
ROWS = {"none": {}, "lapo": {}, "laof": {}, "drq": dict(algo="drq", latent="none")}  # row -> config changes
QUICK = dict(total_steps=4096, eval_every=2048, checkpoint_every=2048)
RESULTS = Path(__file__).resolve().parent / "results" / "train.json"


def env_only_sps(cfg: TrainConfig, steps: int = 2048) -> float:
    """Agent steps/s of the training env alone: the same EnvPool pixel env, random actions, no agent."""
    from agents.training import make_env

    venv = make_env(cfg, cfg.num_envs, cfg.seed + 123)
    try:
        venv.reset()
        rng = np.random.default_rng(0)
        shape = (cfg.num_envs, *venv.action_space.shape)
        for _ in range(16):  # warm-up
            venv.step(rng.uniform(-1, 1, shape).astype(np.float32))
        t0 = time.perf_counter()
        for _ in range(steps // cfg.num_envs):
            venv.step(rng.uniform(-1, 1, shape).astype(np.float32))
        return steps / (time.perf_counter() - t0)
    finally:
        venv.close()


def main() -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a smoke run: 4096 agent steps per run, 2 seeds")
    p.add_argument("--seeds", type=int, default=None, help="PPO seeds per latent (default 3; --quick 2)")
    p.add_argument("--latents", default=",".join(LATENTS),
                   help="comma-separated rows, from none, lapo, laof and drq (DrQ-v2 on raw actions)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args()
    latents = subset(p, args.latents, ROWS, "latents")
    seeds = seed_count(p, args.seeds, args.quick)
    t0 = time.perf_counter()
    base = from_preset(TrainConfig, TRAIN_PRESETS, "quick", task=TASK, **(QUICK if args.quick else {}))
    out_root = runs_root() / "bench" / "train" / ("quick" if args.quick else "full")
    result: dict = {"task": TASK, "quick": args.quick, "total_steps": base.total_steps, "seeds": seeds,
                    "distractors": base.distractors, "num_envs": base.num_envs}
    result["sps_env_only"] = round(env_only_sps(base), 1)  # first, on a quiet machine
    per: dict[str, dict[str, list[float]]] = {}
    curves: dict[str, list[list[dict]]] = {}
    for latent in latents:
        for seed in range(seeds):
            cfg = dataclasses.replace(base, **{"latent": latent, **ROWS[latent]}, seed=seed)
            rep = train(cfg, out_root / f"{latent}-s{seed}", resume=True, progress=not args.no_progress)
            hist = rep["eval_history"]
            row = per.setdefault(latent, {"ret": [], "first_eval": [], "best": [], "sps": []})
            row["ret"].append(rep["final"]["mean"])
            row["first_eval"].append(hist[0]["mean"] if hist and hist[0]["step"] == 0 else float("nan"))
            row["best"].append(rep["best_eval"]["mean"])
            row["sps"].append(rep["steps_per_s"])
            curves.setdefault(latent, []).append([{"step": h["step"], "mean": h["mean"]} for h in hist])
    summary = {}
    for latent, row in per.items():
        for key, values in row.items():
            finite = [v for v in values if np.isfinite(v)]
            if not finite:
                continue
            s = summary[f"{key}_{latent}"] = stats.interval(finite)
            result[f"{key}_{latent}"] = round(s["mean"], 1)
            result[f"{key}_{latent}_lo"] = round(s["lo"], 1)
            result[f"{key}_{latent}_hi"] = round(s["hi"], 1)
            result[f"{key}_{latent}_seeds"] = [round(v, 1) for v in values]
    if "laof" in per:
        first = summary["first_eval_laof"]
        target = {k: 1.25 * first[k] for k in ("mean", "lo", "hi")}
        result["sps_laof_vs_env_only"] = round(result["sps_laof"] / result["sps_env_only"], 3)
        result["targets"] = {
            "ret_laof_ge_1.25_first_eval": stats.verdict(summary["ret_laof"], target),
            "ret_laof_gt_ret_none": (stats.verdict(summary["ret_laof"], summary["ret_none"])
                                     if "none" in per else None),
            "sps_laof_ge_0.7_env_only": result["sps_laof_vs_env_only"] >= 0.7,
        }
        if "lapo" in per:
            result["ret_laof_vs_ret_lapo"] = stats.verdict(summary["ret_laof"], summary["ret_lapo"])
    result["curves"] = curves
    result["seconds"] = round(time.perf_counter() - t0, 1)
    if not args.quick and set(latents) >= set(LATENTS):
        RESULTS.parent.mkdir(exist_ok=True)
        with atomic_path(RESULTS) as tmp:
            Path(tmp).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
