"""Latent action models: ``python -m rl_laof.lam --method laof --dataset DIR``.

Trains LAPO, LAOM or LAOF (``--method``, with ``-action`` for an action head on the labelled share
given by ``--labels F`` or ``--labelled-trajectories N``) on a video dataset, with progress,
TensorBoard, periodic held-out evaluation (losses and a linear action probe), checkpoints that
resume exactly, and a JSON report with the latent-quality probes (``rl_laof.lam.probes``). Without
``--dataset`` it uses the task's default dataset at the preset, collecting it (and its expert, and
for LAOF the flow file of its tier: TV-L1 from RGB for the default `rgb`) first if it is missing.

Data-parallel: ``torchrun --nproc_per_node=N -m rl_laof.lam ...`` (gloo on CPU, nccl on GPU);
every process draws the same global batch and trains on its slice, so N processes reproduce one.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rl_laof import distributed as dist
from rl_laof.cli import add_run_flags, print_summary, run, stage_config, stage_parser
from rl_laof.commands._common import stage_dataset
from rl_laof.config_file import config_section
from rl_laof.lam.config import LAM_METHODS, LAM_PRESETS, LAMConfig
from rl_laof.lam.training import train_lam


def build_parser() -> argparse.ArgumentParser:
    p = stage_parser("rl_laof.lam", __doc__, LAM_PRESETS,
                     "quick: 1000 steps of batch 64, width 16 (minutes on 2 cores); paper: 50k steps of 128, width 64")
    p.add_argument("--method", default=None, choices=list(LAM_METHODS),
                   help="lapo / laom / laof (the default); -action adds an action head on the labelled windows")
    p.add_argument("--dataset", type=Path, default=None,
                   help="dataset folder (default: the task's dataset at the preset, collected if missing)")
    p.add_argument("--labels", type=float, default=None, help="labelled fraction for -action (default 0.01)")
    p.add_argument("--labelled-trajectories", type=int, default=None, help="or N labelled whole episodes")
    p.add_argument("--latent", choices=["vq", "continuous"], default=None, help="default: the method's")
    p.add_argument("--steps", type=int, default=None, help="training steps")
    p.add_argument("--batch-size", type=int, default=None, help="global batch (split over processes)")
    p.add_argument("--width", type=int, default=None, help="base channel count")
    p.add_argument("--seed", type=int, default=None, help="seed of the batches, augmentation and model (default 0)")
    p.add_argument("--threads", type=int, default=None, help="torch threads per process")
    add_run_flags(p, "run folder (default runs/lam/<task>/<dataset>/<run>)", LAMConfig, "flow_weight=0.5",
                  "a config file's 'lam' section (e.g. a sweep's best.json); flags and --set win")
    return p


def config_from_args(args: argparse.Namespace) -> LAMConfig:
    return stage_config(LAMConfig, LAM_PRESETS, args.preset, file=config_section(args.config, "lam"),
                        flags=dict(method=args.method, labels=args.labels,
                                   labelled_trajectories=args.labelled_trajectories, latent=args.latent,
                                   steps=args.steps, batch_size=args.batch_size, width=args.width, seed=args.seed,
                                   threads=args.threads), sets=args.set)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    cfg = config_from_args(args)
    dataset = stage_dataset(args, flow=cfg.flow_method if cfg.resolved().flow_weight > 0 else None)
    try:
        report = train_lam(cfg, dataset, args.out, progress=not args.no_progress)
        main_process = dist.is_main()
    finally:
        dist.shutdown()
    if report and main_process:
        pr = report["probes"]
        print_summary({"method": report["method"], "run": report["run_dir"],
                       "linear_probe_action_mse": round(pr["eval"]["linear_action_mse"], 4),
                       "mean_action_mse": round(pr["eval"]["mean_action_mse"], 4),
                       "train_samples_per_s": report["train_samples_per_s"]})
    return report


def main_entry() -> None:
    """The console script ``rl-laof-lam``."""
    run(main)


if __name__ == "__main__":
    run(main)
