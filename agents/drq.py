"""DrQ-v2 (Yarats et al. 2021), the pixel-RL method a user would pick instead of a latent action space:
``python -m rl_laof.train --algo drq --latent none``. Off-policy from pixels, from scratch, on the same env as the
PPO agents (``agents.training.make_env``: pixels, distractors, frame stack, action repeat, backend), with the same
run folder, periodic evaluation, checkpoints, ``report.json`` and learning curve.

What DrQ-v2 does, and where it is here:

- a conv encoder (``rl_laof.models.drq``) shared by the actor and the critic, trained by the critic's loss only
  (the actor sees its features detached);
- random shifts (pad 4, replicate, crop) of both observations of every sampled transition, drawn per sample;
- a DDPG actor: uniform random actions for the first ``seed_frames``, then the tanh mean plus Gaussian noise
  whose std decays linearly (``std_start`` -> ``std_end`` over ``std_frames``); the target policy's noise is
  clipped to ``std_clip`` (0.3); the actor maximises min(Q1, Q2) of its noisy action;
- a double-Q critic on n-step returns (``n_step`` 3), regressing r + gamma^n min(Q1', Q2') of a target critic
  (soft update, ``tau`` 0.01; the target shares the online encoder's features, as in the reference);
- an update every ``update_every_frames`` env frames after ``seed_frames``, on batches from a replay buffer that
  stores each frame once (``agents.drq_replay``).

Deviations (each a config field; docs/train.md has the numbers): 64-px frames (84 in the paper), the task's
pixel action repeat (cheetah-run 4; the paper 2), ``num_envs`` envs stepped together (the paper 1; updates per
frame unchanged), and a CPU preset with batch 64, MLPs of 256 and one update per 8 frames (the paper: 256, 1024,
one per 4 frames), the convolutions in bfloat16 where the CPU computes it natively (``precision``; the paper fp32);
n-step returns are cut at an episode's end instead of never starting within n steps of it.

Resuming is exact: a checkpoint keeps the networks, the optimisers, the replay buffer, the agent's random
generators and the envs' replay log (``agents.resume.ResumableVecEnv``), so a resumed run ends where the
uninterrupted run of its seed ends.
"""

from __future__ import annotations

import copy
import dataclasses
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from stable_baselines3.common.utils import configure_logger
from torch import nn

from agents.config import DrQConfig, TrainConfig
from agents.drq_replay import FrameReplay
from agents.loop import replace_dir
from agents.resume import ResumableVecEnv
from agents.training import ActionSpace, AgentRun, Start, agent_returns, final_report, make_env
from envs.rollout import EVAL_SEED
from rl_laof.finite import check_state, check_step
from rl_laof.models.drq import DrQActor, DrQCritic, DrQEncoder, noisy_action, random_shift
from rl_laof.precision import autocast, native_bf16
from rl_laof.progress import progress_bar
from rl_laof.runs import (
    check_checksums,
    latest_checkpoint,
    load_torch,
    lock_run,
    read_json,
    save_torch,
    write_checksums,
    write_json,
)

HINT = "lower the learning rate (--set drq=lr=...)"


class DrQPolicy(nn.Module):
    """The acting half of DrQ-v2, encoder and actor: frame stacks -> tanh mean actions. ``predict`` takes SB3's
    arguments, so ``agents.training.agent_returns`` evaluates it as it does an SB3 model."""

    def __init__(self, obs_shape: tuple[int, ...], action_dim: int, d: DrQConfig):
        super().__init__()
        self.encoder = DrQEncoder(obs_shape[0], obs_shape[-1], d.channels)
        self.actor = DrQActor(self.encoder.repr_dim, action_dim, d.feature_dim, d.hidden)
        self.precision = d.precision if d.precision != "auto" else native_bf16()

    def features(self, obs: torch.Tensor) -> torch.Tensor:
        """The encoder's output (fp32); its convolutions in bfloat16 where ``precision`` says (the heads, losses
        and weights stay fp32)."""
        with autocast(self.precision):
            return self.encoder(obs).float()

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor(self.features(obs))

    @torch.no_grad()
    def predict(self, obs: np.ndarray, state: Any = None, episode_start: Any = None, deterministic: bool = True):
        """(actions, state): the mean action (evaluation; exploration noise is :meth:`DrQ.explore`'s)."""
        return self(torch.as_tensor(np.asarray(obs))).numpy(), state


