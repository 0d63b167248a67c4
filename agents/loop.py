"""The shared stable-baselines3 training loop (experts, agents in latent spaces): periodic evaluation with
best-model saving, checkpoints that resume, a progress bar, the learning curve.

Every schedule counts agent steps (``model.num_timesteps``); a checkpoint holds the model, the VecNormalize
statistics, the replay buffer where there is one, the evaluation history, and what makes the resumed run the
uninterrupted one (``resume.pt``: random states, the envs' replay log; ``agents.resume``), in a folder written
whole and then renamed, so a killed run resumes from the newest complete checkpoint, bit for bit.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecNormalize

from agents.resume import restore_run_state, run_state
from rl_laof.finite import Diverged, check_state, first_non_finite
from rl_laof.progress import progress_bar
from rl_laof.runs import (
    atomic_path,
    check_checksums,
    latest_checkpoint,
    load_torch,
    read_json,
    save_torch,
    write_checksums,
    write_json,
)

Evaluate = Callable[[Any], dict[str, float]]  # model -> {"mean": ..., "std": ...}
#: what to change when a run diverges (the runs' learning rate is a config field of that name)
LR_HINT = "lower the learning rate (--set learning_rate=...)"


@dataclass(frozen=True)
class LinearSchedule:
    """A stable-baselines3 schedule: ``start`` at progress remaining 1, linearly down to ``end`` at 0, and
    ``end`` from there on. SB3's progress remaining goes below 0 when the last rollout overshoots the total
    step count (8 envs x 256 steps past 20,000 ends at 20,480); a plain ``lr * p`` then turns the last update
    into gradient ascent. Picklable, so checkpoints resume the same schedule."""

    start: float
    end: float = 0.0

    def __call__(self, progress_remaining: float) -> float:
        p = min(max(float(progress_remaining), 0.0), 1.0)
        return self.end + (self.start - self.end) * p


class PeriodicCallback(BaseCallback):
    """Evaluation at step 0 (the policy the run starts from: what training must improve on), every
    ``eval_every`` steps and at the end; ``on_best(model)`` when the mean return is the best so far, a
    checkpoint every ``checkpoint_every`` steps, and a tqdm bar. Evaluations and checkpoints happen at the
    first rollout boundary past each multiple (after the update)."""

    def __init__(self, run_dir: Path, total_steps: int, eval_every: int, checkpoint_every: int, evaluate: Evaluate,
                 history: list[dict], desc: str, progress: bool = True,
                 on_best: Callable[[Any], None] | None = None, stop_at: int | None = None, hint: str = LR_HINT):
        super().__init__()
        self.hint = hint  # what a divergence message tells the user to change
        self.stop_at = stop_at  # checkpoint and stop there, as a kill after a checkpoint would (tests)
        self.eval_seconds = 0.0  # time spent evaluating: excluded from training throughput
        self.run_dir, self.total_steps = run_dir, total_steps
        self.eval_every, self.checkpoint_every = eval_every, checkpoint_every
        self.evaluate_fn, self.on_best, self.history = evaluate, on_best, history
        self.desc, self.progress = desc, progress
        self.t0 = time.time() - (history[-1]["wall_s"] if history else 0.0)

    def _on_training_start(self) -> None:
        self.bar = progress_bar(total=self.total_steps, initial=self.num_timesteps, unit="step", desc=self.desc,
                                enabled=self.progress, folder=self.run_dir)
        self.last = self.num_timesteps
        self.stopped = False
        if self.num_timesteps == 0 and not self.history:
            self.evaluate()

    def _crossed(self, every: int) -> bool:
        return self.num_timesteps // every > self.last // every

    def _on_rollout_start(self) -> None:
        """Between an update and the next rollout: the model has learnt from every step it counts, so a
        checkpoint here resumes into the same sequence of updates (and learning rates). A policy the update made
        non-finite stops the run here, before it is evaluated or saved."""
        check_state(self.desc, self.model.policy.state_dict(), int(self.num_timesteps), self.hint)
        if self._crossed(self.eval_every):
            self.evaluate()
        if self._crossed(self.checkpoint_every):
            save_checkpoint(self.model, self.run_dir, self.history)
        if self.stop_at is not None and self.num_timesteps >= self.stop_at:
            save_checkpoint(self.model, self.run_dir, self.history)
            self.stopped = True
        self.last = self.num_timesteps

    def _on_step(self) -> bool:
        self.bar.update(self.num_timesteps - self.bar.n)
        return not self.stopped

    def evaluate(self) -> None:
        t0 = time.time()
        res = self.evaluate_fn(self.model)
        entry = dict(step=int(self.num_timesteps), mean=float(res["mean"]), std=float(res["std"]),
                     wall_s=round(time.time() - self.t0, 1),
                     # the schedule's rate at the current progress: what SB3 set for the last update
                     lr=float(self.model.lr_schedule(self.model._current_progress_remaining)))
        best = max((h["mean"] for h in self.history), default=-np.inf)
        self.history.append(entry)
        self.logger.record("eval/mean_return", entry["mean"])
        self.logger.record("eval/std_return", entry["std"])
        self.logger.dump(self.num_timesteps)
        self.bar.set_postfix(eval_return=f"{entry['mean']:.1f}")
        if entry["mean"] > best and self.on_best is not None:
            self.on_best(self.model)
        write_json(self.run_dir / "eval.json", self.history)
        self.eval_seconds += time.time() - t0

    def _on_training_end(self) -> None:
        check_state(self.desc, self.model.policy.state_dict(), int(self.num_timesteps), self.hint)  # the last update
        if self.stopped:
            self.bar.close()
            return
        if not self.history or self.history[-1]["step"] != self.num_timesteps:
            self.evaluate()  # the final policy is always evaluated (and may be the best)
        self.bar.close()


def learn(model, steps: int, callback, stage: str, hint: str = LR_HINT, **kwargs) -> None:
    """``model.learn(steps, callback, **kwargs)``, ended with one line (:class:`rl_laof.finite.Diverged`)
    instead of torch's tensor dump when an update made the policy diverge: inside SB3's update that shows as
    a distribution refusing a NaN mean or a zero scale."""
    try:
        model.learn(steps, callback=callback, **kwargs)
    except ValueError as exc:
        name = first_non_finite(model.policy.state_dict())
        if name is None and "invalid values" not in str(exc):
            raise
        what = f"{name} is not finite" if name is not None else str(exc).split(" (Tensor")[0].split("\n")[0]
        raise Diverged(f"{stage}: the policy diverged at step {model.num_timesteps} ({what}); nothing non-finite "
                       f"was saved; {hint}") from exc


def replace_dir(tmp: Path, dst: Path) -> None:
    """Move the finished folder ``tmp`` onto ``dst`` (the old one is removed only after the rename)."""
    old = dst.with_name(dst.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if dst.exists():
        dst.rename(old)
    tmp.rename(dst)
    shutil.rmtree(old, ignore_errors=True)


def save_checkpoint(model, run_dir: Path, history: list) -> Path:
    """Model, normalisation stats (and replay buffer) in a new folder; ``latest.json`` then points to it.
    A policy holding a non-finite value is refused (:class:`rl_laof.finite.Diverged`): a rerun would resume it."""
    check_state("checkpoint", model.policy.state_dict(), int(model.num_timesteps), LR_HINT)
    ckpts = run_dir / "checkpoints"
    dst = ckpts / f"step-{model.num_timesteps:012d}"
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save(tmp / "model.zip")
    env = model.get_env()
    if isinstance(env, VecNormalize):
        env.save(str(tmp / "vecnormalize.pkl"))
    if getattr(model, "replay_buffer", None) is not None:
        model.save_replay_buffer(tmp / "replay_buffer.pkl")
    save_torch(run_state(model), tmp / "resume.pt")
    write_json(tmp / "eval.json", history)
    write_checksums(tmp)  # SB3's zip has CRCs, its pickles nothing: a manifest covers every file
    replace_dir(tmp, dst)
    write_json(ckpts / "latest.json", dict(dir=dst.name, step=int(model.num_timesteps)))
    for old in ckpts.glob("step-*"):  # keep only the newest
        if old.name != dst.name:
            shutil.rmtree(old, ignore_errors=True)
    return dst


def load_checkpoint(algo, run_dir: Path, make_venv: Callable[[Path | None], Any], tb_dir: Path,
                    on_load: Callable[[Any], None] | None = None, **load_kwargs):
    """(model, venv, history, checkpoint folder) from the newest checkpoint of ``run_dir``, or None.
    ``make_venv(vecnormalize_pkl_or_None)`` rebuilds the env around the saved normalisation statistics; the envs and
    random states are brought back to the checkpoint's (``agents.resume``; a checkpoint written before
    ``resume.pt`` existed resumes from fresh episodes, as it always did). ``on_load(model)`` runs first: what the
    envs need of the model while they are replayed (a skill env's KL term, the agent's log-density)."""
    ckpt = latest_checkpoint(run_dir, "dir")
    if ckpt is None:
        return None
    check_checksums(ckpt)
    norm = ckpt / "vecnormalize.pkl"
    venv = make_venv(norm if norm.exists() else None)
    model = algo.load(ckpt / "model.zip", env=venv, device="cpu", tensorboard_log=str(tb_dir), force_reset=False,
                      **load_kwargs)
    if (ckpt / "replay_buffer.pkl").exists():
        model.load_replay_buffer(ckpt / "replay_buffer.pkl")
    if on_load is not None:
        on_load(model)
    if (ckpt / "resume.pt").exists():
        restore_run_state(model, load_torch(ckpt / "resume.pt"), str(ckpt))
    else:
        model._last_obs = None  # SB3 resets the envs when training starts
    return model, venv, read_json(ckpt / "eval.json"), ckpt


def plot_learning_curve(history: list[dict], path: Path, title: str, label: str,
                        references: dict[str, float] | None = None) -> None:
    """Evaluation return (mean +- std over episodes) against agent steps, with horizontal references."""
    import matplotlib  # deferred: matplotlib only for plots

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # deferred: matplotlib only for plots

    fig, ax = plt.subplots(figsize=(6, 4))
    if history:
        x = np.array([h["step"] for h in history]) / 1e6
        m, s = np.array([h["mean"] for h in history]), np.array([h["std"] for h in history])
        ax.plot(x, m, marker="o", label=label)
        ax.fill_between(x, m - s, m + s, alpha=0.2)
    for i, (name, value) in enumerate((references or {}).items()):
        ax.axhline(value, color=f"C{i + 1}", ls="--", lw=1, label=name)
    ax.set_xlabel("agent steps (M)")
    ax.set_ylabel("episode return")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
