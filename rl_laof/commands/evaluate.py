"""Replay a trained agent: ``python -m rl_laof.evaluate RUN_DIR [--episodes N] [--which final|best|start]``.

Rebuilds the run's env and action space (``agents.replay``), runs N episodes with deterministic actions,
prints their returns as JSON and writes a video of the first episode (what the agent sees, upscaled) to
``RUN_DIR/replay.gif`` (and ``.mp4`` where ffmpeg is available).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from agents.replay import WHICH, evaluate_run
from rl_laof.cli import command_parser, print_summary, run


def build_parser() -> argparse.ArgumentParser:
    p = command_parser("rl_laof.evaluate", __doc__)
    p.add_argument("run_dir", type=Path, help="a run folder of python -m rl_laof.train")
    p.add_argument("--episodes", type=int, default=4, help="episodes to replay (deterministic actions)")
    p.add_argument("--which", choices=list(WHICH), default="final",
                   help="final: the model at the end of training; best: the best periodic evaluation's; start: the "
                        "policy a residual (or LAFP noise-space) agent started from, its action mean at 0")
    p.add_argument("--seed", type=int, default=123, help="seed of the replay envs (not the training ones)")
    p.add_argument("--no-video", action="store_true", help="no replay.gif / replay.mp4")
    return p


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    if args.episodes < 1:
        raise ValueError(f"--episodes {args.episodes}: need at least 1.")
    out = evaluate_run(args.run_dir, args.episodes, args.which, args.seed, not args.no_video)
    print_summary(out)
    return out


def main_entry() -> None:
    """The console script ``rl-laof-evaluate``."""
    run(main)


if __name__ == "__main__":
    run(main)
