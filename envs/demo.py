"""See what the agent sees: ``python -m envs.demo --task cheetah-run --distractors hard``.

Writes, into ``--out``:
  * ``<task>_<level>.gif`` (and ``.mp4`` where ffmpeg is available): a short rollout with the
    chosen distractors, four envs side by side;
  * ``<task>_levels.png``: a grid of frames, one row per level (clean, easy, medium, hard);
  * ``<task>_backends.png``: EnvPool and dm_control side by side at the same level, plus the
    dm_control agent mask, to show both backends frame and colour the scene alike;
  * ``demo.json``: what was written and with which settings.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import imageio.v3 as iio
import numpy as np
from PIL import Image, ImageDraw

import envs
from envs.cli import command_parser, run
from envs.tasks import get_task

LEVELS = ("none", "easy", "medium", "hard", "laom")


def _last_frames(obs: np.ndarray) -> np.ndarray:
    """(n, 3k, H, W) stacked obs -> (n, H, W, 3) newest frames."""
    return obs[:, -3:].transpose(0, 2, 3, 1)


def _upscale(img: np.ndarray, k: int) -> np.ndarray:
    return np.repeat(np.repeat(img, k, axis=0), k, axis=1)


def _label(img: np.ndarray, text: str) -> np.ndarray:
    pil = Image.fromarray(img)
    ImageDraw.Draw(pil).text((3, 2), text, fill=(255, 255, 255), stroke_width=2, stroke_fill=(0, 0, 0))
    return np.asarray(pil)


def rollout_frames(task: str, distractors: str, steps: int, num_envs: int, seed: int, size: int,
                   backend: str = "envpool") -> np.ndarray:
    """(steps, num_envs, H, W, 3): frames under a random policy."""
    venv = envs.make(task, num_envs=num_envs, distractors=distractors, seed=seed, image_size=size,
                     backend=backend, monitor=False)
    rng = np.random.default_rng(seed)
    frames = [_last_frames(venv.reset())]
    for _ in range(steps - 1):
        obs, *_ = venv.step(rng.uniform(-1, 1, (num_envs, *venv.action_space.shape)))
        frames.append(_last_frames(obs))
    venv.close()
    return np.stack(frames)


def level_grid(task: str, seed: int, size: int, cols: int = 6, every: int = 8) -> np.ndarray:
    rows = []
    for level in LEVELS:
        f = rollout_frames(task, level, cols * every, 1, seed, size)[::every, 0]
        row = np.concatenate(list(f), axis=1)
        rows.append(_label(_upscale(row, 2), level))
    return np.concatenate(rows, axis=0)


def backend_comparison(task: str, level: str, seed: int, size: int, n: int = 4) -> np.ndarray:
    ep = rollout_frames(task, level, 1, n, seed, size, backend="envpool")[0]
    venv = envs.make(task, num_envs=n, distractors=level, seed=seed, image_size=size, backend="dm_control",
                     monitor=False)
    venv.reset()
    obs, _, _, infos = venv.step(np.zeros((n, *venv.action_space.shape)))
    venv.close()
    dm = _last_frames(obs)
    masks = np.stack([np.repeat(i["agent_mask"][..., None] * 255, 3, axis=2) for i in infos]).astype(np.uint8)
    rows = [("envpool", ep), ("dm_control", dm), ("agent mask", masks)]
    return np.concatenate([_label(_upscale(np.concatenate(list(f), axis=1), 2), name) for name, f in rows], axis=0)


def main(argv: list[str] | None = None) -> dict:
    p = command_parser("envs.demo", __doc__)
    p.add_argument("--task", default="cheetah-run", help="dm_control task name, e.g. cheetah-run, walker-walk")
    p.add_argument("--distractors", default="hard", choices=LEVELS, help="level shown in the video")
    p.add_argument("--steps", type=int, default=120, help="length of the video in env steps")
    p.add_argument("--size", type=int, default=64, help="image size in pixels")
    p.add_argument("--seed", type=int, default=0, help="seed of envs, distractors and the random policy")
    p.add_argument("--out", default="outputs/demo", help="output folder")
    args = p.parse_args(argv)
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
    envs.ensure_gl()  # no headless GL: one line, before any file is written
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{args.task}_{args.distractors}"
    video = rollout_frames(args.task, args.distractors, args.steps, 4, args.seed, args.size)
    video = np.stack([_upscale(np.concatenate(list(f), axis=1), 2) for f in video])
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


if __name__ == "__main__":
    run(main)
