"""Training an agent in a latent action or skill space (the main job, ``python -m rl_laof.train``): the env
and its action space (``agents.latent_env``, ``agents.skill_env``), the SB3 model and how it starts, the shared
loop (``agents.loop``), periodic and final evaluation, the report and learning curve.

The action space is loaded from its upstream runs (an imitation run's ``policy.pt``, a skills run), which this
module takes as folders that exist; ``rl_laof.pipeline`` finds or builds them first, after asking
:func:`open_run` whether the run needs them at all (a finished run does not; a resumed one keeps those it
recorded).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.callbacks import CallbackList
from stable_baselines3.common.vec_env import VecNormalize

import envs
from agents.algorithms import ALGOS, check_algo_kwargs
from agents.config import TrainConfig
from agents.latent_env import LatentActionVecEnv, ResidualActionVecEnv, ResidualLatentVecEnv, stored_pca
from agents.loop import LinearSchedule, PeriodicCallback, learn, load_checkpoint, plot_learning_curve, save_checkpoint
from agents.policy import (
    CriticWarmup,
    freeze_encoders,
    init_from_latent_policy,
    init_from_skill_prior,
    policy_kwargs,
    zero_mean,
)
from agents.resume import ResumableVecEnv
from agents.skill_env import SkillVecEnv
from envs.config import DistractorConfig
from envs.rollout import EVAL_SEED, run_episodes
from rl_laof.data import VideoDataset, WindowConfig, WindowDataset
from rl_laof.imitation.evaluation import spread_ratio
from rl_laof.imitation.policy import load_latent_policy, recorded_data
from rl_laof.presets import available_memory, cpu_count, refuse_beyond
from rl_laof.runs import (
    latest_checkpoint,
    lock_run,
    read_json,
    refuse_other_config,
    run_folder,
    train_dir,
    write_json,
)
from rl_laof.skills.policy import SkillPolicy
from rl_laof.skills.training import load_skills

#: config fields a resumed run may change
_NOT_IDENTITY = ("total_steps", "eval_every", "checkpoint_every", "eval_episodes", "final_eval_episodes", "threads")


# --------------------------------------------------------------------------- the action space

def latent_policy_dir(cfg: TrainConfig, latent_policy: str | Path | None = None) -> Path | None:
    """The imitation run whose latent policy and decoder make the action space: ``latent_policy``, else
    ``cfg.latent_policy``; None for the latents "none" and "sof"."""
    if cfg.latent in ("none", "sof"):
        return None
    path = latent_policy if latent_policy is not None else cfg.resolved_latent_policy
    if path is None:
        raise ValueError(f"latent {cfg.latent!r} needs a latent policy: set latent_policy, or run through "
                         "rl_laof.pipeline.agent (it finds or builds the preset's)")
    path = Path(path)
    check_latent_policy(cfg, path)
    return path


def check_latent_policy(cfg: TrainConfig, path: Path) -> None:
    """Refuse a folder without an imitation run's ``policy.pt``, saying how to make one."""
    if not (path / "policy.pt").exists():
        raise FileNotFoundError(f"{path}: no policy.pt (make one with python -m rl_laof.imitation --latent "
                                f"{cfg.imitation_latent} --policy {cfg.policy} --out {path})")


def _distractors_mismatch(recorded: Any, cfg: TrainConfig) -> str | None:
    """How the distractors a latent policy's data was collected with (a level, or a ``DistractorConfig`` as a
    dict) differ from the agent's env's, or None. The background split is the evaluation's business."""
    mine = dataclasses.asdict(DistractorConfig.parse(cfg.distractors))
    theirs = recorded if isinstance(recorded, dict) else {"difficulty": recorded}
    if theirs.get("difficulty") != mine["difficulty"]:
        return f"{theirs.get('difficulty')} distractors (not {cfg.distractors})"
    for key, value in theirs.items():
        norm = tuple(value) if isinstance(value, list) else value
        if key != "background_split" and key in mine and norm != mine[key]:
            return f"distractors with {key}={_shown(value)} (not {_shown(mine[key])})"
    return None


