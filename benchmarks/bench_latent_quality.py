"""Do optical-flow constraints make latent actions carry the action under distractors? Held-out probes,
three seeds, bootstrap intervals.

    python benchmarks/bench_latent_quality.py [--quick] [--levels laom,hard] [--seeds 3]

Data (cheetah-run, PPO expert with action noise 0.1, action repeat 4, 64 px, exact flow; collected and
cached on first use): one dataset per distractor level — ``laom`` (LAOM's headline setting: camera and
colour 0.1, every training video, dynamic) and ``hard`` (camera and colour 0.3, every video, occluders) —
and one without distractors. Each has ``train`` episodes, held-out ``eval`` episodes with the same
distractor distribution, and ``heldout_bg`` episodes with background videos never seen in training.

Methods (the same data, model width, budget and evaluation for all; ``pretrain``'s defaults, with the
step count of ``BUDGET``):

  lapo, laof, laom                       no labels
  laom_action_<p>pct, laof_action_<p>pct action head on p % labelled transitions, p in 1 / 5 / 10
                                         (the label-budget curve; 0 % is the unlabelled method)
  laof_camfree                           LAOF on the agent's flow with the camera shake removed
  lapo_clean[_<n>ep]                     LAPO on the data without distractors (a reference), on all 32
                                         training episodes and on the first 16 / 8 (does more data help?)
  untrained                              the step-0 model of every run: the floor training must clear

Metric: the held-out linear probe z -> a_t (ridge on standardised latents, fit on every training
transition, scored on the ``eval`` episodes), divided by the mean-action MSE of the same episodes
(1.0 = no information about the action); ``heldout_bg_*`` scores it on the held-out backgrounds.
Each figure is the mean over seeds with a 95 % bootstrap interval (``rl_laof.stats``, rliable); a target
is met only where the intervals separate. ``flow_vs_zero``: LAOF's held-out flow-decoder loss over the
loss of predicting no motion. ``samples_per_s`` / ``samples_per_s_before``: LAOF training samples/s of
the current defaults and of the pipeline before issue 17, measured here, one after the other
(``bench_lam_speed``). Writes ``benchmarks/results/latent_quality.json`` (a full run) and prints one
JSON object as its last line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import envs  # noqa: E402,F401  (loads EGL before anything imports envpool)
from envs.config import DIFFICULTY_SCALE, DistractorConfig  # noqa: E402
from rl_laof import stats  # noqa: E402
from rl_laof.data.config import COLLECT_PRESETS, CollectConfig  # noqa: E402
from rl_laof.lam.config import LAMConfig  # noqa: E402
from rl_laof.presets import from_preset  # noqa: E402
from rl_laof.runs import atomic_path, dataset_dir, runs_root  # noqa: E402

TASK = "cheetah-run"
LEVELS = ("laom", "hard")
RESULTS = Path(__file__).resolve().parent / "results" / "latent_quality.json"
#: name -> LAMConfig fields; every method runs on every level (lapo_clean on the clean data only)
METHODS: dict[str, dict] = {
    "lapo": dict(method="lapo"),
    "laof": dict(method="laof"),
    "laom": dict(method="laom"),
    "laom_action_1pct": dict(method="laom-action", labels=0.01),
    "laof_action_1pct": dict(method="laof-action", labels=0.01),
    "laom_action_5pct": dict(method="laom-action", labels=0.05),
    "laof_action_5pct": dict(method="laof-action", labels=0.05),
    "laom_action_10pct": dict(method="laom-action", labels=0.1),
    "laof_action_10pct": dict(method="laof-action", labels=0.1),
    "laof_camfree": dict(method="laof", flow_source="camfree"),  # the target without the camera shake
}
#: the clean reference, and its data-size curve: LAPO trained on the first 8 / 16 / all 32 training episodes
CLEAN = {"lapo_clean": dict(method="lapo"), "lapo_clean_16ep": dict(method="lapo", train_episodes=16),
         "lapo_clean_8ep": dict(method="lapo", train_episodes=8)}
CURVE_ONLY = ("laom_action_5pct", "laof_action_5pct", "laom_action_10pct", "laof_action_10pct")
#: the dataset and training budget, sized by measurement (README, "Latent action models")
DATA: dict = {}  # the quick collection preset: 32 + 8 + 4 episodes of 250 steps
BUDGET = dict(steps=1000, eval_every=250, checkpoint_every=500, mlp_probe_steps=500)
QUICK_DATA = dict(episodes=8, eval_episodes=4, heldout_bg_episodes=2)
QUICK_BUDGET = dict(steps=60, eval_every=30, checkpoint_every=30, mlp_probe_steps=50, eval_windows=256)


def dataset(level: str, quick: bool, progress: bool = True) -> Path:
    """The benchmark's dataset at distractor ``level`` ("none" for the clean one), collected with exact flow
    if missing."""
    from rl_laof import pipeline
    from rl_laof.flow.targets import fill_flow

    size = QUICK_DATA if quick else DATA
    cfg = from_preset(CollectConfig, COLLECT_PRESETS, "quick", task=TASK, distractors=DistractorConfig.parse(level),
                      **size)
    # the full run's data is the quick collection preset (shared with every stage); the smoke run's is its own
    path = dataset_dir(TASK, cfg.name + ("-smoke" if quick else ""))
    pipeline.dataset(cfg, path, progress=progress)
    fill_flow(path, "exact", progress=progress)
    return path


def lam_run(name: str, data, quick: bool, progress: bool = True, seed: int = 0, level: str = "hard") -> dict:
    """Train (or find) run ``name`` of :data:`METHODS` (or ``lapo_clean``) at ``seed`` on ``data``; returns its
    report. ``bench_imitation`` reuses these runs."""
    from rl_laof.lam.training import train_lam

    fields = CLEAN[name] if name in CLEAN else METHODS[name]
    budget = QUICK_BUDGET if quick else BUDGET
    out = runs_root() / "bench" / "latent_quality" / ("quick" if quick else "full") / level / f"{name}-s{seed}"
    return train_lam(LAMConfig(seed=seed, **fields, **budget), data, out, progress=progress)


def normalised(report: dict, split: str = "eval", which: str = "probes") -> float:
    p = report[which][split]
    return p["linear_action_mse"] / p["mean_action_mse"]


def summarise(per_seed: dict[str, list[float]]) -> dict[str, dict]:
    return {k: stats.interval(v) for k, v in per_seed.items() if v}


def flat(prefix: str, summary: dict[str, dict]) -> dict:
    """probe_<name>, probe_<name>_lo / _hi (rounded), per level prefix."""
    out = {}
    for k, s in summary.items():
        out[f"{prefix}{k}"] = round(s["mean"], 4)
        out[f"{prefix}{k}_lo"] = round(s["lo"], 4)
        out[f"{prefix}{k}_hi"] = round(s["hi"], 4)
    return out


def targets(s: dict[str, dict]) -> dict[str, str | bool]:
    """The issue's targets on one level's summaries: met only where the intervals separate."""
    laof, lapo = s["laof"], s["lapo"]
    half_lapo = {"mean": lapo["mean"] / 2, "lo": lapo["lo"] / 2, "hi": lapo["hi"] / 2}
    distracted = ("lapo", "laof", "laom", "laom_action_1pct", "laof_action_1pct")
    lowest = min(distracted, key=lambda k: s[k]["mean"])
    others = [k for k in distracted if k != "laof_action_1pct"]
    return {
        "laof_below_untrained": stats.verdict(laof, s["untrained"]),
        "laof_le_half_lapo": stats.verdict(laof, half_lapo),
        "laof_le_laom_action_1pct": stats.verdict(laof, s["laom_action_1pct"]),
        "laof_action_1pct_lowest": ("met" if all(stats.below(s["laof_action_1pct"], s[k]) for k in others)
                                    else f"not separated (lowest mean: {lowest})"),
        "laof_le_0.5": "met" if laof["hi"] <= 0.5 else ("tie" if laof["lo"] <= 0.5 else "not met"),
        # not targets: what the camera-free target and more clean data change
        "laof_camfree_vs_laof": stats.verdict(s["laof_camfree"], laof),
        "lapo_clean_32ep_vs_16ep": stats.verdict(s["lapo_clean"], s["lapo_clean_16ep"]),
    }


def plot_curves(curves: dict, path: Path) -> None:
    """Probe / mean action against training steps, mean over seeds, one panel per level."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.8), squeeze=False)
    for ax, (level, methods) in zip(axes[0], curves.items(), strict=True):
        for name, by_step in methods.items():
            steps = sorted(by_step)
            ax.plot(steps, [np.mean(by_step[t]) for t in steps], "o-", ms=3, label=name)
        ax.axhline(1.0, color="gray", ls="--", lw=0.8)
        ax.set_title(f"{level} distractors" if level != "none" else "no distractors")
        ax.set_xlabel("training step")
        ax.set_ylabel("held-out linear probe / mean action")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a smoke run: tiny datasets, 60 steps a model")
    p.add_argument("--levels", default=",".join(LEVELS), help="distractor levels, comma-separated")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args()
    progress = not args.no_progress
    levels = [x.strip() for x in args.levels.split(",") if x.strip()]
    bad = [lv for lv in levels if lv not in DIFFICULTY_SCALE or lv == "none"]
    if not levels or bad:
        p.error(f"--levels {args.levels!r}: give distractor levels from "
                f"{', '.join(k for k in DIFFICULTY_SCALE if k != 'none')} (the clean data is always run)")
    if args.seeds < 1:
        p.error(f"--seeds {args.seeds}: need at least 1 (3 or more for intervals that can decide a claim)")
    seeds = list(range(args.seeds))
    t0 = time.perf_counter()
    result: dict = {"task": TASK, "quick": args.quick, "seeds": len(seeds), "levels": levels,
                    "budget": QUICK_BUDGET if args.quick else BUDGET, "data": QUICK_DATA if args.quick else DATA}
    # speed first, on a quiet machine: the training runs below only need their results, not their timing
    from bench_lam_speed import measure

    speed = measure(dataset(levels[0], args.quick, progress), "laof", steps=10 if args.quick else 30)
    per_seed: dict = {}
    curves: dict = {}
    for level in [levels[0], "none", *levels[1:]]:  # the primary level and its clean reference first
        data = dataset(level, args.quick, progress)
        names = list(CLEAN) if level == "none" else list(METHODS)
        lv = per_seed.setdefault(level, {"eval": {}, "heldout_bg": {}, "mlp": {}, "untrained": {},
                                         "untrained_heldout_bg": {}, "flow_vs_zero": [], "flow_vs_mean": [],
                                         "samples_per_s": {}})
        for name in names:
            for seed in seeds:
                rep = lam_run(name, data, args.quick, progress, seed, level)
                lv["eval"].setdefault(name, []).append(normalised(rep))
                lv["untrained"].setdefault(name, []).append(normalised(rep, which="untrained_probes"))
                if "heldout_bg" in rep["probes"]:
                    lv["heldout_bg"].setdefault(name, []).append(normalised(rep, "heldout_bg"))
                    lv["untrained_heldout_bg"].setdefault(name, []).append(
                        normalised(rep, "heldout_bg", "untrained_probes"))
                mlp = rep["probes"]["eval"].get("mlp_action_mse")
                if mlp is not None:
                    lv["mlp"].setdefault(name, []).append(mlp / rep["probes"]["eval"]["mean_action_mse"])
                lv["samples_per_s"].setdefault(name, []).append(rep["train_samples_per_s"])
                for h in rep["history"]:  # probe-vs-steps (the periodic probe on held-out windows)
                    curves.setdefault(level, {}).setdefault(name, {}).setdefault(h["step"], []).append(
                        h["eval/linear_probe_action_mse"] / rep["probes"]["eval"]["mean_action_mse"])
                if name == "laof":
                    fe = rep["final_eval"]
                    lv["flow_vs_zero"].append(fe["eval/flow"] / fe["eval/flow_zero"])
                    lv["flow_vs_mean"].append(fe["eval/flow"] / fe["eval/flow_mean"])
        # the floor: the untrained model of every architecture, one value per seed (LAOF's IDM, as LAPO's)
        if level != "none":
            lv["eval"]["untrained"] = lv["untrained"]["laof"]
            if lv["untrained_heldout_bg"]:
                lv["heldout_bg"]["untrained"] = lv["untrained_heldout_bg"]["laof"]
    for level in levels:
        lv = per_seed[level]
        prefix = "" if level == levels[0] else f"{level}_"
        s = summarise(lv["eval"])
        s.update(summarise(per_seed["none"]["eval"]))
        result.update(flat(f"probe_{prefix}", s))
        result.update(flat(f"probe_heldout_bg_{prefix}", summarise(lv["heldout_bg"])))
        result.update(flat(f"probe_untrained_{prefix}", summarise({k: v for k, v in lv["untrained"].items() if v})))
        result.update(flat(f"mlp_probe_{prefix}", summarise(lv["mlp"])))
        for key in ("flow_vs_zero", "flow_vs_mean"):
            name = f"{key}{'_' + level if prefix else ''}"
            result.update(flat(name, {"": stats.interval(lv[key])}))
        result[f"targets_{level}"] = targets(s)
    result["primary_level"] = levels[0]
    result["probe_untrained_note"] = "probe_untrained = the step-0 LAOF model of each seed (same IDM as LAPO)"
    result["samples_per_s"] = round(speed["after"]["samples_per_s"], 1)
    result["samples_per_s_before"] = round(speed["before"]["samples_per_s"], 1)
    result["speedup"] = round(speed["speedup"], 2)
    result["speed_profile"] = {k: speed[k] for k in ("before", "after")}
    result["matmul_gflop_per_s"] = speed["matmul_gflop_per_s"]
    result["train_samples_per_s"] = {lv: {k: round(float(np.mean(v)), 1) for k, v in d["samples_per_s"].items()}
                                     for lv, d in per_seed.items()}
    result["per_seed"] = per_seed
    result["curves"] = curves
    plot_curves(curves, RESULTS.parent / "latent_quality_curves.png" if not args.quick else
                runs_root() / "bench" / "latent_quality" / "quick" / "curves.png")
    result["seconds"] = round(time.perf_counter() - t0, 1)
    if not args.quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(RESULTS) as tmp:
            tmp.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
