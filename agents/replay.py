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
from agents.policy import zero_mean
from agents.training import agent_returns, agent_spread, load_latent_space, load_skill_space, make_env
from rl_laof.runs import read_json, write_json

WHICH = ("final", "best", "start")


def starts_at_zero_mean(cfg: TrainConfig) -> bool:
    """Whether the agent's start is its action mean at 0 (``agents.policy.zero_mean``): a latent or raw-action
    residual (0 = the frozen policy it corrects) or LAFP's noise space (0 = the flow policy's mean noise)."""
    lafp_noise = cfg.policy == "lafp" and cfg.latent not in ("none", "sof") and not cfg.action_residual
    return cfg.on_policy and (cfg.on_features or lafp_noise)


def evaluate_run(run_dir: str | Path, episodes: int = 4, which: str = "final", seed: int = 123,
                 video: bool = True) -> dict:
    """Replay the ``which`` model of an agent run for ``episodes`` episodes (deterministic actions); write
    ``evaluate_<which>.json`` and, for pixels, a video of the first episode. Returns the returns and, in a latent
    action space, the ``spread`` of the executed actions (:func:`agents.training.agent_spread`).

    ``which``: "final" (the model at the end of training), "best" (the best periodic evaluation's) or "start": the
    policy the agent started from, for an agent whose start is its action mean at 0 (:func:`starts_at_zero_mean`):
    the final model with its action mean zeroed acts exactly as the frozen policy it corrects, so the start and the
    final model can be compared on the same episodes."""
    if which not in WHICH:
        raise ValueError(f"which={which!r}: use one of {', '.join(WHICH)}")
    run_dir = Path(run_dir)
    stored = "final" if which == "start" else which
    model_file = run_dir / f"{stored}_model.zip"
    if not model_file.exists() and (run_dir / f"{stored}_model.pt").exists():  # DrQ-v2's (agents.drq)
        model_file = run_dir / f"{stored}_model.pt"
    if not model_file.exists():
        raise FileNotFoundError(f"{run_dir}: {why_no_model(run_dir, stored)}")
    saved = read_json(run_dir / "config.json")
    cfg = TrainConfig.from_recorded(saved["config"])
    if which == "start" and not starts_at_zero_mean(cfg):
        raise ValueError(f"{run_dir}: --which start replays the policy an agent started from, which only a residual "
                         f"agent or one in LAFP's noise space has (its action mean at 0); this run is {cfg.algo} in "
                         f"the {cfg.latent!r} space with policy {cfg.policy!r}")
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
    if which == "start" and not zero_mean(model):
        raise ValueError(f"{run_dir}: the {cfg.algo} model has no action mean to zero")
    executed: list[np.ndarray] | None = [] if skills is None else None  # a skill's chunk is many env steps
    try:
        returns, frames = agent_returns(model, venv, record=video and cfg.obs == "pixels", executed=executed)
    finally:
        venv.close()
    out = {"run": str(run_dir), "which": which, "episodes": episodes, "seed": seed, "mean": float(returns.mean()),
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
