"""Sweeps: trial throughput with 1 and 2 workers on one journal file, and a tuned LAOF vs the default.

    python benchmarks/bench_sweeps.py [--quick]

Data: cheetah-run, hard distractors, the quick preset's dataset (built first if missing, with exact flow).
Everything runs through the real command, ``python -m sweeps.tune``, in fresh processes.

1. Throughput: the same LAOF trials (``laof-action``, latent size and IDM offset pinned so every trial costs
   the same; ``trial_steps`` 60, ``--quick`` 20) on a journal file with 1 worker and with 2 workers, one torch
   thread per worker: trials per hour of each, ``scaling`` = 2-worker / 1-worker (target >= 1.6 on 2 cores).
   And 1 worker with 2 threads (what one process gets from both cores through torch alone):
   ``scaling_vs_1_worker_2_threads``. The 2-worker study is also checked: trial count, no trial run twice.
2. Tuning: a LAOF study on the held-out probe objective (TPE, median pruner, 2 workers; 10 trials of 200
   steps; ``--quick``: 4 of 50), then the default config and the study's best.json each trained at the
   preset's budget (1000 steps; ``--quick``: 200) with ``rl_laof.lam [--config best.json]``:
   ``probe_default`` vs ``probe_tuned``, the linear-probe action MSE on the held-out ``eval`` episodes (the
   split the sweep scored), and on the held-out-background episodes, which it never saw (target:
   probe_tuned < probe_default).

Writes ``benchmarks/results/sweeps.json`` (a full run); the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench_args import alone

import envs  # noqa: F401  (loads EGL before anything imports envpool)
from rl_laof.runs import atomic_path, runs_root

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "sweeps.json"


def sweep(runs: Path, name: str, workers: int, n_trials: int, steps: int, every: int, dataset: Path,
          extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "sweeps.tune", "--target", "laof", "--dataset", str(dataset), "--study-name", name,
           "--n-trials", str(n_trials), "--workers", str(workers), "--trial-steps", str(steps), "--report-every",
           str(every), "--no-progress", *extra]
    env = {**os.environ, "RL_LAOF_RUNS": str(runs)}
    t0 = time.perf_counter()
    out = subprocess.run(cmd, env=env, cwd=ROOT, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["wall_s"] = round(wall, 1)
    return result


def throughput(runs: Path, workers: int, threads: int, n: int, steps: int, dataset: Path) -> dict:
    name = f"throughput-{workers}w-{threads}t"
    shutil.rmtree(runs / "sweeps" / name, ignore_errors=True)  # a timing needs a fresh study
    r = sweep(runs, name, workers, n, steps, steps, dataset,
              ["--sampler", "random", "--pruner", "none", "--threads", str(threads), "--space", "latent_dim=[128]",
               "--space", "max_offset=[1]"])
    with open(runs / "sweeps" / name / "trials.csv") as f:
        rows = list(csv.DictReader(f))
    numbers = [int(row["number"]) for row in rows]
    return {"workers": workers, "threads": threads, "trials": r["trials"], "complete": r["complete"],
            "seconds": r["seconds"], "trials_per_hour": round(3600 * r["complete"] / r["seconds"], 1),
            "no_trial_twice": len(numbers) == len(set(numbers)), "workers_seen": len({row["worker"] for row in rows})}


def lam(out: Path, dataset: Path, steps: int, config: Path | None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "rl_laof.lam", "--dataset", str(dataset), "--out", str(out), "--steps",
           str(steps), "--threads", "1", "--no-progress"]
    cmd += ["--config", str(config)] if config else ["--method", "laof-action"]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    from rl_laof.pipeline import default_dataset

    mode = "quick" if args.quick else "full"
    runs = (runs_root() / "bench" / "sweeps" / mode).resolve()
    dataset = default_dataset("cheetah-run", "quick", flow=True).resolve()
    t_start = time.time()
    n_tp, steps_tp = (4, 20) if args.quick else (6, 60)
    runs_tp = {}
    for workers, threads in ((1, 1), (2, 1), (1, 2)):
        runs_tp[workers, threads] = throughput(runs, workers, threads, n_tp, steps_tp, dataset)
        print(json.dumps({"throughput": runs_tp[workers, threads]}), flush=True)
    one, two, one_2t = runs_tp[1, 1], runs_tp[2, 1], runs_tp[1, 2]

    n_tune, steps_tune, every, final_steps = (4, 50, 25, 200) if args.quick else (10, 200, 100, 1000)
    tuned = sweep(runs, "tune-laof-probe", 2, n_tune, steps_tune, every, dataset, ["--pruner", "median"])
    print(json.dumps({"sweep": {k: tuned[k] for k in ("trials", "complete", "pruned", "fail", "best_value",
                                                      "best_params", "seconds")}}), flush=True)
    best = Path(tuned["best_config"][0])
    # the two final runs side by side, one thread each (the same conditions for both)
    procs = {"default": lam(runs / "final-default", dataset, final_steps, None),
             "tuned": lam(runs / "final-tuned", dataset, final_steps, best)}
    for name, proc in procs.items():
        if proc.wait():
            raise SystemExit(f"final {name} run failed ({proc.returncode})")
    probes = {name: json.loads((runs / f"final-{name}" / "report.json").read_text())["probes"] for name in procs}
    result = {
        "bench": "sweeps", "mode": mode, "task": "cheetah-run", "target": "laof-action",
        "trials_per_hour_1_worker": one["trials_per_hour"], "trials_per_hour_2_workers": two["trials_per_hour"],
        "scaling": round(two["trials_per_hour"] / one["trials_per_hour"], 2),
        # one worker may use both cores through torch's threads instead: what the second process adds over that
        "trials_per_hour_1_worker_2_threads": one_2t["trials_per_hour"],
        "scaling_vs_1_worker_2_threads": round(two["trials_per_hour"] / one_2t["trials_per_hour"], 2),
        "two_worker_check": {k: two[k] for k in ("trials", "complete", "no_trial_twice", "workers_seen")},
        "throughput_trial_steps": steps_tp,
        "sweep_trials": n_tune, "sweep_trial_steps": steps_tune, "sweep_complete": tuned["complete"],
        "sweep_pruned": tuned["pruned"], "sweep_best_value": tuned["best_value"],
        "best_params": tuned["best_params"], "final_steps": final_steps,
        "probe_default": round(probes["default"]["eval"]["linear_action_mse"], 4),
        "probe_tuned": round(probes["tuned"]["eval"]["linear_action_mse"], 4),
        "probe_default_heldout_bg": round(probes["default"]["heldout_bg"]["linear_action_mse"], 4),
        "probe_tuned_heldout_bg": round(probes["tuned"]["heldout_bg"]["linear_action_mse"], 4),
        "mean_action_mse": round(probes["default"]["eval"]["mean_action_mse"], 4),
        "best_config": str(best), "seconds": round(time.time() - t_start, 1),
    }
    result["targets"] = {"scaling>=1.6": result["scaling"] >= 1.6,
                         "probe_tuned<probe_default": result["probe_tuned"] < result["probe_default"]}
    if not args.quick:
        with atomic_path(RESULTS) as tmp:
            Path(tmp).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    alone(main)