def save_policy(policy: DrQPolicy, obs_shape: tuple[int, ...], action_dim: int, d: DrQConfig, path: Path) -> None:
    """``best_model.pt`` / ``final_model.pt``: what :func:`load_policy` rebuilds the policy from (checksummed)."""
    save_torch({"obs_shape": list(obs_shape), "action_dim": action_dim, "drq": dataclasses.asdict(d),
                "policy": policy.state_dict()}, path)


def load_policy(path: str | Path) -> DrQPolicy:
    saved = load_torch(path)
    policy = DrQPolicy(tuple(saved["obs_shape"]), int(saved["action_dim"]), DrQConfig(**saved["drq"]))
    policy.load_state_dict(saved["policy"])
    return policy.eval()


class DrQ:
    """DrQ-v2's agent: networks, optimisers, replay buffer, random generators and step counts; ``predict`` and
    ``num_timesteps`` as an SB3 model has them (evaluation and the report take it like one)."""

    def __init__(self, cfg: TrainConfig, observation_space: gym.spaces.Box, action_space: gym.spaces.Box):
        if not (np.all(action_space.low == -1) and np.all(action_space.high == 1)):
            raise ValueError(f"DrQ-v2 acts in [-1, 1]^A (every DMC task); this env's actions span "
                             f"[{action_space.low.min()}, {action_space.high.max()}]")
        self.cfg, self.d = cfg, cfg.drq
        self.obs_shape, self.action_dim = tuple(observation_space.shape), int(action_space.shape[0])
        with torch.random.fork_rng():  # the seed's initial weights, the global generator left alone
            torch.manual_seed(cfg.seed)
            self.policy = DrQPolicy(self.obs_shape, self.action_dim, self.d)
            self.critic = DrQCritic(self.policy.encoder.repr_dim, self.action_dim, self.d.feature_dim, self.d.hidden)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.encoder_opt = torch.optim.Adam(self.policy.encoder.parameters(), lr=self.d.lr, foreach=True)
        self.actor_opt = torch.optim.Adam(self.policy.actor.parameters(), lr=self.d.lr, foreach=True)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=self.d.lr, foreach=True)
        frame = (3, *self.obs_shape[1:])
        self.buffer = FrameReplay(cfg.num_envs, self.d.buffer_size, frame, self.action_dim, cfg.frame_stack)
        self.generator = torch.Generator().manual_seed(cfg.seed)  # exploration noise, shifts, target noise
        self.rng = np.random.default_rng(cfg.seed)  # seed actions, replay sampling
        self.num_timesteps = 0  # agent steps over all envs
        self.updates = 0
        self.repeat = cfg.resolved_action_repeat

    @property
    def frames(self) -> int:
        return self.num_timesteps * self.repeat

    def std(self) -> float:
        """The exploration std now: linear from std_start to std_end over std_frames, then std_end."""
        mix = min(self.frames / self.d.std_frames, 1.0)
        return (1 - mix) * self.d.std_start + mix * self.d.std_end

    def predict(self, obs: np.ndarray, state: Any = None, episode_start: Any = None, deterministic: bool = True):
        return self.policy.predict(obs, state, episode_start, deterministic)

    def explore(self, obs: np.ndarray) -> np.ndarray:
        """The behaviour policy's actions: uniform in [-1, 1] until seed_frames, then the mean plus N(0, std)."""
        if self.frames < self.d.seed_frames:
            return self.rng.uniform(-1, 1, (len(obs), self.action_dim)).astype(np.float32)
        with torch.no_grad():
            mu = self.policy(torch.as_tensor(obs))
            return noisy_action(mu, self.std(), None, self.generator).numpy()

    def updates_due(self) -> int:
        """Updates owed by now: one per update_every_frames env frames past seed_frames."""
        return max(0, self.frames - self.d.seed_frames) // self.d.update_every_frames

    def update(self) -> dict[str, float]:
        """One DrQ-v2 update: critic and encoder on the n-step target, then the actor, then the target critic."""
        d, gen = self.d, self.generator
        b = self.buffer.sample(d.batch_size, d.n_step, self.cfg.gamma, self.rng)
        obs = random_shift(torch.from_numpy(b["obs"]), d.pad, gen)
        next_obs = random_shift(torch.from_numpy(b["next_obs"]), d.pad, gen)
        action = torch.from_numpy(b["action"])
        reward, discount = torch.from_numpy(b["reward"])[:, None], torch.from_numpy(b["discount"])[:, None]
        std = self.std()
        h = self.policy.features(obs)
        with torch.no_grad():
            h_next = self.policy.features(next_obs)
            next_action = noisy_action(self.policy.actor(h_next), std, d.std_clip, gen)
            target = reward + discount * torch.min(*self.critic_target(h_next, next_action))
        q1, q2 = self.critic(h, action)
        critic_loss = F.mse_loss(q1, target) + F.mse_loss(q2, target)
        self.encoder_opt.zero_grad(set_to_none=True)
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_opt.step()
        self.encoder_opt.step()
        h = h.detach()
        mu = self.policy.actor(h)
        actor_loss = -torch.min(*self.critic(h, noisy_action(mu, std, d.std_clip, gen))).mean()
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_opt.step()
        with torch.no_grad():
            for p, t in zip(self.critic.parameters(), self.critic_target.parameters(), strict=True):
                t.lerp_(p, d.tau)  # t <- (1 - tau) t + tau p
        self.updates += 1
        metrics = {"critic_loss": critic_loss.item(), "actor_loss": actor_loss.item(), "q": q1.mean().item(),
                   "target_q": target.mean().item(), "std": std,
                   # the share of the batch's mean actions within 0.01 of a bound: a saturated tanh actor (1.0) acts
                   # the same whatever it sees, and its gradient through tanh vanishes
                   "actor_saturation": (mu.detach().abs() > 0.99).float().mean().item()}
        check_step("drq", self.updates, HINT, critic_loss=metrics["critic_loss"], actor_loss=metrics["actor_loss"])
        return metrics

    def observe(self, actions: np.ndarray, rewards: np.ndarray, obs: np.ndarray, dones: np.ndarray,
                infos: list[dict]) -> None:
        """Store a vector step: the newest frame of each env's next observation (its last one where an episode
        ended, from ``terminal_observation``), then the first frame of the episodes that began."""
        frames = obs[:, -3:]
        last = frames.copy()
        terminals = np.zeros(len(dones), bool)
        for i in np.flatnonzero(dones):
            last[i] = infos[i]["terminal_observation"][-3:]
            terminals[i] = not infos[i].get("TimeLimit.truncated", False)
        self.buffer.step(actions, rewards, last, dones, terminals, frames)
        self.num_timesteps += len(dones)

    def networks(self) -> dict[str, Any]:
        return {"policy": self.policy.state_dict(), "critic": self.critic.state_dict(),
                "critic_target": self.critic_target.state_dict()}

    def state_dict(self) -> dict[str, Any]:
        """Everything but the replay buffer (its own file)."""
        return {**self.networks(), "encoder_opt": self.encoder_opt.state_dict(),
                "actor_opt": self.actor_opt.state_dict(), "critic_opt": self.critic_opt.state_dict(),
                "generator": self.generator.get_state(), "rng": self.rng.bit_generator.state,
                "num_timesteps": self.num_timesteps, "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])
        self.critic.load_state_dict(state["critic"])
        self.critic_target.load_state_dict(state["critic_target"])
        for name in ("encoder_opt", "actor_opt", "critic_opt"):
            getattr(self, name).load_state_dict(state[name])
        self.generator.set_state(state["generator"])
        self.rng.bit_generator.state = state["rng"]
        self.num_timesteps, self.updates = int(state["num_timesteps"]), int(state["updates"])


# --------------------------------------------------------------------------- checkpoints

SATURATION_SAMPLE = 1024  # replayed observations the final policy's saturation is measured on


@torch.no_grad()
def actor_saturation(model: DrQ, samples: int = SATURATION_SAMPLE) -> float:
    """The share of the policy's mean actions within 0.01 of a bound, over observations replayed from its buffer
    (a generator of its own: the agent's are untouched). 1.0: a saturated tanh actor, one action whatever it sees."""
    if model.buffer.transitions() <= model.d.n_step:
        return float("nan")
    b = model.buffer.sample(samples, model.d.n_step, model.cfg.gamma, np.random.default_rng(0))
    mu = model.policy(torch.from_numpy(b["obs"]))
    return round(float((mu.abs() > 0.99).float().mean()), 4)


def save_checkpoint(model: DrQ, venv: ResumableVecEnv, run_dir: Path, history: list[dict]) -> Path:
    """``checkpoints/step-N/``: ``drq.pt`` (networks, optimisers, generators, counts, the envs' replay log),
    ``replay.pt`` (the buffer), ``eval.json``, ``checksums.json``; written whole, then renamed; older ones removed.
    A non-finite network is refused (a rerun would resume it)."""
    check_state("checkpoint", model.networks(), model.num_timesteps, HINT)
    ckpts = run_dir / "checkpoints"
    dst = ckpts / f"step-{model.num_timesteps:012d}"
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_torch({"model": model.state_dict(), "envs": venv.state()}, tmp / "drq.pt")
    save_torch(model.buffer.state_dict(), tmp / "replay.pt")
    write_json(tmp / "eval.json", history)
    write_checksums(tmp)
    replace_dir(tmp, dst)
    write_json(ckpts / "latest.json", dict(dir=dst.name, step=int(model.num_timesteps)))
    for old in ckpts.glob("step-*"):
        if old.name != dst.name:
            shutil.rmtree(old, ignore_errors=True)
    return dst


def resume_checkpoint(model: DrQ, venv: ResumableVecEnv, run_dir: Path) -> tuple[list[dict], np.ndarray] | None:
    """(history, observation) after loading the newest checkpoint of ``run_dir`` into ``model`` and sending the
    envs back to where it left them (None: no checkpoint). Where the envs cannot be replayed there, they start
    fresh episodes (said in one line): the buffer ends the episodes under way as if by a time limit."""
    ckpt = latest_checkpoint(run_dir, "dir")
    if ckpt is None:
        return None
    check_checksums(ckpt)
    state = load_torch(ckpt / "drq.pt")
    model.load_state_dict(state["model"])
    model.buffer.load_state_dict(load_torch(ckpt / "replay.pt"))
    if venv.restore(state["envs"]):
        return read_json(ckpt / "eval.json"), np.array(venv.last_obs, copy=True)
    print(f"{ckpt}: the envs could not be replayed to the checkpoint's state (another renderer?); the run resumes "
          "from fresh episodes, not bit for bit", file=sys.stderr, flush=True)
    obs = venv.reset()
    model.buffer.start(obs[:, -3:])
    return read_json(ckpt / "eval.json"), obs


# --------------------------------------------------------------------------- the run

class DrQRun:
    """DrQ-v2's training loop with PPO's schedule of evaluations and checkpoints (``agents.loop``): an evaluation
    at step 0, at the first step past every multiple of ``eval_every`` and at the end (``best_model.pt`` when the
    best so far), a checkpoint past every multiple of ``checkpoint_every``; ``stop_at``: checkpoint and stop."""

    def __init__(self, cfg: TrainConfig, run_dir: Path, model: DrQ, venv: ResumableVecEnv, history: list[dict],
                 resumed: bool, progress: bool, stop_at: int | None, on_eval):
        self.cfg, self.run_dir, self.model, self.venv, self.history = cfg, run_dir, model, venv, history
        self.progress, self.stop_at, self.on_eval = progress, stop_at, on_eval
        self.eval_env = make_env(cfg, cfg.eval_episodes, cfg.seed + EVAL_SEED, training=False)
        self.logger = configure_logger(0, str(run_dir / "tb"), "run", reset_num_timesteps=not resumed)
        self.t0 = time.time() - (history[-1]["wall_s"] if history else 0.0)
        self.eval_seconds = 0.0
        self.stopped = False

    def evaluate(self) -> None:
        t0, m = time.time(), self.model
        self.eval_env.seed(self.cfg.seed + EVAL_SEED)  # the same episodes at every evaluation
        r, _ = agent_returns(m, self.eval_env)
        entry = dict(step=int(m.num_timesteps), mean=float(r.mean()), std=float(r.std()),
                     wall_s=round(time.time() - self.t0, 1), lr=float(m.d.lr))
        best = max((h["mean"] for h in self.history), default=-np.inf)
        self.history.append(entry)
        self.logger.record("eval/mean_return", entry["mean"])
        self.logger.record("eval/std_return", entry["std"])
        self.logger.dump(m.num_timesteps)
        if entry["mean"] > best:
            save_policy(m.policy, m.obs_shape, m.action_dim, m.d, self.run_dir / "best_model.pt")
        write_json(self.run_dir / "eval.json", self.history)
        self.eval_seconds += time.time() - t0
        if self.on_eval is not None and m.num_timesteps > 0:
            self.on_eval(int(m.num_timesteps), {"mean": entry["mean"], "std": entry["std"]})

    def step(self, obs: np.ndarray) -> np.ndarray:
        """One vector step (every env), stored, then the updates it made due."""
        m = self.model
        actions = m.explore(obs)
        obs, rewards, dones, infos = self.venv.step(actions)
        m.observe(actions, rewards, obs, dones, infos)
        for i in np.flatnonzero(dones):
            if "episode" in infos[i]:
                self.logger.record_mean("rollout/ep_rew_mean", infos[i]["episode"]["r"])
        while m.updates < m.updates_due():
            for key, value in m.update().items():
                self.logger.record_mean(f"train/{key}", value)
        return obs

    def learn(self, obs: np.ndarray) -> None:
        m, cfg = self.model, self.cfg
        bar = progress_bar(total=cfg.total_steps, initial=m.num_timesteps, unit="step",
                           desc=f"drq none {cfg.task}", enabled=self.progress)
        if m.num_timesteps == 0 and not self.history:
            self.evaluate()
        while m.num_timesteps < cfg.total_steps:
            last = m.num_timesteps
            obs = self.step(obs)
            bar.update(m.num_timesteps - bar.n)
            if m.num_timesteps // 1000 > last // 1000:
                self.logger.record("train/updates", m.updates)
                self.logger.dump(m.num_timesteps)
            if m.num_timesteps // cfg.eval_every > last // cfg.eval_every:
                self.evaluate()
                bar.set_postfix(eval_return=f"{self.history[-1]['mean']:.1f}")
            if m.num_timesteps // cfg.checkpoint_every > last // cfg.checkpoint_every:
                save_checkpoint(m, self.venv, self.run_dir, self.history)
            if self.stop_at is not None and m.num_timesteps >= self.stop_at:
                save_checkpoint(m, self.venv, self.run_dir, self.history)
                self.stopped = True
                break
        if not self.stopped and (not self.history or self.history[-1]["step"] != m.num_timesteps):
            self.evaluate()  # the final policy is always evaluated
        bar.close()


def train_drq(cfg: TrainConfig, run: AgentRun, resume: bool, progress: bool = True, stop_at: int | None = None,
              on_eval=None) -> dict[str, Any]:
    """Train (or, with ``resume``, continue) DrQ-v2 in the folder ``run`` (``agents.training.open_run`` checked
    it); returns the report, or ``{"checkpoint_step": N}`` when ``stop_at`` stopped it."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    t_start = time.time()
    venv = ResumableVecEnv(make_env(cfg, cfg.num_envs, cfg.seed))  # envs and model built before the folder is made
    try:
        model = DrQ(cfg, venv.observation_space, venv.action_space)
    except BaseException:
        venv.close()
        raise
    with lock_run(run.dir):  # everything is checked: the run's folder is made now, with one writer
        write_json(run.dir / "config.json", {"config": run.config, "latent_policy": None, "skills": None})
        return _learn_drq(cfg, run, model, venv, resume, progress, stop_at, on_eval, t_start)


def _learn_drq(cfg: TrainConfig, run: AgentRun, model: DrQ, venv: ResumableVecEnv, resume: bool, progress: bool,
               stop_at: int | None, on_eval, t_start: float) -> dict[str, Any]:
    """:func:`train_drq`'s run in its locked folder: resume, learn, save and report."""
    try:
        loaded = resume_checkpoint(model, venv, run.dir) if resume else None
    except BaseException:
        venv.close()
        raise
    if loaded is None:
        history, obs = [], venv.reset()
        model.buffer.start(obs[:, -3:])
    else:
        history, obs = loaded
    if cfg.threads:  # again: the distractors' first Numba kernel (OpenMP layer) set OpenMP's thread count to its own
        torch.set_num_threads(cfg.threads)
    loop = DrQRun(cfg, run.dir, model, venv, history, loaded is not None, progress, stop_at, on_eval)
    steps0, t0 = model.num_timesteps, time.time()
    try:
        loop.learn(obs)
    except BaseException:  # what training or on_eval raises ends the run with its envs closed
        venv.close()
        raise
    finally:
        loop.eval_env.close()
    if loop.stopped and model.num_timesteps < cfg.total_steps:
        venv.close()
        return {"checkpoint_step": read_json(run.dir / "checkpoints" / "latest.json")["step"]}
    seconds = {"train": time.time() - t0, "eval": loop.eval_seconds, "steps0": steps0}
    save_checkpoint(model, venv, run.dir, history)
    save_policy(model.policy, model.obs_shape, model.action_dim, model.d, run.dir / "final_model.pt")
    venv.close()
    report = final_report(cfg, run, ActionSpace(), Start(model, venv, venv, history, [], loaded is not None),
                          seconds, t_start)
    report["drq"] = {"updates": model.updates, "replay_frames": model.buffer.transitions(),
                     "final_std": round(model.std(), 4), "actor_saturation": actor_saturation(model)}
    write_json(run.dir / "report.json", report)
    return report
