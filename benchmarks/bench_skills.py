"""SOF skills vs single-step latent BC vs BC on labels (per task and averaged), and PPO over skills vs raw actions.

    python benchmarks/bench_skills.py [--quick]

Multi-task walker (walker-stand, walker-walk, walker-run), hard distractors, 64 px, action repeat 2. Everything
it needs is built first and cached under ``runs/`` (a rerun reuses it):

1. an expert per task (state PPO, 1M agent steps; ``--quick``: 300k) and a dataset per task from it
   (16 + 4 + 2 episodes of 250 steps; ``--quick``: 6 + 2 + 0 of 100), exact flow, merged into one multi-task
   dataset (``rl_laof.data.multitask``) with the task id per episode;
2. the label budget, the same for every method: 2 whole labelled trajectories per task (``traj-2``);
3. SOF (``rl_laof.skills``, quick preset) on the multi-task video: tokenizer, prior, translator;
4. LAOF (``rl_laof.lam``, quick preset) on the same multi-task video, then per task latent BC + action
   decoder (``rl_laof.imitation``) on the task's labels; and per task BC on the labels only;
5. each policy evaluated per task on EnvPool pixels with the data's distractors (8 episodes of 500 steps,
   the same env seeds for every method);
6. on walker-walk, PPO over SOF skill tokens vs PPO on raw actions at equal env steps (20k; ``--quick``: 2048).

Targets: ret_sof >= ret_laof_bc >= ret_bc_labels (multi-task average); ppo_sof >= ppo_raw. The last line is one
JSON object.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

from bench_args import write_result

import envs  # noqa: F401  (loads EGL before anything imports envpool)
from agents.config import TRAIN_PRESETS, ExpertConfig, TrainConfig
from rl_laof.data.config import CollectConfig
from rl_laof.imitation.config import IMITATION_PRESETS, ImitationConfig
from rl_laof.lam.config import LAM_PRESETS, LAMConfig
from rl_laof.presets import from_preset
from rl_laof.runs import runs_root
from rl_laof.skills.config import SKILLS_PRESETS, SkillsConfig

TASKS = ("walker-stand", "walker-walk", "walker-run")
PPO_TASK = "walker-walk"
ACTION_REPEAT = 2
LABEL_TRAJECTORIES = 2
EVAL = dict(eval_episodes=8, eval_seeds=1, eval_backgrounds=("train",))
FULL = dict(expert_steps=1_000_000, episodes=16, eval_episodes=4, heldout=2, episode_steps=250, ppo_steps=20_000,
            skills={}, imitation={}, lam={})
QUICK = dict(expert_steps=300_000, episodes=6, eval_episodes=2, heldout=0, episode_steps=100, ppo_steps=2048,
             skills=dict(tokenizer_steps=300, prior_steps=300, translator_steps=300, eval_episodes=4),
             imitation=dict(steps=300, decoder_steps=300, eval_episodes=4), lam=dict(steps=300))


def build_data(size: dict, tag: str, progress: bool):
    """Per-task experts and datasets (with exact flow), merged; returns (per-task dataset dirs, merged dir)."""
    from agents.expert import train_expert
    from rl_laof import pipeline
    from rl_laof.data.multitask import merge_datasets
    from rl_laof.flow.targets import fill_flow

    datasets = {}
    for task in TASKS:
        steps = size["expert_steps"]
        run = runs_root() / "experts" / task / f"ppo-ar{ACTION_REPEAT}-{steps_tag(steps)}-s0"
        every = min(500_000, steps // 2)
        ecfg = ExpertConfig(task=task, action_repeat=ACTION_REPEAT, total_steps=steps, eval_every=every,
                            checkpoint_every=every, final_eval_episodes=8)
        train_expert(ecfg, run, progress=progress)
        ccfg = CollectConfig(task=task, expert=str(run), episodes=size["episodes"],
                             eval_episodes=size["eval_episodes"], heldout_bg_episodes=size["heldout"],
                             episode_steps=size["episode_steps"], action_repeat=ACTION_REPEAT,
                             label_fractions=(0.0,), label_trajectories=(1, 2, 4))
        out = runs_root() / "datasets" / task / f"hard-ar{ACTION_REPEAT}-skills-{tag}-s0"
        pipeline.dataset(ccfg, out, progress=progress)
        fill_flow(out, "exact", progress=progress)
        datasets[task] = out
    merged = merge_datasets(list(datasets.values()),
                            runs_root() / "datasets" / "walker-multitask" / f"hard-ar{ACTION_REPEAT}-skills-{tag}-s0",
                            progress=progress)
    return datasets, merged


def steps_tag(steps: int) -> str:
    return f"{steps // 1_000_000}m" if steps % 1_000_000 == 0 else f"{steps // 1000}k"


def mean_return(report: dict) -> float:
    return round(float(report["train"]["mean"]), 1)


def main() -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a smoke-size run (minutes): smaller data and budgets")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args()
    progress = not args.no_progress
    size = QUICK if args.quick else FULL
    tag = "quick" if args.quick else "full"
    root = runs_root() / "bench" / "skills" / tag
    t0 = time.perf_counter()
    datasets, merged = build_data(size, tag, progress)
    timings = {"data_s": round(time.perf_counter() - t0, 1)}
    result: dict = {"tasks": list(TASKS), "quick": args.quick, "labels": f"traj-{LABEL_TRAJECTORIES} per task",
                    "per_task": {t: {} for t in TASKS}}

    # --- SOF on the multi-task video, evaluated per task
    from rl_laof.skills.evaluation import evaluate_skills
    from rl_laof.skills.training import SkillRun

    t = time.perf_counter()
    scfg = from_preset(SkillsConfig, SKILLS_PRESETS, "quick", label_trajectories=LABEL_TRAJECTORIES,
                       **{**EVAL, **size["skills"]})
    run = SkillRun(scfg, merged, root / "sof")
    sof = evaluate_skills(run, progress)
    for task in TASKS:
        result["per_task"][task]["sof"] = mean_return(sof["returns"][task])
    result["sof_tokens"] = sof["tokens"]
    timings["sof_s"] = round(time.perf_counter() - t, 1)

    # --- LAOF on the same multi-task video; per task latent BC and BC on the labels
    from rl_laof.imitation.training import imitate
    from rl_laof.lam.training import train_lam

    t = time.perf_counter()
    lam_cfg = from_preset(LAMConfig, LAM_PRESETS, "quick", method="laof", **size["lam"])
    lam = train_lam(lam_cfg, merged, root / "laof", progress=progress)
    result["laof_probe_action_mse"] = {k: round(lam["probes"]["eval"][k], 4)
                                       for k in ("linear_action_mse", "mean_action_mse")}
    timings["laof_pretrain_s"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    for task in TASKS:
        base = from_preset(ImitationConfig, IMITATION_PRESETS, "quick", label_trajectories=LABEL_TRAJECTORIES,
                           normalise=False, **{**EVAL, **size["imitation"]})
        for name, cfg in (("laof_bc", dataclasses.replace(base, latent="laof", policy="bc", lam_run=lam["run_dir"])),
                          ("bc_labels", dataclasses.replace(base, latent="none", policy="bc"))):
            rep = imitate(cfg, datasets[task], root / task / name, progress=progress)
            result["per_task"][task][name] = mean_return(rep["returns"])
    timings["imitation_s"] = round(time.perf_counter() - t, 1)
    for method in ("sof", "laof_bc", "bc_labels"):
        result[f"ret_{method}"] = round(sum(result["per_task"][t][method] for t in TASKS) / len(TASKS), 1)
    from rl_laof.data import VideoDataset

    result["data_returns"] = {t: VideoDataset(datasets[t], flow=None).summary(brief=True)["train"]["return_mean"]
                              for t in TASKS}  # the noisy experts' episodes (250 of 500 steps)

    # --- PPO over skills vs raw actions at equal env steps
    from rl_laof.pipeline import agent as train

    t = time.perf_counter()
    tcfg = from_preset(TrainConfig, TRAIN_PRESETS, "quick", task=PPO_TASK, total_steps=size["ppo_steps"],
                       eval_every=size["ppo_steps"] // 4, checkpoint_every=size["ppo_steps"] // 4)
    for name, cfg in (("ppo_raw", dataclasses.replace(tcfg, latent="none")),
                      ("ppo_sof", dataclasses.replace(tcfg, latent="sof", skills=str(run.dir)))):
        rep = train(cfg, root / name, resume=True, progress=progress)
        result[name] = round(rep["final"]["mean"], 1)
        result[f"{name}_std"] = round(rep["final"]["std"], 1)
        result[f"{name}_first_eval"] = rep["eval_history"][0]["mean"] if rep["eval_history"] else None
        result[f"{name}_sps"] = rep["steps_per_s"]
        result[f"{name}_steps"] = rep["steps"]
    timings["ppo_s"] = round(time.perf_counter() - t, 1)
    result["ppo_task"] = PPO_TASK
    result["targets"] = {
        "ret_sof_ge_laof_bc": result["ret_sof"] >= result["ret_laof_bc"],
        "ret_laof_bc_ge_bc_labels": result["ret_laof_bc"] >= result["ret_bc_labels"],
        "ppo_sof_ge_ppo_raw": result["ppo_sof"] >= result["ppo_raw"],
    }
    result["timings"] = timings
    result["seconds"] = round(time.perf_counter() - t0, 1)
    if not args.quick:
        write_result("skills", result)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
