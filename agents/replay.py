"""Replaying a trained agent (``python -m rl_laof.evaluate``): the run's env and action space rebuilt, N
episodes with deterministic actions, their returns, and a video of the first episode (what the agent sees,
upscaled) as ``replay.gif`` (and ``.mp4`` where ffmpeg is available)."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
from stable_baselines3.common.vec_env import VecNormalize

from agents.algorithms import ALGOS
from agents.config import TrainConfig
from agents.drq import load_policy
from agents.training import agent_returns, agent_spread, load_latent_space, load_skill_space, make_env
from rl_laof.runs import read_json, write_json


def evaluate_run(run_dir: str | Path, episodes: int = 4, which: str = "final", seed: int = 123,
                 video: bool = True) -> dict:
    """Replay the ``which`` model of an agent run for ``episodes`` episodes (deterministic actions); write
    ``evaluate_<which>.json`` and, for pixels, a video of the first episode. Returns the returns and, in a latent
    action space, the ``spread`` of the executed actions (:func:`agents.training.agent_spread`)."""
    run_dir = Path(run_dir)
    model_file = run_dir / f"{which}_model.zip"
    if not model_file.exists() and (run_dir / f"{which}_model.pt").exists():  # DrQ-v2's (agents.drq)
        model_file = run_dir / f"{which}_model.pt"
    if not model_file.exists():
        raise FileNotFoundError(f"{run_dir}: {why_no_model(run_dir, which)}")
    saved = read_json(run_dir / "config.json")
    cfg = TrainConfig(**saved["config"])
    policy, meta = load_latent_space(cfg, Path(saved["latent_policy"])) if saved["latent_policy"] else (None, None)
    skills = None
    if cfg.latent == "sof":  # the video then holds one frame per skill (chunk)
        skills, _ = load_skill_space(cfg, saved["skills"])
    venv = make_env(cfg, episodes, seed, policy, meta, skills, training=False)
    if (run_dir / "vecnormalize.pkl").exists():
        venv = VecNormalize.load(str(run_dir / "vecnormalize.pkl"), venv)
        venv.training, venv.norm_reward = False, False
    model = load_policy(model_file) if ALGOS[cfg.algo].native else ALGOS[cfg.algo].algo_class.load(model_file,
                                                                                                   device="cpu")
    executed: list[np.ndarray] | None = [] if skills is None else None  # a skill's chunk is many env steps
    try:
        returns, frames = agent_returns(model, venv, record=video and cfg.obs == "pixels", executed=executed)
    finally:
        venv.close()
    out = {"run": str(run_dir), "which": which, "episodes": episodes, "mean": float(returns.mean()),
           "std": float(returns.std()), "returns": returns.round(2).tolist(),
           # the executed actions' spread on the agent's own states over the expert's on its latent policy's data
           "spread": agent_spread(meta, executed)}
    if video and frames:
        out.update(write_video(np.stack(frames), run_dir / "replay"))
    write_json(run_dir / f"evaluate_{which}.json", out)
    return out


def why_no_model(run_dir: Path, which: str) -> str:
    """Why ``run_dir`` has no ``<which>_model.zip``, and what works instead."""
    if run_dir.exists() and not run_dir.is_dir():
        return "a file, not a run folder of python -m rl_laof.train"
    if not (run_dir / "config.json").exists():
        return "not a run folder of python -m rl_laof.train (no config.json)"
    other = "best" if which == "final" else "final"
    if any(run_dir.glob(f"{other}_model.*")):
        return (f"no {which} model: the run did not finish; --which {other} replays its {other} model, and the "
                "command that started it, with --resume, finishes it")
    return f"no {which} model yet: the run did not finish; the command that started it, with --resume, continues it"


def write_video(frames: np.ndarray, stem: Path, scale: int = 4) -> dict[str, str]:
    """(T, H, W, 3) uint8 -> ``stem.gif`` (always) and ``stem.mp4`` (where ffmpeg works)."""
    big = np.repeat(np.repeat(frames, scale, axis=1), scale, axis=2)
    written = {"gif": str(stem.with_suffix(".gif"))}
    iio.imwrite(stem.with_suffix(".gif"), big, duration=40, loop=0)
    try:
        iio.imwrite(stem.with_suffix(".mp4"), big, fps=25, codec="libx264", macro_block_size=1)
        written["mp4"] = str(stem.with_suffix(".mp4"))
    except Exception as exc:  # no ffmpeg plugin: the GIF is enough
        written["mp4_skipped"] = f"{type(exc).__name__}: {exc}"[:200]
    return written