def _shown(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def env_mismatches(cfg: TrainConfig, meta: dict, data: dict | None) -> list[str]:
    """Every setting of the env a latent policy's data was made in (its data record, ``recorded_data``: task,
    action repeat, image size, frame stack, distractors; an ``policy.pt`` without one names its task, image size,
    frame stack and distractor level) that differs from the agent's env, each as "theirs (not ours)"."""
    env = dict(data["env"]) if data else {}
    task = env.get("task", meta["task"])
    problems = [f"task {task} (not {cfg.task})"] if task != cfg.task else []
    repeat = env.get("action_repeat")
    if repeat is not None and int(repeat) != cfg.resolved_action_repeat:
        problems.append(f"action repeat {repeat} (not {cfg.resolved_action_repeat})")
    if cfg.obs != "pixels":
        return problems
    size, stack = env.get("image_size", meta["image_size"]), env.get("frame_stack", meta["config"]["frame_stack"])
    if size != cfg.image_size:
        problems.append(f"{size} px images (not {cfg.image_size})")
    if stack != cfg.frame_stack:
        problems.append(f"{stack} stacked frames (not {cfg.frame_stack})")
    level = env.get("distractors", meta.get("distractors"))  # the level is in policy.pt since issue 18
    wrong = _distractors_mismatch(level, cfg) if level is not None else None
    return problems + ([wrong] if wrong else [])


def load_latent_space(cfg: TrainConfig, policy_dir: Path):
    """(the latent policy, its metadata), checked against the env the agent will see (:func:`env_mismatches`), the
    latent and policy type its action space needs and, where one is asked (``cfg.asked_latent_seed``), the
    imitation seed. The
    metadata gains ``data``, the policy's data record (None where none is kept)."""
    policy, meta = load_latent_policy(policy_dir, cfg.seed)
    meta["data"] = recorded_data(policy_dir, meta)
    icfg = meta["config"]
    problems = env_mismatches(cfg, meta, meta["data"])
    if icfg["latent"] != cfg.imitation_latent or icfg["policy"] != cfg.policy:
        problems.append(f"latent {icfg['latent']} / {icfg['policy']}")
    if cfg.latent == "labels_residual" and icfg.get("relabel", "none") != "none":
        problems.append(f"BC on {icfg['relabel']}-relabelled transitions (not on the labels)")
    problems += seed_mismatch("imitation", icfg["seed"], cfg.asked_latent_seed, cfg.latent_seed)
    if problems:
        raise ValueError(f"{policy_dir}: the latent policy was made for {', '.join(problems)}; pass --rebuild")
    return policy, meta


def seed_mismatch(what: str, recorded: int, asked: int | None, explicit: int | None) -> list[str]:
    """The problem, as "theirs (not ours)", when an upstream run given to the agent records another seed than the
    one asked (``TrainConfig.asked_latent_seed`` / ``asked_skills_seed``: the explicit ``latent_seed`` /
    ``skills_seed``, else the agent's where the folder names ``{seed}``); none when nothing is asked."""
    if asked is None or int(recorded) == asked:
        return []
    field = {"imitation": "latent_seed", "skills": "skills_seed"}[what]
    return [f"{what} seed {recorded} (not {field} {asked})" if explicit is not None
            else f"{what} seed {recorded} (not the agent's seed {asked})"]


def load_skill_space(cfg: TrainConfig, run: str | Path | None):
    """(SkillPolicy for cfg.task, skills metadata) from the skills run folder ``run``, checked against the env."""
    run = Path(run) if run is not None else None
    if run is None:
        raise FileNotFoundError(
            f"no SOF skills for {cfg.task}: build a multi-task dataset of its domain and the skills first — "
            "see the README, 'SOF skills' (python benchmarks/bench_skills.py builds them), or pass --set skills=RUN")
    tok, prior, translator, meta = load_skills(run)
    if cfg.task not in meta["tasks"]:
        raise ValueError(f"{run}: skills of {meta['tasks']}, not {cfg.task}")
    problems = []
    if meta["image_size"] != cfg.image_size or translator.cfg.frame_stack != cfg.frame_stack:
        problems.append(f"{meta['image_size']} px x {translator.cfg.frame_stack} frames")
    if int(meta["action_repeat"]) != cfg.resolved_action_repeat:
        problems.append(f"action repeat {meta['action_repeat']}")
    if problems:
        raise ValueError(f"{run}: the skills were learned for {', '.join(problems)}; set the env to match")
    if wrong := seed_mismatch("skills", meta["config"]["seed"], cfg.asked_skills_seed, cfg.skills_seed):
        raise ValueError(f"{run}: the skills run is of {wrong[0]}: pass the skills run of that seed (skills "
                         "'...-s{seed}' loads the agent's seed's) or set skills_seed")
    return SkillPolicy(tok, prior, translator, meta["tasks"].index(cfg.task), cfg.seed), {**meta, "run": str(run)}


def pretrained_encoder(cfg: TrainConfig, meta: dict | None) -> dict[str, Any] | None:
    """The pixel encoder's size and kind when the agent's encoder starts from the latent policy's (so they
    match whatever width the policy was trained at); None otherwise (the config's)."""
    if meta is None or not cfg.init_policy or cfg.obs != "pixels" or cfg.on_features:
        return None
    icfg = meta["config"]
    return dict(features=icfg["features"], width=icfg["width"], kind=icfg.get("encoder", "halving"))


def decision_config(cfg: TrainConfig, chunk: int) -> TrainConfig:
    """What SB3 counts for a skill agent: decisions of ``chunk`` env steps, discounted by gamma^chunk."""
    n_steps = max(8, cfg.n_steps // chunk)
    return dataclasses.replace(cfg, total_steps=max(1, cfg.total_steps // chunk),
                               eval_every=max(1, cfg.eval_every // chunk),
                               checkpoint_every=max(1, cfg.checkpoint_every // chunk), n_steps=n_steps,
                               critic_warmup_steps=cfg.critic_warmup_steps // chunk,
                               batch_size=min(cfg.batch_size, n_steps * cfg.num_envs), gamma=cfg.gamma ** chunk)


def skill_dataset_frames(meta: dict, task: str, frame_stack: int, count: int = 2048, seed: int = 0) -> np.ndarray:
    """Frame stacks of ``task``'s training episodes in the skills' dataset (where the prior is distilled)."""
    ds = VideoDataset(meta["dataset"], flow=None)
    task_id = ds.tasks.index(task)
    keep = np.flatnonzero(ds.task_ids("train") == task_id)
    w = WindowDataset(ds, "train", WindowConfig(frame_stack=frame_stack, label_split="none", with_masks=False,
                                                with_flow=False), None)
    rows = np.flatnonzero(np.isin(w.episode, keep))
    rows = np.random.default_rng(seed).choice(rows, min(count, len(rows)), replace=False)
    return w.frames_at(w.episode[rows], w.t[rows]).numpy()


def make_env(cfg: TrainConfig, num_envs: int, seed: int, latent_policy=None, meta: dict | None = None, skills=None,
             training: bool = True):
    """The agent's VecEnv: pixels (or state) on ``cfg.resolved_backend`` at the dataset's action repeat, with
    VecMonitor inside (episode returns are the env's), wrapped in the latent or skill action space when there is
    one (the skills' KL term only shapes the training env's rewards). The dm_control backend renders the frame
    only (no agent mask, depth or poses: ``exact_flow_info`` off)."""
    venv = envs.make(cfg.task, num_envs=num_envs, obs=cfg.obs, distractors=cfg.distractors,
                     image_size=cfg.image_size, frame_stack=cfg.frame_stack,
                     action_repeat=cfg.resolved_action_repeat, seed=seed, backend=cfg.resolved_backend,
                     exact_flow_info=False)
    if skills is not None:
        return SkillVecEnv(venv, skills, cfg.skill_action, cfg.kl_coef if training else 0.0)
    if latent_policy is None:
        return venv
    if cfg.residual:
        return ResidualLatentVecEnv(venv, latent_policy.policy, latent_policy.decoder,
                                    stored_pca(meta, cfg.residual_pcs, f"the latent policy of {meta.get('dataset')}"))
    if cfg.action_residual:
        return ResidualActionVecEnv(venv, latent_policy.policy, latent_policy.decoder,
                                    cfg.action_residual_scale)
    mode = "noise" if cfg.policy == "lafp" else "latent"
    return LatentActionVecEnv(venv, latent_policy.decoder, meta["out_dim"], mode,
                              latent_policy.policy if mode == "noise" else None)


# --------------------------------------------------------------------------- evaluation

def _pixels(venv, obs: np.ndarray) -> np.ndarray:
    """The pixel observations behind ``obs`` (a residual agent observes features; its wrapper keeps the frames)."""
    inner = venv
    while inner is not None:
        if isinstance(getattr(inner, "pixels", None), np.ndarray):  # (the base env's ``pixels`` is a flag)
            return inner.pixels
        inner = getattr(inner, "venv", None)
    return obs


class AgentPolicy:
    """An SB3 model as a policy of ``envs.rollout.run_episodes``: ``predict`` with its recurrent state (if any),
    told where episodes start by ``episodes_ended``."""

    def __init__(self, model, deterministic: bool = True):
        self.model, self.deterministic = model, deterministic
        self.state, self.starts = None, None

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        if self.starts is None:
            self.starts = np.ones(len(obs), bool)
        action, self.state = self.model.predict(obs, state=self.state, episode_start=self.starts,
                                                deterministic=self.deterministic)
        return action

    def episodes_ended(self, dones: np.ndarray) -> None:
        self.starts = dones


def agent_returns(model, venv, deterministic: bool = True, record: bool = False,
                  executed: list[np.ndarray] | None = None):
    """Returns of the first episode of every env of ``venv`` (and env 0's frames when ``record``); ``executed``
    receives the actions the env executed in those episodes (``envs.rollout.run_episodes``)."""
    policy = AgentPolicy(model, deterministic)
    frames = []

    def keep(obs: np.ndarray) -> None:
        pixels = _pixels(venv, obs)
        frames.append(np.asarray(pixels[0, -3:]).transpose(1, 2, 0) if pixels.ndim == 4 else None)

    returns = run_episodes(venv, policy, keep if record else None, policy.episodes_ended, executed)
    return returns, frames


def agent_spread(meta: dict | None, executed: list[np.ndarray] | None) -> float | None:
    """The spread of the actions an agent executed on its own states over the expert's on its latent policy's data
    (``rl_laof.imitation.evaluation.spread_ratio``); None without a latent policy's data record or actions."""
    data = meta.get("data") if meta else None
    if not data or not executed:
        return None
    return round(spread_ratio(np.concatenate(executed).std(0), data["action_std"]), 4)


def _sync_obs_stats(train_env, eval_env) -> None:
    if isinstance(train_env, VecNormalize) and isinstance(eval_env, VecNormalize):
        eval_env.obs_rms = train_env.obs_rms


def _wrap_normalize(cfg: TrainConfig, venv, training: bool = True):
    norm_obs = cfg.obs == "state"
    norm_rew = cfg.normalize_reward and cfg.on_policy and training
    if not (norm_obs or norm_rew):
        return venv
    return VecNormalize(venv, norm_obs=norm_obs, norm_reward=norm_rew, gamma=cfg.gamma, training=training)


def _agent_log_prob(model):
    """log pi(actions | obs) of an SB3 agent, for the skill env's KL term."""
    def log_prob(obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            dist = model.policy.get_distribution(torch.as_tensor(obs).float())
            return dist.log_prob(torch.as_tensor(actions)).numpy()

    return log_prob


# --------------------------------------------------------------------------- checks before anything runs

#: arguments the agent's run sets from its config, and what a user sets instead (algo_kwargs may not)
RESERVED_ARGUMENTS = {
    "learning_rate": "use --set learning_rate=... (and learning_rate_end, the floor it decays to linearly)",
    "policy_kwargs": "the policy's network comes from the config's width, features, hidden and log_std_init "
                     "(--set those)"}
#: envs one CPU core steps at a usable speed: a pixel env's step costs about 8.5 ms of CPU (117 agent steps/s over
#: 8 envs on 2 cores, agents.config's quick preset), so 64 envs a core take about 0.5 s a step and a rollout of
#: n_steps = 256 steps over 2 minutes; 100000 envs on 2 cores take 7 minutes a step
ENVS_PER_CPU = 64
PIXEL_ENV_BYTES = 20 * 2 ** 20  # a pixel env at 64 px with LAOM's distractors, measured (RSS, 4 vs 16 envs): about
#                                  14 MiB each on EnvPool, 18.5 on dm_control (an in-process physics and GL context)
STATE_ENV_BYTES = 2 ** 20


def agent_memory(cfg: TrainConfig) -> float:
    """Bytes a run of ``cfg`` holds at its peak, estimated: its envs (training and periodic evaluation at once;
    a pixel env's :data:`PIXEL_ENV_BYTES` scale with its frame) and its buffer: on-policy ``n_steps x num_envs``
    observations as float32 (SB3's rollout buffer), off-policy ``buffer_size`` observations and next ones as
    stored (uint8 frames), DrQ-v2 its ``drq.buffer_size`` single frames."""
    pixels = cfg.obs == "pixels"
    frame = 3 * cfg.frame_stack * cfg.image_size ** 2 if pixels else 0  # one observation's uint8 values
    env = PIXEL_ENV_BYTES * max(1.0, cfg.image_size ** 2 / 64 ** 2) + 4 * frame if pixels else STATE_ENV_BYTES
    envs_at_once = max(cfg.num_envs + cfg.eval_episodes, cfg.final_eval_episodes)
    obs = frame if pixels and not cfg.residual else 1024  # a residual agent observes the policy's features
    if cfg.drq is not None:  # DrQ-v2 (agents.drq_replay): one uint8 frame a transition, not the stack twice
        buffer = min(cfg.drq.buffer_size, cfg.total_steps) * 3 * cfg.image_size ** 2
    elif cfg.on_policy:
        buffer = 4 * cfg.n_steps * cfg.num_envs * obs
    else:
        buffer = 2 * min(cfg.buffer_size, cfg.total_steps) * obs * (1 if pixels and not cfg.residual else 4)
    return envs_at_once * env + buffer


def check_config(cfg: TrainConfig) -> None:
    """What the config alone cannot say, checked before anything is built or written (:func:`open_run`; and by
    ``rl_laof.pipeline`` before it builds a tuned latent policy): the task, the algorithm's arguments (those the
    run sets itself refused, with what to set instead), and whether this machine can run so many envs (CPU
    cores) and hold them and the buffer (memory)."""
    envs.get_task(cfg.task)  # unknown task: the list of valid ones
    if not ALGOS[cfg.algo].native:  # DrQ-v2 takes no SB3 arguments: its settings are checked by its config (drq)
        check_algo_kwargs(ALGOS[cfg.algo].algo_class, cfg.resolved_algo_kwargs(), RESERVED_ARGUMENTS)
    cores = cpu_count()
    for name in ("num_envs", "eval_episodes", "final_eval_episodes"):  # each evaluation episode is an env of its own
        n = getattr(cfg, name)
        if n > ENVS_PER_CPU * cores:
            raise ValueError(f"{name}={n}: {cores} CPU core(s) step at most {ENVS_PER_CPU * cores} envs at a usable "
                             f"speed ({ENVS_PER_CPU} a core; a pixel env's step costs about 8 ms of CPU): use fewer")
    refuse_beyond(f"num_envs={cfg.num_envs}", agent_memory(cfg), available_memory(), "memory",
                  "use fewer --num-envs (or a smaller --set drq=buffer_size=...)" if cfg.drq is not None
                  else "use fewer --num-envs (or a smaller n_steps / buffer_size)")


# --------------------------------------------------------------------------- training

@dataclasses.dataclass
class AgentRun:
    """An agent's run folder as found before anything runs: where it is, its config as recorded, the report of a
    finished run (nothing left to do), what its ``config.json`` records, and whether it resumes a checkpoint."""

    dir: Path
    config: dict[str, Any]
    report: dict[str, Any] | None
    recorded: dict[str, Any]
    resumes: bool

    def resumes_with(self, upstream: str) -> Path | None:
        """The upstream run ``upstream`` ("latent_policy" or "skills") the checkpoint to resume was trained in, as
        the folder records it (None where the run does not resume, or that folder is gone)."""
        path = self.recorded.get(upstream) if self.resumes else None
        return Path(path) if path and Path(path).exists() else None


def open_run(cfg: TrainConfig, out: str | Path | None = None, resume: bool = False,
             stop_at: int | None = None) -> AgentRun:
    """The run folder of ``cfg`` (``out``, default ``runs/train/<task>/<tag>``), checked before anything is built
    or written: an unknown task, bad algorithm arguments, a folder of another config and an unfinished run without
    ``resume`` are refused. Its ``report`` is set when the run is finished (``stop_at`` asks for a checkpoint)."""
    check_config(cfg)
    run_dir = run_folder(out if out is not None else train_dir(cfg.task, cfg.tag))
    config = json.loads(json.dumps(cfg.to_dict()))
    recorded = {}
    fix = "use another --out, or --fresh to start over there"
    if refuse_other_config(run_dir, config, _NOT_IDENTITY + cfg.unused_fields, fix):
        if not resume and (run_dir / "checkpoints").exists() and not (run_dir / "report.json").exists():
            raise ValueError(f"{run_dir} holds an unfinished run: pass --resume to continue it, --fresh to start "
                             "over, or --out for another folder.")
        recorded = read_json(run_dir / "config.json")
    report_file = run_dir / "report.json"
    report = None
    if report_file.exists() and read_json(report_file)["steps"] >= cfg.total_steps and stop_at is None:
        report = read_json(report_file)
    resumes = resume and latest_checkpoint(run_dir, "dir") is not None
    return AgentRun(run_dir, config, report, recorded, resumes)


@dataclasses.dataclass
class ActionSpace:
    """What the agent acts through: an imitation run's latent policy and decoder (``latent_policy``, its saved
    ``meta``), or SOF skills (``skills``, their ``skill_meta``; one decision per ``chunk`` env steps), or neither
    (raw actions)."""

    latent_policy_dir: Path | None = None
    latent_policy: Any = None
    meta: dict | None = None
    skills: SkillPolicy | None = None
    skill_meta: dict | None = None
    chunk: int = 1


def _folder(path: Path | None) -> str | None:
    """An upstream run folder as ``config.json`` and the report record it."""
    return str(path) if path is not None else None


def action_space(cfg: TrainConfig, latent_policy: str | Path | None, skills: str | Path | None) -> ActionSpace:
    """The action space of ``cfg`` loaded from its upstream folders: the imitation run ``latent_policy`` (else
    ``cfg.latent_policy``) or, for latent "sof", the skills run ``skills`` (else ``cfg.skills``)."""
    policy_dir = latent_policy_dir(cfg, latent_policy)
    policy, meta = load_latent_space(cfg, policy_dir) if policy_dir is not None else (None, None)
    if cfg.latent != "sof":
        return ActionSpace(policy_dir, policy, meta)
    skill_policy, skill_meta = load_skill_space(cfg, skills if skills is not None else cfg.resolved_skills)
    return ActionSpace(policy_dir, policy, meta, skill_policy, skill_meta, skill_policy.cfg.chunk)


@dataclasses.dataclass
class Start:
    """The SB3 model a run trains, its (normalised) training env and the action-space env inside it, the evaluation
    history so far, what was initialised from the pretrained runs, and whether it resumed a checkpoint."""

    model: Any
    venv: Any
    inner: Any
    history: list[dict]
    copied: list[str]
    resumed: bool


def start_model(cfg: TrainConfig, run_dir: Path, space: ActionSpace, resume: bool) -> Start:
    """The model of ``cfg`` in ``space``: the newest checkpoint of ``run_dir`` (with ``resume``), else a new one
    started from the latent policy or the skill prior; a pretrained encoder held fixed where asked."""
    spec = ALGOS[cfg.algo]
    algo = spec.algo_class
    inner = make_env(cfg, cfg.num_envs, cfg.seed, space.latent_policy, space.meta, space.skills)
    logged = ResumableVecEnv(inner)  # what a checkpoint needs to send the envs back where they were

    def attach(model) -> None:  # the skill env's KL term reads the agent's log-density (a resumed run's replay too)
        if space.skills is not None and cfg.kl_coef > 0:
            inner.agent_log_prob = _agent_log_prob(model)

    loaded = load_checkpoint(algo, run_dir, lambda norm: VecNormalize.load(str(norm), logged) if norm else logged,
                             run_dir / "tb", attach) if resume else None
    history: list[dict] = []
    copied: list[str] = []
    pixels_start = space.latent_policy is not None and cfg.init_policy and cfg.obs == "pixels"
    if loaded is not None:
        model, venv, history, _ = loaded
    else:
        venv = _wrap_normalize(cfg, logged)
        schedule = LinearSchedule(cfg.learning_rate, cfg.learning_rate_end)
        try:
            model = algo(spec.policy_name(), venv, learning_rate=schedule, seed=cfg.seed, device="cpu",
                         policy_kwargs=policy_kwargs(cfg, pretrained_encoder(cfg, space.meta)),
                         tensorboard_log=str(run_dir / "tb"), verbose=0,
                         **cfg.resolved_algo_kwargs())
        except TypeError as exc:
            raise ValueError(f"{cfg.algo}: bad algo_kwargs {cfg.algo_kwargs}: {exc}") from exc
        if cfg.residual:
            copied = zero_mean(model) + [f"residual on the frozen latent BC policy ({cfg.residual_pcs} directions)"]
        elif cfg.action_residual:
            around = "the decoded latent BC policy" if space.latent_policy.decoder is not None else "BC on the labels"
            copied = zero_mean(model) + [f"action residual on {around} (scale {cfg.action_residual_scale:g})"]
        elif pixels_start:
            copied = init_from_latent_policy(model, space.latent_policy.policy)
        if space.skills is not None and cfg.init_policy:
            frames = skill_dataset_frames(space.skill_meta, cfg.task, cfg.frame_stack, seed=cfg.seed)
            copied = init_from_skill_prior(model, inner, frames, cfg.skill_init_steps, cfg.seed)
    # a pretrained encoder (the latent policy's) held fixed: set again on every (re)start, checkpoints do not keep it
    if cfg.freeze_encoder and pixels_start and not cfg.on_features:
        frozen = freeze_encoders(model)
        copied = copied + frozen if loaded is None else copied
    attach(model)
    return Start(model, venv, inner, history, copied, loaded is not None)


def learn_agent(cfg: TrainConfig, run_dir: Path, space: ActionSpace, start: Start, progress: bool,
                stop_at: int | None, on_eval: Callable[[int, dict[str, float]], None] | None) -> dict[str, float]:
    """Train ``start.model`` to ``cfg.total_steps`` with periodic evaluation (on envs of their own), checkpoints and
    the best model; returns the seconds it took (``train``) and spent evaluating (``eval``) and the step it
    started from (``steps0``). What ``on_eval`` or training raises closes the envs and ends the run."""
    model, chunk = start.model, space.chunk
    eval_env = _wrap_normalize(cfg, make_env(cfg, cfg.eval_episodes, cfg.seed + EVAL_SEED, space.latent_policy,
                                             space.meta, space.skills, training=False), training=False)

    def periodic_eval(m) -> dict[str, float]:
        _sync_obs_stats(m.get_env(), eval_env)
        eval_env.seed(cfg.seed + EVAL_SEED)  # the same episodes at every evaluation: a function of the policy alone
        r, _ = agent_returns(m, eval_env)
        result = {"mean": float(r.mean()), "std": float(r.std())}
        if on_eval is not None and m.num_timesteps > 0:  # step 0: the start, the same for every trial
            on_eval(int(m.num_timesteps) * chunk, result)
        return result

    periodic = PeriodicCallback(run_dir, cfg.total_steps, cfg.eval_every, cfg.checkpoint_every, periodic_eval,
                                start.history, f"{cfg.algo} {cfg.latent} {cfg.task}", progress,
                                on_best=lambda m: m.save(run_dir / "best_model.zip"), stop_at=stop_at)
    callback = periodic
    if cfg.critic_warmup_steps > 0:
        callback = CallbackList([periodic, CriticWarmup(cfg.critic_warmup_steps)])
    steps0 = model.num_timesteps
    t0 = time.time()
    remaining = cfg.total_steps - model.num_timesteps
    if remaining > 0:
        try:
            learn(model, remaining, callback, "train", reset_num_timesteps=not start.resumed, tb_log_name="run")
        except BaseException:
            eval_env.close()
            start.venv.close()
            raise
    train_s = time.time() - t0
    eval_env.close()
    return {"train": train_s, "eval": periodic.eval_seconds, "steps0": steps0}


def save_final(run_dir: Path, start: Start) -> None:
    """The last checkpoint, ``final_model.zip`` and the observation statistics; the training env is closed."""
    save_checkpoint(start.model, run_dir, start.history)
    start.model.save(run_dir / "final_model.zip")
    if isinstance(start.venv, VecNormalize):
        start.venv.save(str(run_dir / "vecnormalize.pkl"))
    start.venv.close()


def final_report(cfg: TrainConfig, run: AgentRun, space: ActionSpace, start: Start, seconds: dict[str, float],
                 t_start: float) -> dict[str, Any]:
    """The final evaluation (``final_eval_episodes`` held-out episodes) and the run's report, learning curve and
    ``report.json``."""
    model, chunk = start.model, space.chunk
    # seeds past the periodic evaluations' (seed + EVAL_SEED + [0, eval_episodes)): none of their episodes
    final_env = _wrap_normalize(cfg, make_env(cfg, cfg.final_eval_episodes, cfg.seed + EVAL_SEED + cfg.eval_episodes,
                                              space.latent_policy, space.meta, space.skills, training=False),
                                training=False)
    _sync_obs_stats(start.venv, final_env)
    executed: list[np.ndarray] | None = [] if space.skills is None else None  # a skill's chunk is many steps
    final, _ = agent_returns(model, final_env, executed=executed)
    final_env.close()
    history = start.history
    if chunk > 1:  # report environment steps
        history = [{**h, "step": h["step"] * chunk} for h in history]
    train_s = seconds["train"]
    skills_run = space.skill_meta["run"] if space.skill_meta else None
    report = {
        "task": cfg.task, "algo": cfg.algo, "latent": cfg.latent, "policy": cfg.policy,
        "obs": cfg.obs, "preset": cfg.preset, "seed": cfg.seed, "steps": int(model.num_timesteps) * chunk,
        "decisions": int(model.num_timesteps), "chunk": chunk, "skills": skills_run,
        "action_repeat": cfg.resolved_action_repeat, "backend": cfg.resolved_backend, "run_dir": str(run.dir),
        "latent_policy": _folder(space.latent_policy_dir), "initialised": start.copied,
        "latent_seed": space.meta["config"]["seed"] if space.meta else None,
        "skills_seed": space.skill_meta["config"]["seed"] if space.skill_meta else None,
        # the final evaluation's executed actions: their spread over the expert's on the latent policy's data
        "spread": agent_spread(space.meta, executed),
        "train_seconds": round(train_s, 1), "eval_seconds": round(seconds["eval"], 1),
        # agent steps per second of training (rollouts and updates; evaluation excluded), this invocation
        "steps_per_s": round(chunk * (model.num_timesteps - seconds["steps0"]) / max(train_s - seconds["eval"], 1e-9),
                             1),
        "final": {"mean": float(final.mean()), "std": float(final.std()), "episodes": len(final),
                  "returns": final.round(2).tolist()},
        "best_eval": max(history, key=lambda h: h["mean"]) if history else None,
        "eval_history": history, "config": run.config, "wall_seconds": round(time.time() - t_start, 1),
        "sb3_config": json.loads(json.dumps(cfg.to_dict())) if chunk > 1 else None,
    }
    plot_learning_curve(history, run.dir / "learning_curve.png",
                        f"{cfg.task}, {cfg.distractors} distractors: {cfg.algo} with latent {cfg.latent}",
                        f"{cfg.algo} ({cfg.latent}), eval", {f"final: {final.mean():.0f}": float(final.mean())})
    write_json(run.dir / "report.json", report)
    return report


def train(cfg: TrainConfig, out: str | Path | None = None, resume: bool = False, progress: bool = True,
          stop_at: int | None = None, on_eval: Callable[[int, dict[str, float]], None] | None = None,
          latent_policy: str | Path | None = None, skills: str | Path | None = None) -> dict[str, Any]:
    """Train (or, with ``resume``, continue) an agent; returns the report. ``stop_at``: checkpoint and stop at
    that step (what a kill after a checkpoint leaves; the resume test uses it). ``on_eval(env_step, result)``
    sees every periodic evaluation (a sweep's pruner); what it raises ends the run, with its envs closed.

    The action space comes from the folder ``latent_policy`` (an imitation run, else ``cfg.latent_policy``) or, for
    latent ``sof``, ``skills`` (a skills run, else ``cfg.skills``): finished runs, which ``rl_laof.pipeline.agent``
    finds or builds before it calls this. Phases: :func:`open_run`, :func:`action_space`, :func:`start_model`,
    :func:`learn_agent`, :func:`save_final`, :func:`final_report`. ``--algo drq`` (DrQ-v2, no SB3) runs its own
    loop after :func:`open_run`: ``agents.drq.train_drq``."""
    run = open_run(cfg, out, resume, stop_at)
    if run.report is not None:
        return run.report
    if ALGOS[cfg.algo].native:
        from agents.drq import train_drq  # deferred: agents.drq builds on this module (its env, evaluation, report)

        return train_drq(cfg, run, resume, progress, stop_at, on_eval)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    t_start = time.time()
    space = action_space(cfg, latent_policy, skills)
    cfg = decision_config(cfg, space.chunk) if space.chunk > 1 else cfg  # from here on SB3 counts decisions
    start = start_model(cfg, run.dir, space, resume)  # envs and model built (or refused) before the folder is made
    with lock_run(run.dir):  # everything is checked: the run's folder is made now, with one writer
        write_json(run.dir / "config.json", {"config": run.config,
                                             "latent_policy": _folder(space.latent_policy_dir),
                                             "latent_seed": space.meta["config"]["seed"] if space.meta else None,
                                             "skills": space.skill_meta["run"] if space.skill_meta else None})
        seconds = learn_agent(cfg, run.dir, space, start, progress, stop_at, on_eval)
        if stop_at is not None and start.model.num_timesteps < cfg.total_steps:
            start.venv.close()
            return {"checkpoint_step": read_json(run.dir / "checkpoints" / "latest.json")["step"]}
        save_final(run.dir, start)
        return final_report(cfg, run, space, start, seconds, t_start)
