"""Experts on state observations: ``python -m rl_laof.expert --task cheetah-run [--preset quick|paper]``.

Trains a stable-baselines3 / sb3-contrib agent (PPO by default) on the EnvPool backend's state
observations, with evaluations, checkpoints (a killed run resumes) and ``report.json``: the return of the
final and best policies on both backends, next to the published PPO references (``agents.expert``; run
folder: ``runs/experts/<task>/<algo>[-ar<k>]-<preset>-s<seed>``).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from agents.config import EXPERT_PRESETS, ExpertConfig
from agents.expert import train_expert
from rl_laof.cli import add_run_flags, print_summary, run, stage_config, stage_parser


def build_parser() -> argparse.ArgumentParser:
    p = stage_parser("rl_laof.expert", __doc__, EXPERT_PRESETS,
                     "quick: 3M steps, ~6-13 min on 2 CPU cores; paper: CleanRL's 8M-step budget")
    p.add_argument("--algo", default="ppo",
                   help="any SB3 / sb3-contrib algorithm for continuous actions: ppo, sac, td3, tqc, trpo, a2c...")
    p.add_argument("--steps", type=int, default=None, help="total agent steps (overrides the preset)")
    p.add_argument("--num-envs", type=int, default=None, help="parallel EnvPool envs (overrides the preset)")
    p.add_argument("--seed", type=int, default=0, help="training seed")
    p.add_argument("--action-repeat", type=int, default=None, help="control steps per agent step (default 1)")
    p.add_argument("--net-arch", type=int, nargs="+", default=None, help="hidden layer sizes of actor and critic")
    p.add_argument("--algo-kwargs", type=json.loads, default=None,
                   help='JSON of constructor arguments for the algorithm, e.g. \'{"learning_rate": 1e-4}\'')
    p.add_argument("--no-normalize-obs", dest="normalize_obs", action="store_false", default=None,
                   help="do not normalise observations")
    p.add_argument("--eval-every", type=int, default=None, help="agent steps between evaluations")
    p.add_argument("--checkpoint-every", type=int, default=None, help="agent steps between checkpoints")
    p.add_argument("--eval-episodes", type=int, default=None, help="episodes per periodic evaluation")
    p.add_argument("--final-eval-episodes", type=int, default=None, help="episodes per backend in the report")
    p.add_argument("--fresh", action="store_true", help="delete the run directory's checkpoints and start over")
    add_run_flags(p, out="run directory (default runs/experts/<task>/<algo>-<preset>-s<seed>)")
    return p


def config_from_args(args: argparse.Namespace) -> ExpertConfig:
    return stage_config(ExpertConfig, EXPERT_PRESETS, args.preset, flags=dict(
        task=args.task, algo=args.algo, total_steps=args.steps, num_envs=args.num_envs, seed=args.seed,
        action_repeat=args.action_repeat, net_arch=tuple(args.net_arch) if args.net_arch else None,
        algo_kwargs=args.algo_kwargs, normalize_obs=args.normalize_obs, eval_every=args.eval_every,
        checkpoint_every=args.checkpoint_every, eval_episodes=args.eval_episodes,
        final_eval_episodes=args.final_eval_episodes))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    report = train_expert(config_from_args(args), args.out, resume=not args.fresh, progress=not args.no_progress)
    summary = {k: report[k] for k in ("task", "algo", "preset", "steps", "train_wall_s")}
    for which in ("final", "best"):
        summary[which] = {b: round(r["mean"], 1) for b, r in report[which].items()}
    summary["reference_ppo_8M"] = report["reference_ppo_8M"]
    print_summary(summary)
    return report


def main_entry() -> None:
    """The console script ``rl-laof-expert``."""
    run(main)


if __name__ == "__main__":
    run(main)
