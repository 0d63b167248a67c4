"""Video datasets: ``python -m rl_laof.collect --task cheetah-run --distractors hard --episodes N --out DIR``.

Rolls an expert (with optional Gaussian action noise) out on the dm_control backend, with distractors, and
writes ``DIR/dataset.h5`` (layout: :mod:`rl_laof.data.format`; the collection: :mod:`rl_laof.data.collection`,
multi-process and resumable). ``--expert auto`` finds the preset's expert or trains it first.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from pathlib import Path

from envs.config import DistractorConfig
from rl_laof import pipeline
from rl_laof.cli import add_run_flags, print_summary, run, stage_config, stage_parser
from rl_laof.data.config import COLLECT_PRESETS, CollectConfig
from rl_laof.data.dataset import VideoDataset
from rl_laof.runs import dataset_dir


def build_parser() -> argparse.ArgumentParser:
    p = stage_parser("rl_laof.collect", __doc__, COLLECT_PRESETS,
                     "quick: 32 train + 8 val + 8 eval + 4 heldout_bg episodes of <= 500 steps (minutes on 2 "
                     "cores); paper: 500+50+50+50 full episodes")
    p.add_argument("--distractors", default=None,
                   help="none / easy / medium / hard / laom (LAOM's setting: camera and colour 0.1, every video, "
                        "no occluders), or 'hard:background,camera' (default: hard)")
    p.add_argument("--episodes", type=int, default=None, help="train episodes")
    p.add_argument("--eval-episodes", type=int, default=None,
                   help="held-out episodes (same distractors), for reported figures only")
    p.add_argument("--val-episodes", type=int, default=None,
                   help="held-out episodes (same distractors) for choices: defaults, budgets, sweeps (0: no val split)")
    p.add_argument("--heldout-bg-episodes", type=int, default=None,
                   help="held-out episodes with held-out background videos (generalisation split)")
    p.add_argument("--episode-steps", type=int, default=None, help="agent steps per episode (default: preset)")
    p.add_argument("--full-episodes", action="store_true", help="whole 1000-step episodes, whatever the preset")
    p.add_argument("--image-size", type=int, default=None, help="frame size in pixels")
    p.add_argument("--action-repeat", type=int, default=None, help="control steps per agent step")
    p.add_argument("--expert", default=None,
                   help="'auto' (the preset's expert, trained if missing), an expert run directory, or 'random'")
    p.add_argument("--action-noise", type=float, default=None, help="std of Gaussian noise on the expert's actions")
    p.add_argument("--workers", type=int, default=None, help="collection processes")
    p.add_argument("--seed", type=int, default=None, help="dataset seed (episodes, label splits)")
    p.add_argument("--no-exact-flow-inputs", dest="exact_flow_inputs", action="store_false", default=None,
                   help="do not store depth, geom ids and poses (smaller files; no exact flow later)")
    p.add_argument("--compression", default=None, choices=["lzf", "gzip", "none"], help="HDF5 compression")
    p.add_argument("--keep-parts", action="store_true", help="keep the per-episode part files after merging")
    add_run_flags(p, out="dataset folder (default runs/datasets/<task>/<name>)")
    return p


def config_from_args(args: argparse.Namespace) -> CollectConfig:
    compression = None if args.compression in (None, "none") else args.compression
    cfg = stage_config(CollectConfig, COLLECT_PRESETS, args.preset, flags=dict(
        task=args.task, distractors=DistractorConfig.parse(args.distractors) if args.distractors else None,
        episodes=args.episodes, eval_episodes=args.eval_episodes, heldout_bg_episodes=args.heldout_bg_episodes,
        val_episodes=args.val_episodes,
        episode_steps=args.episode_steps, image_size=args.image_size, action_repeat=args.action_repeat,
        expert=args.expert, action_noise=args.action_noise, workers=args.workers, seed=args.seed,
        exact_flow_inputs=args.exact_flow_inputs, compression=compression))
    if args.compression == "none":
        cfg = dataclasses.replace(cfg, compression=None)
    if args.full_episodes:
        cfg = dataclasses.replace(cfg, episode_steps=None)
    return cfg


def main(argv: list[str] | None = None) -> Path:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    cfg = config_from_args(args)
    out = args.out if args.out is not None else dataset_dir(cfg.task, cfg.name)
    command = shlex.join(["python", "-m", "rl_laof.collect", *argv, *(["--out", str(out)] if args.out is None else [])])
    path = pipeline.dataset(cfg, out, progress=not args.no_progress, keep_parts=args.keep_parts, command=command)
    print_summary(dict(dataset=str(path), **VideoDataset(path).summary(brief=True)))
    return path


def main_entry() -> None:
    """The console script ``rl-laof-collect``."""
    run(main)


if __name__ == "__main__":
    run(main)
