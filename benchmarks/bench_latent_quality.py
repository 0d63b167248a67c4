"""Do optical-flow constraints make latent actions robust to distractors? Held-out probes say.

    python benchmarks/bench_latent_quality.py [--quick]

On cheetah-run with hard distractors (the quick collection preset: 32 training episodes of 250
steps at action repeat 4 from the PPO expert with action noise, exact flow targets), trains with the
same data, model size and budget (the ``quick`` pretrain preset: 1000 steps of batch 64; ``--quick``:
150 steps):

  lapo                LAPO, no labels
  laof                LAOF, no labels (z-only flow decoder on the agent's exact flow)
  laom_action_1pct    LAOM-Action, 1 % labelled transitions
  laof_action_1pct    LAOF-Action, 1 % labelled transitions
  lapo_clean          LAPO on the same expert's data without distractors (reference)

For each, the linear probe z -> a_t is fit on all training transitions and its action MSE is
measured on the 8 held-out episodes (``probe_*``; ``probe_mean_action`` predicts the training mean).
Also reported: MLP-probe and state-change-probe MSE, the held-out-background split, training
samples/s, and the linear probe against label budget (plot: probe_budget.png in the output folder).
Targets (the paper's claims): probe_laof <= 0.7 x probe_lapo; probe_laof <= probe_laom_action_1pct;
probe_laof_action_1pct lowest of the distracted runs. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import envs  # noqa: E402,F401  (loads EGL before anything imports envpool)
from rl_laof import probes  # noqa: E402
from rl_laof.artifacts import dataset_dir, runs_root  # noqa: E402
from rl_laof.collect import collect, default_name  # noqa: E402
from rl_laof.config import COLLECT_PRESETS, CollectConfig, DistractorConfig, LAMConfig, from_preset  # noqa: E402
from rl_laof.pretrain import find_or_build_dataset, train_lam  # noqa: E402

TASK = "cheetah-run"
RUNS = {  # name -> (method, labels, dataset)
    "lapo": ("lapo", None, "hard"),
    "laof": ("laof", None, "hard"),
    "laom_action_1pct": ("laom-action", 0.01, "hard"),
    "laof_action_1pct": ("laof-action", 0.01, "hard"),
    "lapo_clean": ("lapo", None, "clean"),
}


def lam_run(name: str, dataset, quick: bool, progress: bool = True) -> dict:
    """Train (or find) the benchmark's run ``name`` of :data:`RUNS` on ``dataset``; returns its report.
    ``bench_imitation`` reuses these runs."""
    method, labels, _ = RUNS[name]
    budget = dict(steps=150, eval_every=50, mlp_probe_steps=500) if quick else {}
    out_root = runs_root() / "bench" / "latent_quality" / ("quick" if quick else "full")
    return train_lam(LAMConfig(method=method, labels=labels, **budget), dataset, out_root / name, progress=progress)


def clean_dataset(progress: bool):
    cfg = from_preset(CollectConfig, COLLECT_PRESETS, "quick", task=TASK, distractors=DistractorConfig.parse("none"))
    path = dataset_dir(TASK, default_name(cfg))
    collect(cfg, path, progress=progress)
    return path


def main() -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="150 training steps per model instead of 1000")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args()
    progress = not args.no_progress
    t0 = time.perf_counter()
    data = {"hard": find_or_build_dataset(TASK, "quick", flow=True, progress=progress),
            "clean": clean_dataset(progress)}
    out_root = runs_root() / "bench" / "latent_quality" / ("quick" if args.quick else "full")
    result: dict = {"task": TASK, "quick": args.quick, "datasets": {k: str(v) for k, v in data.items()}}
    curves, fractions = {}, {}
    for name, (_, _, which) in RUNS.items():
        report = lam_run(name, data[which], args.quick, progress)
        ev = report["probes"]["eval"]
        result[f"probe_{name}"] = round(ev["linear_action_mse"], 4)
        result[f"mlp_probe_{name}"] = round(ev["mlp_action_mse"], 4)
        result[f"state_probe_{name}"] = round(ev["state_change_mse"], 4)
        if "heldout_bg" in report["probes"]:
            result[f"probe_heldout_bg_{name}"] = round(report["probes"]["heldout_bg"]["linear_action_mse"], 4)
        result[f"samples_per_s_{name}"] = report["train_samples_per_s"]
        curves[name if which == "hard" else f"{name} (no distractors)"] = ev["budget_curve"]
        if which == "hard":
            result["probe_mean_action"] = round(ev["mean_action_mse"], 4)
            fractions = dict(report["probes"]["label_counts"])
    probes.plot_budget_curves(curves, fractions, result["probe_mean_action"], out_root / "probe_budget.png")
    result["laof_vs_lapo"] = round(result["probe_laof"] / result["probe_lapo"], 3)
    distracted = ("lapo", "laof", "laom_action_1pct", "laof_action_1pct")
    result["targets"] = {
        "laof_le_0.7_lapo": result["laof_vs_lapo"] <= 0.7,
        "laof_le_laom_action_1pct": result["probe_laof"] <= result["probe_laom_action_1pct"],
        "laof_action_1pct_lowest": min(distracted, key=lambda k: result[f"probe_{k}"]) == "laof_action_1pct",
    }
    result["plot"] = str(out_root / "probe_budget.png")
    result["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
