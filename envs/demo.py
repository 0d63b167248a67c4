"""What the agent sees, as pictures: rollout frames under a random policy, a grid of the distractor levels, and
EnvPool beside dm_control. The command that writes them is ``python -m rl_laof.commands.demo`` (``rl-laof-demo``);
this module is its library and imports nothing of ``rl_laof``.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

import envs

LEVELS = ("none", "easy", "medium", "hard", "laom")


def _last_frames(obs: np.ndarray) -> np.ndarray:
    """(n, 3k, H, W) stacked obs -> (n, H, W, 3) newest frames."""
    return obs[:, -3:].transpose(0, 2, 3, 1)


def upscale(img: np.ndarray, k: int) -> np.ndarray:
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
        rows.append(_label(upscale(row, 2), level))
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
    return np.concatenate([_label(upscale(np.concatenate(list(f), axis=1), 2), name) for name, f in rows], axis=0)
