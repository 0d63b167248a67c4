"""Latent policies: ``python -m rl_laof.imitation --latent laof --policy lafp --dataset DIR``.

Imitates a video dataset from pixels through a latent action model's latents, with a few action labels:
the policy predicts the model's normalised latent of each transition by behaviour cloning (``bc``) or by
LAFP flow matching (``lafp``); it is then frozen and an action decoder is trained on the labelled
transitions only (decoder modes: IDM latents, direct samples, inference-time interpolation, or the best of
those on validation episodes). Baselines on the same labels: ``--latent none`` (BC on the labelled
transitions) and ``--latent none --relabel idm``
(an inverse dynamics model trained on the labels relabels every transition, then BC). Returns are measured
on the EnvPool pixel env with the data's distractors and with held-out backgrounds, over several episodes
and seeds, and normalised by BC on all labels (trained too when missing); latency is ms per action.

Stages (latent targets, IDM, policy, decoder) checkpoint every ``checkpoint_every`` steps and are kept when
done, so an interrupted run continues where it stopped. Writes ``report.json``, ``returns.png`` and
TensorBoard logs under ``runs/imitation/<task>/<dataset>/<run>``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rl_laof import pipeline
from rl_laof.cli import add_run_flags, print_summary, run, stage_config, stage_parser
from rl_laof.commands._common import stage_dataset
from rl_laof.imitation.config import DECODER_MODES, IMITATION_PRESETS, ImitationConfig
from rl_laof.lam.config import LAM_METHODS


def build_parser() -> argparse.ArgumentParser:
    p = stage_parser("rl_laof.imitation", __doc__, IMITATION_PRESETS,
                     "quick: 8000 policy steps of batch 64, width 32 (about 8 min on 2 cores); "
                     "paper: 50k steps of 256, width 32, 512 features")
    p.add_argument("--latent", default="laof", choices=["none", *LAM_METHODS],
                   help="the latent action model whose latents the policy predicts; none: predict actions")
    p.add_argument("--policy", default="bc", choices=["bc", "lafp"], help="behaviour cloning or LAFP flow matching")
    p.add_argument("--dataset", type=Path, default=None,
                   help="dataset folder (default: the task's dataset at the preset, collected if missing)")
    p.add_argument("--labels", type=float, default=None, help="labelled fraction of transitions (default 0.01)")
    p.add_argument("--label-trajectories", type=int, default=None, metavar="N",
                   help="label N whole episodes instead (label split traj-N; per task on a multi-task dataset)")
    p.add_argument("--relabel", choices=["none", "idm"], default=None,
                   help="--latent none only: idm = relabel every transition with an IDM trained on the labels")
    p.add_argument("--lam", default=None, metavar="RUN_DIR",
                   help="latent action model run (default: the preset's run for the dataset, trained if missing)")
    p.add_argument("--decoder", choices=list(DECODER_MODES), default=None,
                   help="decoder training: IDM latents, policy samples, inference-time interpolation, or val: "
                        "each of those the policy allows, keeping the best on the val episodes "
                        "(default: interp for lafp, val for bc)")
    p.add_argument("--interp-tau", type=float, default=None, help="fixed tau_i for interp (default U(0, 1))")
    p.add_argument("--euler-steps", type=int, default=None, help="LAFP's K (default 3)")
    p.add_argument("--steps", type=int, default=None, help="policy training steps")
    p.add_argument("--episodes", type=int, default=None, help="evaluation episodes per seed and background set")
    p.add_argument("--seeds", type=int, default=None, help="evaluation seeds")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the networks and batches; also picks the latent model of that seed (default 0)")
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    p.add_argument("--no-normalise", action="store_true", help="skip BC on all labels (the normaliser)")
    add_run_flags(p, "run folder (default runs/imitation/<task>/<dataset>/<run>)", ImitationConfig, "decoder_steps=500")
    return p


def config_from_args(args: argparse.Namespace) -> ImitationConfig:
    flags = dict(latent=args.latent, policy=args.policy, labels=args.labels, label_trajectories=args.label_trajectories,
                 relabel=args.relabel, lam_run=args.lam, decoder=args.decoder, interp_tau=args.interp_tau,
                 euler_steps=args.euler_steps, steps=args.steps, eval_episodes=args.episodes, eval_seeds=args.seeds,
                 seed=args.seed, threads=args.threads, normalise=False if args.no_normalise else None)
    return stage_config(ImitationConfig, IMITATION_PRESETS, args.preset, flags=flags, sets=args.set)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    cfg = config_from_args(args)
    dataset = stage_dataset(args, flow=cfg.latent.removesuffix("-action") == "laof")
    report = pipeline.imitation(cfg, dataset, args.out, progress=not args.no_progress)
    summary = {"run": report["run_dir"], "tag": report["tag"], "ms_per_action": report["ms_per_action"],
               **{f"return_{bg}": round(r["mean"], 1) for bg, r in report["returns"].items()}}
    if "normalised" in report:
        summary.update({f"normalised_{bg}": round(r["mean"], 3) for bg, r in report["normalised"].items()})
    print_summary(summary)
    return report


def main_entry() -> None:
    """The console script ``rl-laof-imitation``."""
    run(main)


if __name__ == "__main__":
    run(main)
