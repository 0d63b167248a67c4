"""The agents' configs: experts on state observations (``ExpertConfig``, ``python -m rl_laof.expert``) and agents
in latent action or skill spaces (``TrainConfig``, ``python -m rl_laof.train``), with their presets."""

from __future__ import annotations

import dataclasses
import math
import numbers
import typing
from dataclasses import dataclass, field
from typing import Any

from envs.config import OBS_TYPES, DistractorConfig, EnvConfig, resolve_backend
from envs.tasks import get_task
from rl_laof.cli import describe, from_text, typed
from rl_laof.imitation.config import POLICY_TYPES
from rl_laof.precision import PRECISIONS
from rl_laof.presets import check_ranges, from_recorded, recorded_dict

ON_POLICY_ALGOS = ("ppo", "a2c", "trpo", "recurrentppo")

#: stable-baselines3 arguments that mean nothing outside a range: (lowest, highest, lowest allowed, what it is).
#: Outside it a run does not fail at once: a discount above 1 sums rewards without bound and diverges minutes
#: later, where the message blames the learning rate; a clip range <= 0 never lets the policy move.
RL_RANGES: dict[str, tuple[float, float, bool, str]] = {
    "gamma": (0.0, 1.0, False, "the discount"), "gae_lambda": (0.0, 1.0, True, "GAE's lambda"),
    "tau": (0.0, 1.0, False, "the target networks' update rate"),
    "clip_range": (0.0, math.inf, False, "PPO's clip range"),
    "clip_range_vf": (0.0, math.inf, False, "PPO's value clip range"),
    "learning_rate": (0.0, math.inf, False, "the learning rate"),
    "max_grad_norm": (0.0, math.inf, False, "the gradient norm limit"),
    "target_kl": (0.0, math.inf, False, "the KL limit"), "ent_coef": (0.0, math.inf, True, "the entropy weight"),
    "vf_coef": (0.0, math.inf, True, "the value loss weight")}


def check_rl_ranges(values: dict[str, Any]) -> None:
    """Refuse a number of :data:`RL_RANGES` outside its range (other values, schedules and ``None`` pass: SB3
    and :func:`agents.algorithms.check_algo_kwargs` judge those)."""
    for key, value in values.items():
        if key not in RL_RANGES or isinstance(value, bool) or not isinstance(value, numbers.Real):
            continue
        lo, hi, lo_in, what = RL_RANGES[key]
        if not ((value >= lo if lo_in else value > lo) and value <= hi):
            where = (f"in {'[' if lo_in else '('}{lo:g}, {hi:g}]" if hi < math.inf
                     else f"{'>=' if lo_in else '>'} {lo:g}")
            raise ValueError(f"{key}={value}: {what} must be {where}.")


