"""The main job: ``python -m rl_laof.train --algo ppo --latent laof`` — an RL agent in a latent action space.

The agent (any algorithm of ``agents.algorithms.ALGOS``) sees the pixel env with distractors (EnvPool) and acts
with latent actions that a frozen action decoder turns into env actions (``agents.latent_env``); its
policy starts from the pretrained latent policy. ``--latent none`` is the same agent on raw actions;
``--latent action_residual`` acts in raw actions around the decoded LAOF latent BC policy (the latent residual's
start), ``--latent labels_residual`` around BC on the labels. ``--algo drq --latent none`` is the pixel-RL
baseline a user would pick instead, DrQ-v2 (``agents.drq``; its settings ``--set drq=FIELD=VALUE,...``).
``--latent sof`` acts with SOF skills (``rl_laof.skills``, ``agents.skill_env``): one decision per H-step
chunk, tokens (``--set skill_action=tokens``) or the continuous code (``continuous``), the chunk's rewards summed,
discount gamma^H, an optional KL term to the skill prior (``--set kl_coef=...``), and the actor distilled from
the prior at the start. Step counts (``--steps``, evaluation and checkpoint intervals) are environment steps.

What the latent space needs — expert, dataset, flow targets, latent action model, latent policy and
decoder — is found, or built by running those stages at the chosen preset. The project ships the quick
preset's latent policies and decoders in ``pretrained/`` (each with the command that made it) so a first run
starts training at once; ``--rebuild`` ignores them and makes everything here.

Output (``runs/train/<task>/<run>``): TensorBoard logs, periodic evaluation, checkpoints (``--resume``
continues the newest with the same step count and learning-rate schedule), ``report.json`` and
``learning_curve.png``. ``python -m rl_laof.evaluate RUN_DIR`` replays the agent and writes a video.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from agents.config import TRAIN_ALGOS, TRAIN_LATENTS, TRAIN_PRESETS, TrainConfig
from rl_laof import pipeline
from rl_laof.cli import add_run_flags, print_summary, run, stage_config, stage_parser
from rl_laof.config_file import config_section, read_config_file
from rl_laof.runs import clear_run, train_dir


def build_parser() -> argparse.ArgumentParser:
    p = stage_parser("rl_laof.train", __doc__, TRAIN_PRESETS,
                     "quick: 60k agent steps, 8 envs (~8 min on 2 cores); paper: 1M steps, 16 envs")
    p.add_argument("--algo", default="ppo", choices=list(TRAIN_ALGOS),
                   help="stable-baselines3 / sb3-contrib, or drq: DrQ-v2 from pixels, the baseline (--latent none)")
    p.add_argument("--latent", default=None,
                   help=f"the action space (default laof, or the --config file's lam method): none (raw "
                        f"actions), a latent action model's, sof (skills), or a raw-action residual around the "
                        f"decoded LAOF latent BC policy (action_residual) or BC on the labels (labels_residual): "
                        f"{', '.join(TRAIN_LATENTS)}")
    p.add_argument("--policy", default=None, choices=["bc", "lafp"],
                   help="the latent policy's kind (as rl_laof.imitation --policy): bc: act with the latent, start "
                        "from latent BC; lafp: act with the flow policy's noise")
    p.add_argument("--latent-policy", default=None, metavar="RUN_DIR",
                   help="a latent policy: an imitation run folder (rl_laof.imitation) to take the policy and "
                        "decoder from (default: the shipped one, else built at the preset)")
    p.add_argument("--skills", default=None, metavar="RUN_DIR",
                   help="--latent sof: a skills run (rl_laof.skills); default: the newest one covering --task")
    p.add_argument("--skill-action", default=None, choices=["tokens", "continuous"],
                   help="--latent sof: multi-discrete FSQ tokens (default) or the continuous pre-quantisation code")
    p.add_argument("--kl-coef", type=float, default=None,
                   help="--latent sof, tokens: weight of the KL(agent || skill prior) penalty (default 0)")
    p.add_argument("--obs", default=None, choices=["pixels", "state"], help="observation type (default pixels)")
    p.add_argument("--distractors", default=None, help="none / easy / medium / hard / laom (default laom)")
    p.add_argument("--seed", type=int, default=None, help="seed of the agent and its envs (default 0)")
    p.add_argument("--num-envs", type=int, default=None, help="parallel envs")
    p.add_argument("--steps", type=int, default=None, help="total agent steps")
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    p.add_argument("--resume", action="store_true", help="continue the run in the folder from its newest checkpoint")
    p.add_argument("--fresh", action="store_true", help="delete the run folder and start over")
    p.add_argument("--rebuild", action="store_true",
                   help="ignore the shipped latent policies: build expert, data, latent model and policy here")
    add_run_flags(p, "run folder (default runs/train/<task>/<run>)", TrainConfig, "learning_rate=1e-4",
                  "a config file (e.g. a sweep's best.json): its 'train' section, and its 'lam' / 'imitation' "
                  "sections build the latent policy; flags and --set win")
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    file = config_section(args.config, "train", required=False)
    if args.latent is None and "latent" not in file:
        file["latent"] = config_section(args.config, "lam", required=False).get("method")
    flags = dict(task=args.task, algo=args.algo, latent=args.latent, policy=args.policy,
                 latent_policy=args.latent_policy, obs=args.obs, skills=args.skills, skill_action=args.skill_action,
                 kl_coef=args.kl_coef, distractors=args.distractors, seed=args.seed, num_envs=args.num_envs,
                 total_steps=args.steps, threads=args.threads)
    return stage_config(TrainConfig, TRAIN_PRESETS, args.preset, file=file, flags=flags, sets=args.set)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    cfg = config_from_args(args)
    if args.resume and args.fresh:
        raise ValueError("--resume continues a run, --fresh deletes it: give one.")
    if args.config is not None:
        sections = read_config_file(args.config)
        if not {"train", "lam", "imitation"} & set(sections):
            raise ValueError(f"--config {args.config}: no train, lam or imitation section for rl_laof.train")
        lam_over, im_over = sections.get("lam", {}), sections.get("imitation", {})
        if (lam_over or im_over) and cfg.latent_policy is None:
            cfg = dataclasses.replace(cfg, latent_policy=str(pipeline.tuned_latent_policy(cfg, lam_over, im_over,
                                                                                        not args.no_progress)))
    default_out = train_dir(cfg.task, cfg.tag)
    if args.config is not None:
        default_out = default_out.with_name(f"{default_out.name}-{args.config.stem}")
    out = args.out or default_out
    if args.fresh:
        clear_run(out)  # refused while another run writes there
    report = pipeline.agent(cfg, out, resume=args.resume, rebuild=args.rebuild, progress=not args.no_progress)
    print_summary({"run": report["run_dir"], "steps": report["steps"],
                   "final_return": round(report["final"]["mean"], 1), "steps_per_s": report["steps_per_s"],
                   "curve": str(Path(report["run_dir"]) / "learning_curve.png")})
    return report


def main_entry() -> None:
    """The console script ``rl-laof-train``."""
    run(main)


if __name__ == "__main__":
    run(main)
