"""Experts on state observations (``python -m rl_laof.expert``): training, evaluation, and the expert users load.

Trains a stable-baselines3 / sb3-contrib agent (PPO by default) on the EnvPool backend's state
observations, evaluates it during training (TensorBoard + ``eval.json``), checkpoints so that a
killed run resumes where it stopped, and writes ``report.json``: the return of the final and best
policies on *both* backends (EnvPool, where it trained, and dm_control, where datasets are
collected), next to the published PPO references.

Run directory (``rl_laof.runs.expert_dir``)::

    config.json                 resolved ExpertConfig
    tb/                         TensorBoard logs
    checkpoints/latest.json     -> checkpoints/step-<n>/ (model.zip, vecnormalize.pkl, [replay_buffer.pkl])
    best/, final/               model.zip + obs_stats.npz: what :class:`Expert` loads
    eval.json                   evaluation history; report.json; learning_curve.png
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.vec_env import VecNormalize

import envs
from agents.algorithms import check_algo_kwargs, resolve_algorithm
from agents.config import ExpertConfig
from agents.loop import PeriodicCallback, learn, load_checkpoint, plot_learning_curve, replace_dir, save_checkpoint
from agents.resume import ResumableVecEnv
from envs.rollout import EVAL_SEED, run_episodes
from rl_laof.runs import expert_dir, lock_run, read_json, run_folder, write_json

EXPERT_LR_HINT = "lower the learning rate (--algo-kwargs '{\"learning_rate\": ...}')"

#: CleanRL PPO on state, 8M steps, 10 seeds (../shared/REFERENCES.md): mean, std.
PPO_REFERENCES = {
    "cheetah-run": (433, 83), "walker-walk": (393, 56), "walker-run": (126, 10), "reacher-easy": (626, 16),
    "finger-spin": (590, 171), "cartpole-swingup": (641, 11), "ball_in_cup-catch": (901, 5),
    "hopper-hop": (0.5, 0.5),
}


def _policy_kwargs(cfg: ExpertConfig) -> dict[str, Any]:
    arch = list(cfg.net_arch)
    if cfg.on_policy:
        return dict(net_arch=dict(pi=arch, vf=arch))
    return dict(net_arch=arch)


# --------------------------------------------------------------------------- environments

def make_state_env(task: str, num_envs: int, seed: int, action_repeat: int = 1, backend: str = "envpool"):
    return envs.make(task, num_envs=num_envs, obs="state", distractors=None, seed=seed, backend=backend,
                     action_repeat=action_repeat)


# --------------------------------------------------------------------------- the expert, for users

class Expert:
    """A trained policy on state observations: ``act(state) -> action``, obs normalisation included."""

    def __init__(self, model, obs_mean: np.ndarray | None, obs_var: np.ndarray | None, clip_obs: float = 10.0,
                 epsilon: float = 1e-8, config: dict | None = None):
        self.model = model
        self.obs_mean, self.obs_var = obs_mean, obs_var
        self.clip_obs, self.epsilon = clip_obs, epsilon
        self.config = config or {}
        self.action_space = model.action_space

    @classmethod
    def load(cls, run_dir: str | Path, which: str = "best") -> Expert:
        """Load ``best`` (highest evaluation return) or ``final`` from an expert run directory."""
        run_dir = Path(run_dir)
        src = run_dir / which
        if not (src / "model.zip").exists():
            raise FileNotFoundError(
                f"No expert at {src}: train one with `python -m rl_laof.expert --task <task> --out {run_dir}`.")
        config = read_json(run_dir / "config.json")
        algo = resolve_algorithm(config["algo"])
        model = algo.load(src / "model.zip", device="cpu")
        stats = np.load(src / "obs_stats.npz")
        mean = stats["mean"] if stats["normalize"] else None
        var = stats["var"] if stats["normalize"] else None
        return cls(model, mean, var, float(stats["clip"]), float(stats["epsilon"]), config)

    def normalize(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs, np.float32)
        if self.obs_mean is None:
            return obs
        norm = (obs - self.obs_mean) / np.sqrt(self.obs_var + self.epsilon)
        return np.clip(norm, -self.clip_obs, self.clip_obs).astype(np.float32)

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        """Actions for a batch ``(n, state_dim)`` of raw (unnormalised) state observations."""
        action, _ = self.model.predict(self.normalize(obs), deterministic=deterministic)
        return np.clip(action, self.action_space.low, self.action_space.high)


def save_policy(model, venv, dst: Path) -> None:
    """What :class:`Expert` needs: the model and the observation statistics, written atomically."""
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save(tmp / "model.zip")
    norm = isinstance(venv, VecNormalize) and venv.norm_obs
    np.savez(tmp / "obs_stats.npz", normalize=norm,
             mean=venv.obs_rms.mean if norm else np.zeros(0), var=venv.obs_rms.var if norm else np.zeros(0),
             clip=venv.clip_obs if norm else np.inf, epsilon=venv.epsilon if norm else 0.0)
    replace_dir(tmp, dst)


def evaluate_expert(act, task: str, episodes: int, seed: int, backend: str = "envpool", action_repeat: int = 1,
             deterministic: bool = True) -> dict[str, Any]:
    """Return of ``act(obs) -> actions`` over ``episodes`` episodes (one per env, all run in parallel)."""
    venv = make_state_env(task, episodes, seed, action_repeat, backend)
    try:
        returns = run_episodes(venv, lambda obs: act(obs, deterministic))
    finally:
        venv.close()
    return dict(backend=backend, episodes=episodes, seed=seed, mean=float(returns.mean()),
                std=float(returns.std()),
                stderr=float(returns.std(ddof=1) / np.sqrt(episodes)) if episodes > 1 else 0.0,
                returns=returns.round(2).tolist())


# --------------------------------------------------------------------------- training

def _obs_stats(venv):
    if isinstance(venv, VecNormalize) and venv.norm_obs:
        return venv.obs_rms.mean.astype(np.float32), venv.obs_rms.var.astype(np.float32), venv.clip_obs, venv.epsilon
    return None, None, 10.0, 1e-8


def open_expert_run(cfg: ExpertConfig, run_dir: Path, resume: bool) -> None:
    """Make ``run_dir`` the expert's folder: a folder of another config is refused when resuming, one started over
    (``resume`` False) loses its earlier outputs; the config is recorded."""
    config = cfg.to_dict()
    cfg_file = run_dir / "config.json"
    if cfg_file.exists() and resume:
        old = read_json(cfg_file)
        if json.loads(json.dumps(config)) != old:
            diff = sorted(k for k in set(old) | set(config) if old.get(k) != json.loads(json.dumps(config)).get(k))
            raise ValueError(f"{run_dir} holds an expert with another config (differs in {diff}): "
                             "pass --fresh to start over there, or --out for a new directory.")
    run_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        for name in ("checkpoints", "best", "final", "tb", "eval.json", "report.json"):
            p = run_dir / name
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    write_json(cfg_file, config)


def train_expert(cfg: ExpertConfig, run_dir: str | Path | None = None, resume: bool = True,
                 progress: bool = True) -> dict[str, Any]:
    """Train (or resume, or just report) the expert ``cfg`` describes; returns the report."""
    envs.get_task(cfg.task)  # unknown task: clear error before anything starts
    algo = resolve_algorithm(cfg.algo)
    kwargs = cfg.resolved_algo_kwargs()
    check_algo_kwargs(algo, {k: v for k, v in kwargs.items() if k != "policy_kwargs"})
    if run_dir is None:
        run_dir = expert_dir(cfg.task, cfg.algo, cfg.preset, cfg.seed, cfg.action_repeat)
    run_dir = run_folder(run_dir)
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    with lock_run(run_dir):  # one writer: open_expert_run records the config (and, started over, clears the folder)
        open_expert_run(cfg, run_dir, resume)
        report_file = run_dir / "report.json"
        if resume and report_file.exists():
            return read_json(report_file)
        return _train_expert(cfg, algo, kwargs, run_dir, resume, progress)


def _train_expert(cfg: ExpertConfig, algo: Any, kwargs: dict[str, Any], run_dir: Path, resume: bool,
                  progress: bool) -> dict[str, Any]:
    """The expert's training in its checked folder (resumed from its checkpoint with ``resume``), its final and
    best policies, their evaluation and the report."""
    report_file = run_dir / "report.json"
    inner = ResumableVecEnv(make_state_env(cfg.task, cfg.num_envs, cfg.seed, cfg.action_repeat))
    loaded = (load_checkpoint(algo, run_dir, lambda norm: VecNormalize.load(str(norm), inner), run_dir / "tb")
              if resume else None)
    ckpt = loaded[3] if loaded is not None else None
    history: list = []
    if loaded is not None:
        model, venv, history, _ = loaded
    else:
        venv = VecNormalize(inner, norm_obs=cfg.normalize_obs, norm_reward=cfg.resolved_normalize_reward,
                            gamma=cfg.resolved_algo_kwargs().get("gamma", 0.99))
        policy_kwargs = {**_policy_kwargs(cfg), **kwargs.pop("policy_kwargs", {})}
        try:
            model = algo("MlpPolicy", venv, seed=cfg.seed, device="cpu", tensorboard_log=str(run_dir / "tb"),
                         policy_kwargs=policy_kwargs, verbose=0, **kwargs)
        except TypeError as exc:
            raise ValueError(f"{cfg.algo}: bad algo_kwargs {cfg.algo_kwargs}: {exc}") from exc
    t0 = time.time()
    steps0 = model.num_timesteps
    eval_seed = cfg.seed + EVAL_SEED

    def periodic_eval(m) -> dict:
        return evaluate_expert(Expert(m, *_obs_stats(m.get_env())).act, cfg.task, cfg.eval_episodes, eval_seed,
                               "envpool", cfg.action_repeat)

    callback = PeriodicCallback(run_dir, cfg.total_steps, cfg.eval_every, cfg.checkpoint_every, periodic_eval, history,
                                f"expert {cfg.algo} {cfg.task}", progress,
                                on_best=lambda m: save_policy(m, m.get_env(), run_dir / "best"), hint=EXPERT_LR_HINT)
    remaining = cfg.total_steps - model.num_timesteps
    if remaining > 0:
        learn(model, remaining, callback, "expert", EXPERT_LR_HINT, reset_num_timesteps=ckpt is None,
              tb_log_name="run")
    train_s = time.time() - t0
    save_policy(model, venv, run_dir / "final")
    if not (run_dir / "best").exists():
        save_policy(model, venv, run_dir / "best")
    save_checkpoint(model, run_dir, history)
    venv.close()

    report = dict(task=cfg.task, algo=cfg.algo, preset=cfg.preset, seed=cfg.seed, steps=int(model.num_timesteps),
                  train_wall_s=round(train_s, 1),
                  steps_per_s=round((model.num_timesteps - steps0) / max(train_s, 1e-9)),
                  reference_ppo_8M=PPO_REFERENCES.get(cfg.task), eval_history=history)
    eval_seed = cfg.seed + 20_000  # held-out episodes: neither the training nor the periodic-eval seeds
    for which in ("final", "best"):
        expert = Expert.load(run_dir, which)
        report[which] = {b: evaluate_expert(expert.act, cfg.task, cfg.final_eval_episodes, eval_seed, b,
                                            cfg.action_repeat)
                         for b in ("envpool", "dm_control")}
    report["best_eval_step"] = max(history, key=lambda h: h["mean"])["step"] if history else None
    plot_expert_curve(report, run_dir / "learning_curve.png")
    write_json(report_file, report)
    return report


def plot_expert_curve(report: dict, path: Path) -> None:
    """An expert's learning curve, with the published PPO reference of its task."""
    ref = report.get("reference_ppo_8M")
    plot_learning_curve(report["eval_history"], path, f"expert {report['task']} ({report['preset']})",
                           f"{report['algo']} (eval, envpool)",
                           {f"CleanRL PPO @8M: {ref[0]} ± {ref[1]}": ref[0]} if ref else None)