@dataclass(frozen=True)
class ExpertConfig:
    """An expert trained on state observations (EnvPool backend) with stable-baselines3.

    ``algo`` names any SB3 / sb3-contrib algorithm for continuous actions (ppo, sac, td3, tqc,
    trpo, a2c, ddpg, crossq...); ``algo_kwargs`` override its constructor arguments. On-policy
    algorithms normalise observations and rewards (VecNormalize, as CleanRL's PPO); off-policy ones
    normalise observations only (their critics learn the reward's scale themselves).
    """

    task: str = "cheetah-run"
    algo: str = "ppo"
    preset: str = "quick"
    total_steps: int = 3_000_000  # environment (agent) steps over all envs
    num_envs: int | None = None  # None: 64 for on-policy algorithms, 4 for off-policy ones
    seed: int = 0
    action_repeat: int = 1
    net_arch: tuple[int, ...] = (64, 64)  # CleanRL's PPO; also the fastest on CPU
    normalize_obs: bool = True
    normalize_reward: bool | None = None  # None: on for on-policy algorithms, off for off-policy
    algo_kwargs: dict[str, Any] = field(default_factory=dict)
    eval_every: int = 500_000  # agent steps between evaluations
    eval_episodes: int = 8
    final_eval_episodes: int = 32  # per backend, for the report
    checkpoint_every: int = 500_000
    torch_threads: int = 0  # 0: all cores

    def __post_init__(self) -> None:
        check_ranges(self, ("net_arch", "total_steps", "num_envs", "eval_every", "eval_episodes", "final_eval_episodes",
                            "checkpoint_every", "action_repeat"))
        object.__setattr__(self, "algo", self.algo.lower())
        object.__setattr__(self, "net_arch", tuple(int(x) for x in self.net_arch))
        if self.num_envs is None:
            object.__setattr__(self, "num_envs", 64 if self.on_policy else 4)
        check_rl_ranges(self.resolved_algo_kwargs())

    @property
    def on_policy(self) -> bool:
        return self.algo in ON_POLICY_ALGOS

    @property
    def resolved_normalize_reward(self) -> bool:
        return self.on_policy if self.normalize_reward is None else bool(self.normalize_reward)

    def resolved_algo_kwargs(self) -> dict[str, Any]:
        """The algorithm's constructor arguments: our defaults for it, then ``algo_kwargs``."""
        if self.on_policy:
            base: dict[str, Any] = dict(n_steps=128, learning_rate=3e-4, gamma=0.99)
            if self.algo in ("ppo", "recurrentppo", "trpo"):
                base.update(batch_size=1024, gae_lambda=0.95)
            if self.algo in ("ppo", "recurrentppo"):
                base.update(n_epochs=10, clip_range=0.2, ent_coef=0.0, vf_coef=0.5, max_grad_norm=0.5)
        else:
            base = dict(learning_rate=3e-4, buffer_size=min(1_000_000, self.total_steps), batch_size=256,
                        gamma=0.99, learning_starts=min(5_000, self.total_steps // 10), train_freq=1,
                        gradient_steps=-1)
        base.update(self.algo_kwargs)
        return base

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["resolved_algo_kwargs"] = self.resolved_algo_kwargs()
        return d


# The dataclass defaults are the quick preset; other presets override them.
EXPERT_PRESETS: dict[str, dict[str, Any]] = {
    # ~6 min (cheetah-run, 1 physics step per control step) to ~13 min (walker-walk, 10) on 2 CPU cores
    "quick": {},
    # CleanRL's budget for its dm_control PPO references (8M steps)
    "paper": dict(total_steps=8_000_000, eval_every=250_000, checkpoint_every=250_000,
                  final_eval_episodes=100),
}


def seeded_folder(folder: str | None, seed: int) -> str | None:
    """An upstream run folder with ``{seed}`` replaced by ``seed`` (one run per seed); None stays None."""
    return None if folder is None else folder.replace("{seed}", str(seed))


def asked_seed(folder: str | None, explicit: int | None, agent_seed: int) -> int | None:
    """The seed an upstream run folder given to the agent must record: the explicit one (``latent_seed``,
    ``skills_seed``), else the agent's where the folder names ``{seed}`` (filled with it); None: no check (a
    fixed folder, or one the pipeline finds or builds for the seed itself)."""
    if explicit is not None:
        return explicit
    return agent_seed if folder is not None and "{seed}" in folder else None


TRAIN_LATENTS = ("none", "lapo", "laom", "laof", "laof-action", "sof", "action_residual", "labels_residual")
#: the raw-action residual spaces (``agents.latent_env.ResidualActionVecEnv``) -> the ``latent`` of the imitation
#: run they act around: the decoded LAOF latent BC policy, or BC on the labelled transitions only
ACTION_RESIDUALS = {"action_residual": "laof", "labels_residual": "none"}
SKILL_ACTIONS = ("tokens", "continuous")
TRAIN_ALGOS = ("ppo", "a2c", "trpo", "recurrent-ppo", "sac", "td3", "tqc", "drq")
OFF_POLICY = ("sac", "td3", "tqc", "drq")


@dataclass(frozen=True)
class TrainConfig:
    """An RL agent in a latent action space (``python -m rl_laof.train``).

    ``latent = "none"``: the agent acts with raw actions. Otherwise it acts with the latents of a latent
    action model, decoded to actions by the frozen action decoder of an imitation run
    (``rl_laof.imitation``): with ``policy = "bc"`` the action is the normalised latent (bounded by
    the latent normalisation, [-1, 1]^D) and the agent's encoder and mean start from the latent BC policy;
    with ``"lafp"`` the action is the source noise z0 of the frozen flow policy (its prior N(0, I):
    the agent's mean starts at 0, its std at 1, its encoder from the flow policy's). The env runs at the
    dataset's action repeat, as the latents do.

    ``latent = "action_residual"`` / ``"labels_residual"``: the agent acts in the raw action space around a frozen
    pixel policy, observing its features: the decoded LAOF latent BC policy (the latent residual's start, in the
    other action space) or BC on the labelled transitions only (``agents.latent_env.ResidualActionVecEnv``).
    """

    algo: str = "ppo"
    latent: str = "laof"
    policy: str = "bc"  # the latent policy's kind (ImitationConfig.policy): "bc" | "lafp"
    latent_policy: str | None = None  # an imitation run folder (policy.pt; "{seed}" = the latent seed); None: shipped,
    #                                   else built at the preset
    task: str = "cheetah-run"
    obs: str = "pixels"  # "pixels" | "state"
    distractors: str = "laom"  # LAOM's level, the benchmarks' (where latent actions carry the action: README)
    preset: str = "quick"
    seed: int = 0
    num_envs: int = 8
    total_steps: int = 60_000  # agent steps over all envs: on the dm_control backend the time 20k took on EnvPool,
    #                            3x the frames for PPO and DrQ-v2 (docs/train.md, "PPO from a good start")
    action_repeat: int | None = None  # None: the task's pixel action repeat (envs.tasks), as its datasets
    image_size: int = 64
    frame_stack: int = 3
    backend: str = "auto"  # the simulator (envpool | dm_control); "auto" (envs.config.resolve_backend): dm_control for
    #                        pixels at an action repeat above 1 (EnvPool renders every control step, dm_control only
    #                        the observed one: 3.1-3.9x the env's steps/s at cheetah-run's repeat 4), else EnvPool
    init_policy: bool = True  # start from the pretrained latent policy where the action type allows
    residual_pcs: int = 8  # policy bc: > 0 = the frozen latent BC policy acts and the agent, on its pixel
    #                        features, adds a residual along this many leading principal directions of the
    #                        training latents (agents.latent_env.ResidualLatentVecEnv); 0 = the agent acts with
    #                        the whole latent, its encoder and actor initialised from the BC policy
    action_residual_scale: float = 0.45  # latent action_residual / labels_residual: env action = clip(a0 + scale
    #                                     u), u in [-3, 3]^A; 0.45 makes PPO's initial exploration move the executed
    #                                     actions as the latent residual's 8 directions do (benchmarks/
    #                                     study_residual_scale.py, the shipped LAOF latent BC policy on 1024 of its own
    #                                     states: RMS 0.260 vs 0.255 at std 0.61, 0.161 vs 0.157 at 0.37)
    latent_seed: int | None = None  # the imitation seed of the latent policy (and of its latent model when built);
    #                                 None: the agent's seed where the pipeline builds it (the shipped policies are
    #                                 seed 0's); a latent policy of another seed is refused
    freeze_encoder: bool = False  # keep a pretrained pixel encoder fixed (a fresh one always trains)
    critic_warmup_steps: int = 0  # on-policy: agent steps during which only the critic learns (the actor is
    #                               held at its pretrained start while the value function catches up)
    # ---- SOF skills (latent "sof"): one decision per H-step chunk; steps, evaluations and checkpoints still
    # count environment steps, and the discount per decision is gamma^H
    skills: str | None = None  # a skills run folder (python -m rl_laof.skills; "{seed}" = the skills seed); None:
    #                            runs/skills/<domain>-... of the skills seed
    skills_seed: int | None = None  # the skills run's seed; None: the agent's seed; skills of another seed are refused
    skill_action: str = "tokens"  # "tokens": multi-discrete FSQ codes; "continuous": the pre-quantisation code
    kl_coef: float = 0.0  # SPiRL-style: chunk reward -= kl_coef (log pi(tokens|o) - log prior(tokens|o, task))
    skill_init_steps: int = 300  # distillation steps that start the agent as the skill prior
    # ---- networks (the pixel encoder of rl_laof.models.policy, so a latent policy's weights load)
    width: int = 16
    features: int = 256
    hidden: int = 256
    log_std_init: float = -0.5  # std e^-0.5 = 0.61 in the normalised latent / action range ("lafp": 0, the prior)
    # ---- optimisation (stable-baselines3 arguments; algo_kwargs overrides any but learning_rate and
    # policy_kwargs, which the run sets from these fields: agents.training.RESERVED_ARGUMENTS)
    learning_rate: float = 3e-4  # decays linearly to learning_rate_end over total_steps, then stays there
    learning_rate_end: float = 0.0  # the schedule's floor (the last rollout may overshoot total_steps)
    n_steps: int = 256  # on-policy rollout length per env
    # std 0.61, minibatch 64, 10 epochs: chosen on val episodes (benchmarks/study_ppo_val.py, issue 31). From the main
    # job's start PPO gained, on 32 val episodes (mean of 3 seeds), +23.3 with all three, +17.0 with the std alone,
    # +7.7 with the epochs alone and +0.6 with neither (std 0.37, minibatch 256, 4 epochs: the defaults before)
    batch_size: int = 64
    n_epochs: int = 10
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_range: float = 0.2
    ent_coef: float = 0.0
    normalize_reward: bool = True  # on-policy algorithms only
    buffer_size: int = 100_000  # off-policy algorithms only
    algo_kwargs: dict[str, Any] = field(default_factory=dict)
    # ---- evaluation, checkpoints
    eval_every: int = 10_000
    eval_episodes: int = 4
    final_eval_episodes: int = 8
    checkpoint_every: int = 10_000
    threads: int | None = None
    # ---- DrQ-v2 (algo "drq", agents.drq): its own settings, DrQConfig; None for the other algorithms. --set
    # drq=batch_size=128,lr=3e-4 (or a config file's {"drq": {...}}) changes the preset's (DRQ_PRESETS) fields
    drq: DrQConfig | None = None

    def __post_init__(self) -> None:
        check_ranges(self, ('num_envs', 'total_steps', 'image_size', 'frame_stack', 'width', 'features', 'hidden',
                           'n_steps', 'batch_size', 'n_epochs', 'buffer_size', 'eval_every', 'eval_episodes',
                           'final_eval_episodes', 'checkpoint_every', 'action_repeat'), signed=('log_std_init',))
        object.__setattr__(self, "algo", self.algo.lower())
        if self.algo not in TRAIN_ALGOS:
            raise ValueError(f"Unknown algo {self.algo!r}; valid: {', '.join(TRAIN_ALGOS)}.")
        if self.latent not in TRAIN_LATENTS:
            raise ValueError(f"Unknown latent {self.latent!r}; valid: {', '.join(TRAIN_LATENTS)}.")
        if self.skill_action not in SKILL_ACTIONS:
            raise ValueError(f"Unknown skill_action {self.skill_action!r}; valid: {', '.join(SKILL_ACTIONS)}.")
        self._resolve_drq()
        if self.latent == "sof":
            if self.obs != "pixels":
                raise ValueError("latent 'sof' plans skills from pixels: use --obs pixels.")
            if self.algo not in ("ppo", "a2c", "trpo"):
                raise ValueError(f"latent 'sof' (a chunk per decision, multi-discrete tokens) runs with ppo, a2c or "
                                 f"trpo, not {self.algo}.")
            if self.kl_coef < 0:
                raise ValueError(f"kl_coef={self.kl_coef}: must be >= 0.")
            if self.kl_coef > 0 and self.skill_action != "tokens":
                raise ValueError("kl_coef > 0 needs the prior's density over the actions: use --skill-action tokens.")
        if self.latent in ACTION_RESIDUALS:
            self._check_action_residual()
        if self.policy not in POLICY_TYPES:
            raise ValueError(f"Unknown policy {self.policy!r}; valid: {', '.join(POLICY_TYPES)}.")
        if self.latent_policy in POLICY_TYPES:  # the flag's meaning before the names were made one per stage
            raise ValueError(f"latent_policy={self.latent_policy!r} names an imitation run folder; the latent policy's "
                             f"kind is --policy {self.latent_policy} (--set policy={self.latent_policy}).")
        if self.obs not in OBS_TYPES:
            raise ValueError(f"Unknown obs type {self.obs!r}; valid: {', '.join(OBS_TYPES)}.")
        resolve_backend(self.backend, self.obs, self.action_repeat)  # an unknown backend: refused with the valid ones
        if self.obs == "state" and self.policy == "lafp" and self.latent != "none":
            raise ValueError("policy 'lafp' runs the flow policy on pixels: use --obs pixels.")
        try:
            level = DistractorConfig.parse(self.distractors)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"distractors={self.distractors!r}: {exc}") from None
        if self.obs == "state" and level.active_kinds:
            object.__setattr__(self, "distractors", "none")  # distractors are pixels; state obs has none
        if self.critic_warmup_steps and not self.on_policy:
            raise ValueError(f"critic_warmup_steps holds an actor-critic's actor; {self.algo} is off-policy: "
                             "use ppo, a2c, trpo or recurrent-ppo.")
        # the env's own checks (image size 16..512, frame stack, action repeat), here: before a run folder exists
        EnvConfig(task=self.task, num_envs=self.num_envs, obs=self.obs, distractors=self.distractors,
                  image_size=self.image_size, frame_stack=self.frame_stack, action_repeat=self.action_repeat)
        # the config's own fields (off-policy algorithms leave gae_lambda and clip_range out of their arguments),
        # then the arguments as SB3 gets them (algo_kwargs override the fields)
        check_rl_ranges(dict(learning_rate=self.learning_rate, gamma=self.gamma, gae_lambda=self.gae_lambda,
                             clip_range=self.clip_range, ent_coef=self.ent_coef))
        if self.algo != "drq":  # DrQ-v2 takes no SB3 arguments: its settings are checked by DrQConfig
            check_rl_ranges(self.resolved_algo_kwargs())
        if not 0 <= self.learning_rate_end <= self.learning_rate:
            raise ValueError(f"learning_rate_end={self.learning_rate_end}: must be in [0, learning_rate].")

    def _check_action_residual(self) -> None:
        if self.obs != "pixels":
            raise ValueError(f"latent {self.latent!r} observes the frozen pixel policy's features: use --obs pixels.")
        if self.policy != "bc":
            raise ValueError(f"latent {self.latent!r} acts around a deterministic BC policy: use --policy bc.")
        if not self.action_residual_scale > 0:
            raise ValueError(f"action_residual_scale={self.action_residual_scale}: must be > 0 (0.45 by default).")

    def _resolve_drq(self) -> None:
        """algo "drq": refuse what DrQ-v2 does not take here, and resolve its settings over the preset's."""
        if self.algo != "drq":
            if self.drq is not None:
                raise ValueError("drq settings apply to --algo drq only.")
            return
        if self.latent != "none":
            raise ValueError(f"--algo drq is the pixel baseline on raw actions (DrQ-v2): pass --latent none, not "
                             f"{self.latent}.")
        if self.obs != "pixels":
            raise ValueError("--algo drq learns from pixels: use --obs pixels (sac, td3 or tqc learn from states).")
        defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
        for name in ("learning_rate", "batch_size", "buffer_size"):  # SB3's: DrQConfig has its own
            if getattr(self, name) != defaults[name]:
                raise ValueError(f"--algo drq takes {name} from its own settings: --set "
                                 f"drq={_DRQ_NAMES.get(name, name)}=... instead of --set {name}=...")
        if self.algo_kwargs:
            raise ValueError("--algo drq is not a stable-baselines3 algorithm: no algo_kwargs; its settings are "
                             "--set drq=FIELD=VALUE,...")
        object.__setattr__(self, "drq", DrQConfig.resolve(self.preset, self.drq))

    @property
    def on_policy(self) -> bool:
        return self.algo not in OFF_POLICY

    @property
    def unused_fields(self) -> tuple[str, ...]:
        """Fields the chosen algorithm does not read: a run folder of a config that differs only there is the same
        run (agents.training.open_run). DrQ-v2 takes its networks and optimisation from ``drq`` (DrQConfig)."""
        return _SB3_ONLY if self.algo == "drq" else ()

    @property
    def residual(self) -> bool:
        """The agent acts as a residual on the frozen latent BC policy's features (see ``residual_pcs``)."""
        return self.residual_pcs > 0 and self.latent not in ("none", "sof", *ACTION_RESIDUALS) \
            and self.policy == "bc" and self.obs == "pixels"

    @property
    def action_residual(self) -> bool:
        """The agent acts as a raw-action residual around a frozen pixel policy (``action_residual_scale``)."""
        return self.latent in ACTION_RESIDUALS

    @property
    def on_features(self) -> bool:
        """The agent observes a frozen pixel policy's features, not pixels (a latent or action residual)."""
        return self.residual or self.action_residual

    @property
    def imitation_latent(self) -> str:
        """The ``latent`` of the imitation run the action space comes from (``rl_laof.imitation --latent``)."""
        return ACTION_RESIDUALS.get(self.latent, self.latent)

    @property
    def resolved_latent_policy(self) -> str | None:
        """``latent_policy`` with ``{seed}`` replaced by the latent seed (one imitation run per seed: e.g.
        ``runs/bench/imitation/full/laom/laof_bc-s{seed}``)."""
        return seeded_folder(self.latent_policy, self.resolved_latent_seed)

    @property
    def resolved_latent_seed(self) -> int:
        """The imitation seed of the latent policy the pipeline builds: ``latent_seed``, else the agent's."""
        return self.seed if self.latent_seed is None else self.latent_seed

    @property
    def asked_latent_seed(self) -> int | None:
        """The imitation seed a given latent policy must have been trained with (:func:`asked_seed`)."""
        return asked_seed(self.latent_policy, self.latent_seed, self.seed)

    @property
    def resolved_skills(self) -> str | None:
        """``skills`` with ``{seed}`` replaced by the skills seed (one skills run per seed: e.g.
        ``runs/bench/skills/full/sof-s{seed}``)."""
        return seeded_folder(self.skills, self.resolved_skills_seed)

    @property
    def resolved_skills_seed(self) -> int:
        """The seed of the skills run: ``skills_seed``, else the agent's."""
        return self.seed if self.skills_seed is None else self.skills_seed

    @property
    def asked_skills_seed(self) -> int | None:
        """The seed a given skills run must have been trained with (:func:`asked_seed`)."""
        return asked_seed(self.skills, self.skills_seed, self.seed)

    @property
    def resolved_action_repeat(self) -> int:
        return self.action_repeat or get_task(self.task).pixel_action_repeat

    @property
    def resolved_backend(self) -> str:
        """``backend`` with "auto" made concrete (:func:`envs.config.resolve_backend`)."""
        return resolve_backend(self.backend, self.obs, self.resolved_action_repeat)

    @property
    def tag(self) -> str:
        latent = self.latent if self.latent in ("none", *ACTION_RESIDUALS) else f"{self.latent}-{self.policy}"
        if self.residual:
            latent += f"-res{self.residual_pcs}"
        if self.latent_seed is not None and self.latent_seed != self.seed:
            latent += f"-l{self.latent_seed}"
        if self.latent == "sof" and self.skills_seed is not None and self.skills_seed != self.seed:
            latent += f"-k{self.skills_seed}"
        return f"{self.algo}-{latent}-{self.obs}-{self.preset}-s{self.seed}"

    def resolved_algo_kwargs(self) -> dict[str, Any]:
        """The algorithm's constructor arguments (without the learning rate schedule and policy)."""
        if self.on_policy:
            base: dict[str, Any] = dict(n_steps=self.n_steps, gamma=self.gamma, ent_coef=self.ent_coef)
            if self.algo in ("ppo", "recurrent-ppo", "trpo"):
                base.update(batch_size=self.batch_size, gae_lambda=self.gae_lambda)
            if self.algo in ("ppo", "recurrent-ppo"):
                base.update(n_epochs=self.n_epochs, clip_range=self.clip_range)
            if self.algo == "trpo":
                base.pop("ent_coef")
        else:
            base = dict(buffer_size=min(self.buffer_size, self.total_steps), batch_size=self.batch_size,
                        gamma=self.gamma, learning_starts=min(1000, self.total_steps // 10))
        base.update(self.algo_kwargs)
        return base

    #: fields added after runs were recorded, with the value those runs had in effect (rl_laof.presets.recorded_dict):
    #: before ``backend`` every agent ran on EnvPool
    ADDED_FIELDS: typing.ClassVar[dict[str, Any]] = {"backend": "envpool"}

    def to_dict(self) -> dict[str, Any]:
        return recorded_dict(self, self.ADDED_FIELDS)

    @classmethod
    def from_recorded(cls, recorded: dict[str, Any]) -> TrainConfig:
        """The config a run's ``config.json`` records (a run recorded before ``backend`` existed ran on EnvPool)."""
        return from_recorded(cls, recorded, cls.ADDED_FIELDS)


# The dataclass defaults are the quick preset: 60k agent steps (240k control steps at action repeat 4, 240
# episodes), ~7 minutes of PPO on 2 cores in the residual latent space on the dm_control backend (155 agent
# steps/s, the pixel env alone ~210; on EnvPool, which renders every repeated control step, 68 and ~60).
TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    "quick": {},
    "paper": dict(total_steps=1_000_000, num_envs=16, width=32, features=512, hidden=512, eval_every=50_000,
                  checkpoint_every=50_000, eval_episodes=16, final_eval_episodes=50),
}


# --------------------------------------------------------------------------- DrQ-v2 (algo "drq")

#: TrainConfig's fields that only stable-baselines3 agents read (DrQ-v2 ignores them: TrainConfig.unused_fields)
_SB3_ONLY = ("log_std_init", "learning_rate", "learning_rate_end", "n_steps", "batch_size", "n_epochs", "gae_lambda",
             "clip_range", "ent_coef", "normalize_reward", "buffer_size", "algo_kwargs")
_DRQ_NAMES = {"learning_rate": "lr"}  # TrainConfig's SB3 field -> DrQConfig's


@dataclass(frozen=True)
class DrQConfig:
    """DrQ-v2's settings (``--algo drq``, ``agents.drq``; Yarats et al. 2021, facebookresearch/drqv2). The env,
    frames, frame stack, action repeat, distractors, discount (``gamma``), step budget, evaluation and checkpoints
    are TrainConfig's, as for every agent. The defaults are the CPU preset's (quick, 2 cores); each comment gives the
    paper's value, which the ``paper`` preset (:data:`DRQ_PRESETS`) restores where it differs.

    Frames are env frames (agent steps x action repeat), the paper's unit: with its action repeat 2 the reference
    updates every 2 agent steps (4 frames), acts uniformly at random for its first 4000 frames and anneals the
    exploration std over 500k agent steps (1M frames; cheetah-run is one of its "medium" tasks)."""

    SET_FORM: typing.ClassVar[str] = "FIELD=VALUE,... of DrQConfig (or a JSON object)"  # --set drq=... (rl_laof.cli)

    lr: float = 1e-4  # Adam, encoder, actor and critic (paper 1e-4)
    batch_size: int = 64  # paper 256: an update's time grows with it (docs/train.md, DrQ-v2)
    update_every_frames: int = 8  # one update per this many env frames (paper 4: every 2 steps at action repeat 2)
    feature_dim: int = 50  # the actor's and critic's trunks (paper 50)
    hidden: int = 256  # their MLPs (paper 1024)
    channels: int = 32  # the 4 conv layers (paper 32)
    n_step: int = 3  # n-step returns (paper 3)
    tau: float = 0.01  # the critic target's soft update (paper 0.01)
    seed_frames: int = 4000  # uniform random actions and no updates before (paper 4000)
    std_start: float = 1.0  # exploration std, linearly from std_start to std_end over std_frames (paper 1.0)
    std_end: float = 0.1  # (paper 0.1)
    std_frames: int = 1_000_000  # (paper: 500k steps at action repeat 2 = 1M frames; its easy tasks 200k frames)
    std_clip: float = 0.3  # the target policy's noise clip (paper 0.3)
    pad: int = 4  # random shift: up to this many pixels each way, borders replicated (paper 4, at 84 px)
    buffer_size: int = 100_000  # frames kept (paper 1M: 12 GB of 64-px frames here)
    precision: str = "auto"  # the encoder's convolutions: "auto" = bf16 where the CPU computes it natively (AMX /
    #                          AVX-512-BF16: 2.1x faster here), else fp32; "fp32" everywhere (the paper's)

    def __post_init__(self) -> None:
        check_ranges(self, ("batch_size", "update_every_frames", "feature_dim", "hidden", "channels", "n_step",
                            "std_frames", "buffer_size"))
        if not self.lr > 0:
            raise ValueError(f"DrQConfig.lr={self.lr}: must be > 0.")
        if not 0 < self.tau <= 1:
            raise ValueError(f"DrQConfig.tau={self.tau}: the target's soft update must be in (0, 1] (0.01).")
        if self.precision not in PRECISIONS:
            raise ValueError(f"DrQConfig.precision={self.precision!r}: use {', '.join(PRECISIONS)}.")

    @classmethod
    def parse(cls, spec: str | dict | DrQConfig) -> dict[str, Any] | DrQConfig:
        """A ``--set drq=...`` value (``FIELD=VALUE,...`` or a JSON object: ``rl_laof.cli.from_text``) or a config
        file's ``drq`` object as field overrides, each checked by its field's type (``rl_laof.cli.typed``, the one
        check of ``--set`` and ``--config``) and its range; a DrQConfig passes as it is. The preset's values fill
        the rest (:meth:`resolve`)."""
        if isinstance(spec, cls):
            return spec
        if isinstance(spec, str):
            fields = from_text(spec, cls)  # FIELD=VALUE,... or {...}: an object of fields, each read by its type
            if not isinstance(fields, dict):
                raise ValueError(f"drq settings are {cls.SET_FORM}, e.g. batch_size=128,lr=3e-4; got {spec!r}")
            spec = fields
        if not isinstance(spec, dict):
            raise ValueError(f"drq settings are {cls.SET_FORM}; got {spec!r}")
        hints = typing.get_type_hints(cls)
        names = [f.name for f in dataclasses.fields(cls)]
        out = {}
        for key, value in spec.items():
            if key not in names:
                raise ValueError(f"DrQConfig has no field {key!r}; fields: {', '.join(names)}")
            try:
                out[key] = typed(value, hints[key])
            except ValueError as exc:
                raise ValueError(f"drq: {key} wants {describe(hints[key])}, {exc}") from None
        cls(**out)  # refuse a bad value now, with its field named
        return out

    @classmethod
    def resolve(cls, preset: str, spec: str | dict | DrQConfig | None) -> DrQConfig:
        """The DrQ settings of a run: ``spec``'s fields over the preset's (a DrQConfig is taken whole)."""
        overrides = cls.parse(spec) if spec is not None else {}
        if isinstance(overrides, cls):
            return overrides
        return cls(**{**DRQ_PRESETS.get(preset, {}), **overrides})


DRQ_PRESETS: dict[str, dict[str, Any]] = {
    "quick": {},
    "paper": dict(batch_size=256, update_every_frames=4, hidden=1024, buffer_size=1_000_000, precision="fp32"),
}
