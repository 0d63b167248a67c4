"""See what the agent sees: ``python -m rl_laof.commands.demo --task cheetah-run --distractors hard``.

Writes, into ``--out``:
  * ``<task>_<level>.gif`` (and ``.mp4`` where ffmpeg is available): a short rollout with the
    chosen distractors, four envs side by side;
  * ``<task>_levels.png``: a grid of frames, one row per level (clean, easy, medium, hard);
  * ``<task>_backends.png``: EnvPool and dm_control side by side at the same level, plus the
    dm_control agent mask, to show both backends frame and colour the scene alike;
  * ``demo.json``: what was written and with which settings.

The frames come from :mod:`envs.demo`; console script: ``rl-laof-demo``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import imageio.v3 as iio
import numpy as np

import envs
from envs.demo import LEVELS, backend_comparison, level_grid, rollout_frames, upscale
from envs.tasks import get_task
from rl_laof.cli import command_parser, run


def build_parser():
    p = command_parser("rl_laof.commands.demo", __doc__)
    p.add_argument("--task", default="cheetah-run", help="dm_control task name, e.g. cheetah-run, walker-walk")
    p.add_argument("--distractors", default="hard", choices=LEVELS, help="level shown in the video")
    p.add_argument("--steps", type=int, default=120, help="length of the video in env steps")
    p.add_argument("--size", type=int, default=64, help="image size in pixels")
    p.add_argument("--seed", type=int, default=0, help="seed of envs, distractors and the random policy")
    p.add_argument("--out", default="outputs/demo", help="output folder")
    return p


def check(args) -> Path:
    """The flags' values checked before anything is written; the output folder."""
    if args.steps < 2:
        raise ValueError(f"--steps {args.steps}: the video needs at least 2 steps")
    if not 16 <= args.size <= 512:
        raise ValueError(f"--size {args.size}: use 16..512 pixels a side (64 is standard)")
    if args.seed < 0:
        raise ValueError(f"--seed {args.seed}: seeds are >= 0")
    get_task(args.task)  # fail early, listing the valid tasks
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder")
    return out


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    out = check(args)
    envs.ensure_gl()  # no headless GL: one line, before any file is written
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{args.task}_{args.distractors}"
    video = rollout_frames(args.task, args.distractors, args.steps, 4, args.seed, args.size)
    video = np.stack([upscale(np.concatenate(list(f), axis=1), 2) for f in video])
    written = {}
    gif = out / f"{stem}.gif"
    iio.imwrite(gif, video, duration=40, loop=0)
    written["gif"] = str(gif)
    try:
        mp4 = out / f"{stem}.mp4"
        iio.imwrite(mp4, video, fps=25, codec="libx264", macro_block_size=1)
        written["mp4"] = str(mp4)
    except Exception as exc:  # ffmpeg missing or codec unavailable: the GIF is enough
        written["mp4_skipped"] = f"{type(exc).__name__}: {exc}"[:200]
    grid = out / f"{args.task}_levels.png"
    iio.imwrite(grid, level_grid(args.task, args.seed, args.size))
    written["levels_png"] = str(grid)
    both = out / f"{args.task}_backends.png"
    iio.imwrite(both, backend_comparison(args.task, args.distractors, args.seed, args.size))
    written["backends_png"] = str(both)
    report = {"task": args.task, "distractors": args.distractors, "steps": args.steps, "size": args.size,
              "seed": args.seed, "files": written}
    tmp = out / ".demo.json.tmp"
    tmp.write_text(json.dumps(report, indent=2))
    os.replace(tmp, out / "demo.json")
    print(json.dumps(report))
    return report


def main_entry() -> None:
    """The console script ``rl-laof-demo``."""
    run(main)


if __name__ == "__main__":
    run(main)
