"""Experts on state observations: ``python -m rl_laof.expert --task cheetah-run [--preset quick|paper]``.

Trains a stable-baselines3 / sb3-contrib agent (PPO by default) on the EnvPool backend's state
observations, evaluates it during training (TensorBoard + ``eval.json``), checkpoints so that a
killed run resumes where it stopped, and writes ``report.json``: the return of the final and best
policies on *both* backends (EnvPool, where it trained, and dm_control, where datasets are
collected), next to the published PPO references.

Run directory (``rl_laof.artifacts.expert_dir``)::

    config.json                 resolved ExpertConfig
    tb/                         TensorBoard logs
    checkpoints/latest.json     -> checkpoints/step-<n>/ (model.zip, vecnormalize.pkl, [replay_buffer.pkl])
    best/, final/               model.zip + obs_stats.npz: what :class:`Expert` loads
    eval.json                   evaluation history; report.json; learning_curve.png
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from rl_laof.artifacts import atomic_path, expert_dir, latest_checkpoint, read_json, write_json
from rl_laof.cli import stage_parser
from rl_laof.config import EXPERT_PRESETS, ExpertConfig, from_preset

#: CleanRL PPO on state, 8M steps, 10 seeds (../shared/REFERENCES.md): mean, std.
PPO_REFERENCES = {
    "cheetah-run": (433, 83), "walker-walk": (393, 56), "walker-run": (126, 10), "reacher-easy": (626, 16),
    "finger-spin": (590, 171), "cartpole-swingup": (641, 11), "ball_in_cup-catch": (901, 5),
    "hopper-hop": (0.5, 0.5),
}
_UNSUPPORTED = {"dqn": "discrete actions only", "qrdqn": "discrete actions only",
                "maskableppo": "discrete actions only", "her": "goal-conditioned replay, not an algorithm",
                "recurrentppo": "recurrent policies need their hidden state when collecting",
                "ars": "no gradient-based policy to checkpoint the same way"}


# --------------------------------------------------------------------------- algorithms

def algorithm_table() -> dict[str, type]:
    """Every SB3 / sb3-contrib algorithm class, by lower-case name."""
    import sb3_contrib
    import stable_baselines3
    from stable_baselines3.common.base_class import BaseAlgorithm

    table: dict[str, type] = {}
    for module in (stable_baselines3, sb3_contrib):
        for name in dir(module):
            obj = getattr(module, name)
            if isinstance(obj, type) and issubclass(obj, BaseAlgorithm) and obj is not BaseAlgorithm:
                table[name.lower()] = obj
    return table


def resolve_algorithm(name: str) -> type:
    name = name.lower()
    if name in _UNSUPPORTED:
        raise ValueError(f"Algorithm {name!r} cannot train an expert here: {_UNSUPPORTED[name]}.")
    table = algorithm_table()
    if name not in table:
        ok = sorted(k for k in table if k not in _UNSUPPORTED)
        raise ValueError(f"Unknown algorithm {name!r}; valid (stable-baselines3 / sb3-contrib): {', '.join(ok)}.")
    return table[name]


def _policy_kwargs(cfg: ExpertConfig) -> dict[str, Any]:
    arch = list(cfg.net_arch)
    if cfg.on_policy:
        return dict(net_arch=dict(pi=arch, vf=arch))
    return dict(net_arch=arch)


# --------------------------------------------------------------------------- environments

def make_state_env(task: str, num_envs: int, seed: int, action_repeat: int = 1, backend: str = "envpool"):
    import envs

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
    from stable_baselines3.common.vec_env import VecNormalize

    tmp = dst.with_name(dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save(tmp / "model.zip")
    norm = isinstance(venv, VecNormalize) and venv.norm_obs
    np.savez(tmp / "obs_stats.npz", normalize=norm,
             mean=venv.obs_rms.mean if norm else np.zeros(0), var=venv.obs_rms.var if norm else np.zeros(0),
             clip=venv.clip_obs if norm else np.inf, epsilon=venv.epsilon if norm else 0.0)
    _replace_dir(tmp, dst)


def _replace_dir(tmp: Path, dst: Path) -> None:
    old = dst.with_name(dst.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if dst.exists():
        dst.rename(old)
    tmp.rename(dst)
    shutil.rmtree(old, ignore_errors=True)


def evaluate(act, task: str, episodes: int, seed: int, backend: str = "envpool", action_repeat: int = 1,
             deterministic: bool = True) -> dict[str, Any]:
    """Return of ``act(obs) -> actions`` over ``episodes`` episodes (one per env, all run in parallel)."""
    venv = make_state_env(task, episodes, seed, action_repeat, backend)
    try:
        obs = venv.reset()
        returns = np.full(episodes, np.nan)
        while np.isnan(returns).any():
            obs, _, dones, infos = venv.step(act(obs, deterministic))
            for i in np.flatnonzero(dones):
                if np.isnan(returns[i]):
                    returns[i] = infos[i]["episode"]["r"]
    finally:
        venv.close()
    return dict(backend=backend, episodes=episodes, seed=seed, mean=float(returns.mean()),
                std=float(returns.std()),
                stderr=float(returns.std(ddof=1) / np.sqrt(episodes)) if episodes > 1 else 0.0,
                returns=returns.round(2).tolist())


# --------------------------------------------------------------------------- training

def _checkpoint_dir(run_dir: Path) -> Path | None:
    return latest_checkpoint(run_dir, "dir")


def _make_callback(cfg: ExpertConfig, run_dir: Path, eval_env_seed: int, history: list, progress: bool):
    from stable_baselines3.common.callbacks import BaseCallback
    from tqdm import tqdm

    class Periodic(BaseCallback):
        """Evaluation, best-model saving, checkpoints and a progress bar, all on agent-step counts."""

        def _on_training_start(self) -> None:
            self.bar = tqdm(total=cfg.total_steps, initial=self.num_timesteps, unit="step", disable=not progress,
                            desc=f"expert {cfg.algo} {cfg.task}", dynamic_ncols=True)
            self.last = self.num_timesteps

        def _crossed(self, every: int) -> bool:
            return self.num_timesteps // every > self.last // every

        def _on_step(self) -> bool:
            self.bar.update(self.num_timesteps - self.bar.n)
            if self._crossed(cfg.eval_every):
                self.evaluate()
            if self._crossed(cfg.checkpoint_every):
                save_checkpoint(self.model, run_dir, history)
            self.last = self.num_timesteps
            return True

        def evaluate(self) -> None:
            venv = self.model.get_env()
            expert = Expert(self.model, *_obs_stats(venv))
            res = evaluate(expert.act, cfg.task, cfg.eval_episodes, eval_env_seed, "envpool", cfg.action_repeat)
            entry = dict(step=int(self.num_timesteps), mean=res["mean"], std=res["std"],
                         wall_s=round(time.time() - self._t0, 1))
            best = max((h["mean"] for h in history), default=-np.inf)
            history.append(entry)
            self.logger.record("eval/mean_return", res["mean"])
            self.logger.record("eval/std_return", res["std"])
            self.logger.dump(self.num_timesteps)
            self.bar.set_postfix(eval_return=f"{res['mean']:.1f}")
            if res["mean"] > best:
                save_policy(self.model, venv, run_dir / "best")
            write_json(run_dir / "eval.json", history)

        def _on_training_end(self) -> None:
            if not history or history[-1]["step"] != self.num_timesteps:
                self.evaluate()  # the final policy is always evaluated (and may be the best)
            self.bar.close()

    cb = Periodic()
    cb._t0 = time.time() - (history[-1]["wall_s"] if history else 0.0)
    return cb


def _obs_stats(venv):
    from stable_baselines3.common.vec_env import VecNormalize

    if isinstance(venv, VecNormalize) and venv.norm_obs:
        return venv.obs_rms.mean.astype(np.float32), venv.obs_rms.var.astype(np.float32), venv.clip_obs, venv.epsilon
    return None, None, 10.0, 1e-8


def save_checkpoint(model, run_dir: Path, history: list) -> Path:
    """Model, normalisation stats (and replay buffer) in a new folder; ``latest.json`` then points to it."""
    ckpts = run_dir / "checkpoints"
    dst = ckpts / f"step-{model.num_timesteps:012d}"
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save(tmp / "model.zip")
    model.get_env().save(str(tmp / "vecnormalize.pkl"))
    if hasattr(model, "replay_buffer") and model.replay_buffer is not None:
        model.save_replay_buffer(tmp / "replay_buffer.pkl")
    write_json(tmp / "eval.json", history)
    _replace_dir(tmp, dst)
    write_json(ckpts / "latest.json", dict(dir=dst.name, step=int(model.num_timesteps)))
    for old in ckpts.glob("step-*"):  # keep only the newest
        if old.name != dst.name:
            shutil.rmtree(old, ignore_errors=True)
    return dst


def train_expert(cfg: ExpertConfig, run_dir: str | Path | None = None, resume: bool = True,
                 progress: bool = True) -> dict[str, Any]:
    """Train (or resume, or just report) the expert ``cfg`` describes; returns the report."""
    import torch
    from stable_baselines3.common.vec_env import VecNormalize

    from envs import get_task

    get_task(cfg.task)  # unknown task: clear error before anything starts
    algo = resolve_algorithm(cfg.algo)
    if run_dir is None:
        run_dir = expert_dir(cfg.task, cfg.algo, cfg.preset, cfg.seed, cfg.action_repeat)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    config = cfg.to_dict()
    cfg_file = run_dir / "config.json"
    if cfg_file.exists() and resume:
        old = read_json(cfg_file)
        if json.loads(json.dumps(config)) != old:
            diff = sorted(k for k in set(old) | set(config) if old.get(k) != json.loads(json.dumps(config)).get(k))
            raise ValueError(f"{run_dir} holds an expert with another config (differs in {diff}): "
                             "pass --fresh to start over there, or --out for a new directory.")
    if not resume:
        for name in ("checkpoints", "best", "final", "tb", "eval.json", "report.json"):
            p = run_dir / name
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    write_json(cfg_file, config)
    report_file = run_dir / "report.json"
    if resume and report_file.exists():
        return read_json(report_file)

    inner = make_state_env(cfg.task, cfg.num_envs, cfg.seed, cfg.action_repeat)
    ckpt = _checkpoint_dir(run_dir) if resume else None
    history: list = []
    if ckpt is not None:
        venv = VecNormalize.load(str(ckpt / "vecnormalize.pkl"), inner)
        model = algo.load(ckpt / "model.zip", env=venv, device="cpu", tensorboard_log=str(run_dir / "tb"))
        if (ckpt / "replay_buffer.pkl").exists():
            model.load_replay_buffer(ckpt / "replay_buffer.pkl")
        history = read_json(ckpt / "eval.json")
        print(f"resuming {run_dir} from step {model.num_timesteps}", file=sys.stderr)
    else:
        venv = VecNormalize(inner, norm_obs=cfg.normalize_obs, norm_reward=cfg.resolved_normalize_reward,
                            gamma=cfg.resolved_algo_kwargs().get("gamma", 0.99))
        kwargs = cfg.resolved_algo_kwargs()
        policy_kwargs = {**_policy_kwargs(cfg), **kwargs.pop("policy_kwargs", {})}
        try:
            model = algo("MlpPolicy", venv, seed=cfg.seed, device="cpu", tensorboard_log=str(run_dir / "tb"),
                         policy_kwargs=policy_kwargs, verbose=0, **kwargs)
        except TypeError as exc:
            raise ValueError(f"{cfg.algo}: bad algo_kwargs {cfg.algo_kwargs}: {exc}") from exc
    t0 = time.time()
    steps0 = model.num_timesteps
    callback = _make_callback(cfg, run_dir, cfg.seed + 10_000, history, progress)
    remaining = cfg.total_steps - model.num_timesteps
    if remaining > 0:
        model.learn(remaining, callback=callback, reset_num_timesteps=ckpt is None, tb_log_name="run")
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
        report[which] = {b: evaluate(expert.act, cfg.task, cfg.final_eval_episodes, eval_seed, b, cfg.action_repeat)
                         for b in ("envpool", "dm_control")}
    report["best_eval_step"] = max(history, key=lambda h: h["mean"])["step"] if history else None
    plot_learning_curve(report, run_dir / "learning_curve.png")
    write_json(report_file, report)
    return report


def plot_learning_curve(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hist = report["eval_history"]
    fig, ax = plt.subplots(figsize=(6, 4))
    if hist:
        x = np.array([h["step"] for h in hist]) / 1e6
        m, s = np.array([h["mean"] for h in hist]), np.array([h["std"] for h in hist])
        ax.plot(x, m, marker="o", label=f"{report['algo']} (eval, envpool)")
        ax.fill_between(x, m - s, m + s, alpha=0.2)
    ref = report.get("reference_ppo_8M")
    if ref:
        ax.axhline(ref[0], color="k", ls="--", lw=1, label=f"CleanRL PPO @8M: {ref[0]} ± {ref[1]}")
    ax.set_xlabel("agent steps (M)")
    ax.set_ylabel("episode return")
    ax.set_title(f"expert {report['task']} ({report['preset']})")
    ax.legend(loc="lower right")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def find_or_train_expert(task: str, preset: str = "quick", algo: str = "ppo", seed: int = 0,
                         progress: bool = True, action_repeat: int = 1) -> Path:
    """The run directory of a finished expert, training (or resuming) it first where needed."""
    run_dir = expert_dir(task, algo, preset, seed, action_repeat)
    if not (run_dir / "report.json").exists():
        train_expert(from_preset(ExpertConfig, EXPERT_PRESETS, preset, task=task, algo=algo, seed=seed,
                                 action_repeat=action_repeat), run_dir, progress=progress)
    return run_dir


# --------------------------------------------------------------------------- CLI

def build_parser() -> argparse.ArgumentParser:
    p = stage_parser("rl_laof.expert", __doc__, EXPERT_PRESETS,
                     "quick: 3M steps, ~6-13 min on 2 CPU cores; paper: CleanRL's 8M-step budget")
    p.add_argument("--algo", default="ppo",
                   help="any SB3 / sb3-contrib algorithm for continuous actions: ppo, sac, td3, tqc, trpo, a2c...")
    p.add_argument("--steps", type=int, default=None, help="total agent steps (overrides the preset)")
    p.add_argument("--num-envs", type=int, default=None, help="parallel EnvPool envs (overrides the preset)")
    p.add_argument("--seed", type=int, default=0, help="training seed")
    p.add_argument("--action-repeat", type=int, default=None, help="control steps per agent step (default 1)")
    p.add_argument("--net-arch", type=int, nargs="+", default=None, help="hidden layer sizes of actor and critic")
    p.add_argument("--algo-kwargs", type=json.loads, default=None,
                   help='JSON of constructor arguments for the algorithm, e.g. \'{"learning_rate": 1e-4}\'')
    p.add_argument("--no-normalize-obs", dest="normalize_obs", action="store_false", default=None,
                   help="do not normalise observations")
    p.add_argument("--eval-every", type=int, default=None, help="agent steps between evaluations")
    p.add_argument("--checkpoint-every", type=int, default=None, help="agent steps between checkpoints")
    p.add_argument("--eval-episodes", type=int, default=None, help="episodes per periodic evaluation")
    p.add_argument("--final-eval-episodes", type=int, default=None, help="episodes per backend in the report")
    p.add_argument("--out", type=Path, default=None,
                   help="run directory (default runs/experts/<task>/<algo>-<preset>-s<seed>)")
    p.add_argument("--fresh", action="store_true", help="delete the run directory's checkpoints and start over")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    cfg = from_preset(
        ExpertConfig, EXPERT_PRESETS, args.preset, task=args.task, algo=args.algo, total_steps=args.steps,
        num_envs=args.num_envs, seed=args.seed, action_repeat=args.action_repeat,
        net_arch=tuple(args.net_arch) if args.net_arch else None, algo_kwargs=args.algo_kwargs,
        normalize_obs=args.normalize_obs, eval_every=args.eval_every, checkpoint_every=args.checkpoint_every,
        eval_episodes=args.eval_episodes, final_eval_episodes=args.final_eval_episodes,
    )
    report = train_expert(cfg, args.out, resume=not args.fresh, progress=not args.no_progress)
    summary = {k: report[k] for k in ("task", "algo", "preset", "steps", "train_wall_s")}
    for which in ("final", "best"):
        summary[which] = {b: round(r["mean"], 1) for b, r in report[which].items()}
    summary["reference_ppo_8M"] = report["reference_ppo_8M"]
    print(json.dumps(summary))
    return report


if __name__ == "__main__":
    from rl_laof.cli import run

    run(main)
