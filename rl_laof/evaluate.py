"""Replay a trained agent: ``python -m rl_laof.evaluate RUN_DIR [--episodes N] [--which final|best]``.

Rebuilds the run's env and action space (``rl_laof.train``), runs N episodes with deterministic actions,
prints their returns as JSON and writes a video of the first episode (what the agent sees, upscaled) to
``RUN_DIR/replay.gif`` (and ``.mp4`` where ffmpeg is available).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

from rl_laof.runs import read_json, write_json


def evaluate_run(run_dir: str | Path, episodes: int = 4, which: str = "final", seed: int = 123,
                 video: bool = True) -> dict:
    from stable_baselines3.common.vec_env import VecNormalize

    from rl_laof.agents import ALGOS
    from rl_laof.config import TrainConfig
    from rl_laof.train import agent_returns, load_latent_space, load_skill_space, make_env

    run_dir = Path(run_dir)
    model_file = run_dir / f"{which}_model.zip"
    if not model_file.exists():
        raise FileNotFoundError(f"{model_file}: no trained agent (train one with python -m rl_laof.train --out "
                                f"{run_dir})")
    saved = read_json(run_dir / "config.json")
    cfg = TrainConfig(**saved["config"])
    agent, meta = load_latent_space(cfg, Path(saved["latent_agent"])) if saved["latent_agent"] else (None, None)
    skills = None
    if cfg.latent == "sof":  # the video then holds one frame per skill (chunk)
        skills, _ = load_skill_space(dataclasses.replace(cfg, skills=saved["skills"]))
    venv = make_env(cfg, episodes, seed, agent, meta, skills, training=False)
    if (run_dir / "vecnormalize.pkl").exists():
        venv = VecNormalize.load(str(run_dir / "vecnormalize.pkl"), venv)
        venv.training, venv.norm_reward = False, False
    model = ALGOS[cfg.algo].algo_class.load(model_file, device="cpu")
    try:
        returns, frames = agent_returns(model, venv, record=video and cfg.obs == "pixels")
    finally:
        venv.close()
    out = {"run": str(run_dir), "which": which, "episodes": episodes, "mean": float(returns.mean()),
           "std": float(returns.std()), "returns": returns.round(2).tolist()}
    if video and frames:
        out.update(write_video(np.stack(frames), run_dir / "replay"))
    write_json(run_dir / f"evaluate_{which}.json", out)
    return out


def write_video(frames: np.ndarray, stem: Path, scale: int = 4) -> dict[str, str]:
    """(T, H, W, 3) uint8 -> ``stem.gif`` (always) and ``stem.mp4`` (where ffmpeg works)."""
    import imageio.v3 as iio

    big = np.repeat(np.repeat(frames, scale, axis=1), scale, axis=2)
    written = {"gif": str(stem.with_suffix(".gif"))}
    iio.imwrite(stem.with_suffix(".gif"), big, duration=40, loop=0)
    try:
        iio.imwrite(stem.with_suffix(".mp4"), big, fps=25, codec="libx264", macro_block_size=1)
        written["mp4"] = str(stem.with_suffix(".mp4"))
    except Exception as exc:  # no ffmpeg plugin: the GIF is enough
        written["mp4_skipped"] = f"{type(exc).__name__}: {exc}"[:200]
    return written


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m rl_laof.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", type=Path, help="a run folder of python -m rl_laof.train")
    p.add_argument("--episodes", type=int, default=4)
    p.add_argument("--which", choices=["final", "best"], default="final")
    p.add_argument("--seed", type=int, default=123)
    p.add_argument("--no-video", action="store_true")
    args = p.parse_args(argv)
    if args.episodes < 1:
        raise ValueError(f"--episodes {args.episodes}: need at least 1.")
    out = evaluate_run(args.run_dir, args.episodes, args.which, args.seed, not args.no_video)
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    from rl_laof.cli import run

    run(main)
