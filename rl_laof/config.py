"""Configuration dataclasses: the one source of truth for every parameter of every stage.

Each stage's CLI is an argparse front end over one of these dataclasses; every run writes its
resolved config (``to_dict``) next to its outputs. Named presets: ``quick`` sizes a stage to run
in minutes on a 2-core CPU (CI, first runs), ``paper`` is the full-size setting.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

from envs.config import OBS_TYPES, DistractorConfig, EnvConfig
from envs.tasks import get_task
from rl_laof.precision import native_bf16
from rl_laof.presets import PRESET_NAMES, from_preset  # noqa: F401  (moved; importers follow in the config step)
from rl_laof.runs import dataset_name
from rl_laof.sof.config import SKILL_PRESETS, SkillConfig  # noqa: F401  (moved; importers follow in the config step)

# --------------------------------------------------------------------------- experts

ON_POLICY_ALGOS = ("ppo", "a2c", "trpo", "recurrentppo")


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
        object.__setattr__(self, "algo", self.algo.lower())
        object.__setattr__(self, "net_arch", tuple(int(x) for x in self.net_arch))
        if self.num_envs is None:
            object.__setattr__(self, "num_envs", 64 if self.on_policy else 4)
        for name in ("total_steps", "num_envs", "eval_every", "eval_episodes", "final_eval_episodes",
                     "checkpoint_every", "action_repeat"):
            if getattr(self, name) < 1:
                raise ValueError(f"ExpertConfig.{name}={getattr(self, name)}: must be >= 1.")

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


# --------------------------------------------------------------------------- datasets

@dataclass(frozen=True)
class CollectConfig:
    """A video dataset rolled out by an expert on the dm_control backend (``rl_laof.collect``).

    Three splits of whole episodes, each from its own seeds: ``train`` (what methods learn from),
    ``eval`` (held-out episodes, same distractor distribution) and ``heldout_bg`` (held-out episodes
    with the *eval* background videos: a generalisation split). Label splits over the train
    transitions are nested (every larger budget contains the smaller ones).
    """

    task: str = "cheetah-run"
    preset: str = "quick"
    distractors: DistractorConfig = field(default_factory=lambda: DistractorConfig(difficulty="hard"))
    image_size: int = 64
    action_repeat: int | None = None  # None: the task's pixel action repeat (envs.tasks)
    episodes: int = 32  # train episodes
    eval_episodes: int = 8
    heldout_bg_episodes: int = 4
    episode_steps: int | None = 500  # None: the full episode (1000 // action_repeat agent steps)
    expert: str = "auto"  # "auto": the expert of ``expert_preset`` (trained if missing); a run dir; "random"
    expert_preset: str = "quick"
    expert_which: str = "best"
    action_noise: float = 0.1  # std of Gaussian noise added to the expert's actions (then clipped)
    seed: int = 0
    workers: int = 2
    exact_flow_inputs: bool = True  # depth, geom ids, camera and geom poses per frame
    compression: str | None = "lzf"
    label_fractions: tuple[float, ...] = (0.0, 0.01, 0.05, 0.1)
    label_trajectories: tuple[int, ...] = (2, 4, 8, 16, 32, 64, 128)

    def __post_init__(self) -> None:
        object.__setattr__(self, "distractors", DistractorConfig.parse(self.distractors))
        if self.action_repeat is None:
            object.__setattr__(self, "action_repeat", get_task(self.task).pixel_action_repeat)
        if self.action_repeat < 1:
            raise ValueError(f"action_repeat={self.action_repeat}: must be >= 1.")
        object.__setattr__(self, "label_fractions", tuple(float(f) for f in self.label_fractions))
        object.__setattr__(self, "label_trajectories", tuple(int(n) for n in self.label_trajectories))
        if self.episodes < 1:
            raise ValueError(f"episodes={self.episodes}: need at least one training episode.")
        self.env_config("train", 0)  # the env settings (image size...): refused here, before an expert is resolved
        for name in ("eval_episodes", "heldout_bg_episodes"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)}: must be >= 0.")
        if self.episode_steps is not None and self.episode_steps < 2:
            raise ValueError(f"episode_steps={self.episode_steps}: need at least 2 steps per episode.")
        if self.workers < 1:
            raise ValueError(f"workers={self.workers}: need at least 1.")
        if self.action_noise < 0:
            raise ValueError(f"action_noise={self.action_noise}: must be >= 0.")
        if any(not (0.0 <= f <= 1.0) for f in self.label_fractions):
            raise ValueError(f"label_fractions {self.label_fractions}: each must be in [0, 1].")
        if any(n < 1 for n in self.label_trajectories):
            raise ValueError(f"label_trajectories {self.label_trajectories}: each must be >= 1.")
        if self.compression not in (None, "lzf", "gzip"):
            raise ValueError(f"compression={self.compression!r}: use 'lzf', 'gzip' or None.")
        if self.expert_which not in ("best", "final"):
            raise ValueError(f"expert_which={self.expert_which!r}: use 'best' or 'final'.")

    @property
    def name(self) -> str:
        """The dataset's folder name under runs/datasets/<task>/ (``rl_laof.runs.dataset_name``)."""
        return dataset_name(self.distractors.difficulty, self.action_repeat, self.preset, self.seed)

    def split_sizes(self) -> dict[str, int]:
        return {"train": self.episodes, "eval": self.eval_episodes, "heldout_bg": self.heldout_bg_episodes}

    def env_config(self, split: str, seed: int) -> EnvConfig:
        """The one-env dm_control config an episode of ``split`` is rolled out in."""
        dist = self.distractors
        if split == "heldout_bg":
            dist = dataclasses.replace(dist, background_split="eval")
        # the frame infos (agent mask, state) are needed whether or not the flow inputs are stored
        return EnvConfig(task=self.task, num_envs=1, obs="pixels", distractors=dist, image_size=self.image_size,
                         frame_stack=1, action_repeat=self.action_repeat, seed=seed, backend="dm_control",
                         exact_flow_info=True)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# The dataclass defaults are the quick preset: 32 + 8 + 4 episodes of up to 500 agent steps (cheetah-run at
# action repeat 4: 250, the whole episode; 8000 training frames).
COLLECT_PRESETS: dict[str, dict[str, Any]] = {
    "quick": {},
    # LAOM's scale per task is 5000 x 1000 steps; this is a tenth of it
    "paper": dict(episodes=500, eval_episodes=50, heldout_bg_episodes=50, episode_steps=None, workers=16,
                  expert_preset="paper"),
}


@dataclass(frozen=True)
class WindowConfig:
    """What one training sample holds (``rl_laof.data.WindowDataset``).

    A window at transition t of an episode: o_{t-s+1..t} (frame stack s, padded with the episode's
    first frame as the env pads at reset), o_{t+1}, o_{t+k} with k ~ U{1..min(max_offset, T-t)}
    (LAOM's IDM offset), a_t where labelled, and the agent masks / flow target of (t, t+1).
    Windows never cross an episode boundary.
    """

    frame_stack: int = 3
    max_offset: int = 1  # LAOM: 10
    label_split: str = "frac-0.01"  # a label split of the dataset, or "all" / "none"
    with_masks: bool = True
    with_states: bool = False
    with_flow: bool = True  # when the dataset holds flow targets

    def __post_init__(self) -> None:
        if self.frame_stack < 1:
            raise ValueError(f"frame_stack={self.frame_stack}: need at least 1.")
        if self.max_offset < 1:
            raise ValueError(f"max_offset={self.max_offset}: need at least 1 (k=1 is the next frame).")


# --------------------------------------------------------------------------- latent action models

LAM_METHODS = ("lapo", "laom", "laof", "lapo-action", "laom-action", "laof-action")
#: LAOF's flow target (``rl_laof.flow.agent_targets``): sources, loss forms.
FLOW_SOURCES = ("observed", "camfree")
FLOW_LOSSES = ("agent", "plain")


@dataclass(frozen=True)
class LAMConfig:
    """A latent action model and its training (``python -m rl_laof.pretrain``).

    Fields left ``None`` take the method's published setting (:meth:`resolved`):

    ============  =======  =======  ==========  ===========================================
    method        latent   FDM      IDM offset  losses
    ============  =======  =======  ==========  ===========================================
    lapo          vq       pixel    1           FDM + VQ
    laof          cont.    pixel    1           FDM + flow (z-only flow decoder on the agent's flow)
    laom          cont.    latent   U{1..10}    latent FDM vs EMA target encoder, augmented
    ``*-action``  same + an action head on labelled batches: weight lambda = labelled share of the
                  samples in a step (lapo / laof; laof's flow weight becomes 1 - lambda), 0.001 (laom)
    ============  =======  =======  ==========  ===========================================
    """

    method: str = "laof"
    preset: str = "quick"
    seed: int = 0
    # ---- data
    frame_stack: int = 3
    max_offset: int | None = None  # IDM sees (o_t, o_{t+k}), k ~ U{1..max_offset}; None: 10 for laom*, else 1
    labels: float | None = None  # fraction of labelled transitions (label split frac-<f>) for *-action
    labelled_trajectories: int | None = None  # or N whole labelled episodes (split traj-<N>)
    train_episodes: int | None = None  # train on the first N training episodes only (None: all; data-size studies)
    # ---- model
    latent: str | None = None  # "vq" | "continuous"; None: vq for lapo* / laof*, continuous for laom*
    latent_dim: int = 128
    vq_codebooks: int = 2  # LAPO: 128-d latent = 2 codebooks x 4 positions x 16-d, 64 codes each
    vq_positions: int = 4
    vq_codes: int = 64
    vq_decay: float = 0.999
    vq_commitment: float = 0.05
    fdm: str | None = None  # "pixel" (U-Net on o_t, z at input and bottleneck) | "latent"; None: by method
    width: int = 16  # base channel count of every conv net
    # side at which the pixel FDM sees o_t and predicts o_{t+1} (None: the frame size; the IDM always sees it).
    # 32 measured: LAPO on clean data probes the same (0.265 vs 0.264 of the mean action at 64) at 1.5x the speed
    fdm_resolution: int | None = 32
    ema_tau: float = 0.001  # LAOM's target encoder
    augment: bool | None = None  # LAOM's shift / rotate / perspective augmentation; None: laom* only
    action_head: str = "linear"  # "linear" | "mlp"
    # LAOF's flow target: sigma calibrated from the data (None) so the flow_sigma_percentile-th agent-pixel
    # speed of the training split encodes to full value (rl_laof.flow.calibrate), or a fixed value
    flow_sigma: float | None = None
    flow_sigma_percentile: float = 90.0
    flow_source: str = "observed"  # "observed" (displayed frames) | "camfree" (camera shake removed)
    flow_loss: str = "agent"  # "agent": per-sample weighted to the agent's cells | "plain": LAOF's plain MSE
    flow_bg_weight: float = 0.1  # weight of a cell without the agent in the "agent" loss
    # side of the flow decoder's output (None: the frame size). 16 measured best: held-out probe 0.26 of the mean
    # action at 1100 samples/s against 0.28 at 660 samples/s for 64 (LAOM level, 1000 steps, README)
    flow_resolution: int | None = 16
    # ---- loss weights (the sweeps tune these)
    fdm_weight: float = 1.0
    vq_weight: float = 1.0
    flow_weight: float | None = None  # None: 1 for laof, 1 - lambda for laof-action, 0 otherwise
    action_weight: float | None = None  # None: lambda for lapo/laof-action, 0.001 for laom-action, else 0
    # ---- optimisation
    steps: int = 1000
    batch_size: int = 64
    labelled_batch_size: int = 32  # a second batch from the labelled windows (*-action)
    lr: float = 3e-4
    weight_decay: float = 0.01
    grad_clip: float = 2.0
    # "bf16": forward passes under bfloat16 autocast (convs and matmuls in bf16, norms, VQ and losses in fp32;
    # weights and optimiser stay fp32): 1.4x the samples/s of "fp32" on an AVX-512-BF16 CPU (README);
    # "auto": bf16 where the CPU computes it natively, else fp32 (the run's config records which)
    precision: str = "auto"
    threads: int | None = None  # torch CPU threads per process (None: torch's default)
    # ---- evaluation
    eval_every: int = 250
    checkpoint_every: int = 250
    eval_windows: int = 1024  # held-out windows for the periodic loss + linear probe
    probe_train_windows: int | None = None  # training windows the final probes are fit on (None: all)
    mlp_probe_steps: int = 1500

    def __post_init__(self) -> None:
        if self.method not in LAM_METHODS:
            raise ValueError(f"Unknown method {self.method!r}; valid: {', '.join(LAM_METHODS)}.")
        if self.latent not in (None, "vq", "continuous"):
            raise ValueError(f"latent={self.latent!r}: use 'vq' or 'continuous'.")
        if self.fdm not in (None, "pixel", "latent"):
            raise ValueError(f"fdm={self.fdm!r}: use 'pixel' or 'latent'.")
        if self.action_head not in ("linear", "mlp"):
            raise ValueError(f"action_head={self.action_head!r}: use 'linear' or 'mlp'.")
        if self.labels is not None and self.labelled_trajectories is not None:
            raise ValueError("Give --labels or --labelled-trajectories, not both.")
        if not self.method.endswith("-action") and (self.labels is not None or self.labelled_trajectories is not None):
            raise ValueError(f"--method {self.method} uses no labels; give --labels / --labelled-trajectories to "
                             f"{self.method}-action.")
        if self.labels is not None and not 0.0 < self.labels <= 1.0:
            raise ValueError(f"labels={self.labels}: a fraction in (0, 1].")
        if self.latent_dim % (self.vq_codebooks * self.vq_positions):
            raise ValueError(f"latent_dim={self.latent_dim} must split into {self.vq_codebooks} codebooks x "
                             f"{self.vq_positions} positions.")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("steps and batch_size must be >= 1.")
        if self.train_episodes is not None and self.train_episodes < 1:
            raise ValueError(f"train_episodes={self.train_episodes}: need at least 1 (or None for all).")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"precision={self.precision!r}: use 'auto', 'fp32' or 'bf16'.")
        if self.flow_source not in FLOW_SOURCES:
            raise ValueError(f"flow_source={self.flow_source!r}: use one of {', '.join(FLOW_SOURCES)}.")
        if self.flow_loss not in FLOW_LOSSES:
            raise ValueError(f"flow_loss={self.flow_loss!r}: use one of {', '.join(FLOW_LOSSES)}.")
        if not 0.0 < self.flow_sigma_percentile < 100.0:
            raise ValueError(f"flow_sigma_percentile={self.flow_sigma_percentile}: a percentile in (0, 100).")
        if self.flow_sigma is not None and self.flow_sigma <= 0:
            raise ValueError(f"flow_sigma={self.flow_sigma}: must be > 0 (or None to calibrate it from the data).")
        for name in ("flow_resolution", "fdm_resolution"):
            r = getattr(self, name)
            if r is not None and (r < 8 or r & (r - 1)):
                raise ValueError(f"{name}={r}: a power of two >= 8 that divides the frame size (e.g. 16, 32), "
                                 "or None for the frame size.")
        if self.flow_bg_weight < 0:
            raise ValueError(f"flow_bg_weight={self.flow_bg_weight}: must be >= 0.")

    @property
    def base(self) -> str:
        return self.method.removesuffix("-action")

    @property
    def supervised(self) -> bool:
        return self.method.endswith("-action")

    @property
    def label_split(self) -> str:
        """The dataset's label split the action head trains on ("none" without supervision)."""
        if not self.supervised:
            return "none"
        if self.labelled_trajectories is not None:
            return f"traj-{self.labelled_trajectories}"
        return f"frac-{self.labels if self.labels is not None else 0.01:g}"

    def resolved(self, flow_sigma: float | None = None) -> LAMConfig:
        """Every ``None`` replaced by the method's setting; ``flow_sigma``: the sigma calibrated from the
        dataset (``rl_laof.flow.calibrate``), used when the config does not fix one."""
        laom = self.base == "laom"
        lam = self.labelled_batch_size / (self.batch_size + self.labelled_batch_size) if self.supervised else 0.0
        flow_w = (1.0 - lam) if self.base == "laof" else 0.0
        action_w = (0.001 if laom else lam) if self.supervised else 0.0
        return dataclasses.replace(
            self,
            max_offset=self.max_offset if self.max_offset is not None else (10 if laom else 1),
            # LAOF's paper: continuous latents beat VQ. Measured here too (README): under LAOM-level distractors
            # LAOF's flow decoder on a VQ latent never beat the best constant prediction (held-out probe 0.88 of
            # the mean action, as the untrained model), on a continuous one it reached 0.26 in the same 1000 steps
            latent=self.latent or ("vq" if self.base == "lapo" else "continuous"),
            fdm=self.fdm or ("latent" if laom else "pixel"),
            augment=self.augment if self.augment is not None else laom,
            flow_sigma=self.flow_sigma if self.flow_sigma is not None else flow_sigma,
            precision=self.precision if self.precision != "auto" else native_bf16(),
            flow_weight=self.flow_weight if self.flow_weight is not None else flow_w,
            action_weight=self.action_weight if self.action_weight is not None else action_w,
            labels=self.labels if (self.labels is not None or not self.supervised
                                   or self.labelled_trajectories is not None) else 0.01,
        )

    def window_config(self) -> WindowConfig:
        r = self.resolved()
        # LAOF's flow targets are encoded once per split (rl_laof.flow.agent_targets), not gathered per window
        return WindowConfig(frame_stack=r.frame_stack, max_offset=r.max_offset, label_split=r.label_split,
                            with_masks=False, with_states=True, with_flow=False)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# The dataclass defaults are the quick preset.
LAM_PRESETS: dict[str, dict[str, Any]] = {
    "quick": {},
    # LAOF's Procgen setting: batch 128, 50k steps
    "paper": dict(steps=50_000, batch_size=128, labelled_batch_size=64, width=64, eval_every=2500,
                  checkpoint_every=1000, eval_windows=4096, mlp_probe_steps=5000),
}


# --------------------------------------------------------------------------- latent policies (imitation)

POLICY_TYPES = ("bc", "lafp")
DECODER_MODES = ("idm", "sample", "interp")
RELABEL_MODES = ("none", "idm")


@dataclass(frozen=True)
class ImitationConfig:
    """A policy from pixels imitating the dataset, and its evaluation (``python -m rl_laof.imitate``).

    ``latent`` = a latent action model (``lapo``, ``laof``, ``laof-action``...): the policy predicts that
    model's normalised pre-quantisation latent of (o_t, o_{t+1}), by behaviour cloning (``bc``) or flow
    matching (``lafp``); an action decoder, trained afterwards on the labelled transitions with the policy
    frozen, maps latents to actions. ``latent = "none"``: the policy predicts actions directly, trained on the
    labelled transitions (``relabel = "none"``) or on every transition relabelled by an inverse dynamics
    model trained on the labels (``relabel = "idm"``); with ``labels = 1`` it is BC on all labels, the
    reference every return is normalised by. A ``-action`` latent carries LAFP's action-decoder
    regularisation during pretraining (weight = labelled share).

    Decoder training (``decoder``; None: ``interp`` for lafp, ``idm`` for bc):
    ``idm`` on the IDM latents of labelled transitions; ``sample`` on the frozen policy's own outputs at
    labelled observations; ``interp`` (LAFP's inference-time interpolation, lafp only) on policy samples whose
    ODE starts at (1 - tau_i) z0 + tau_i z_t and runs from tau_i to 1, tau_i ~ U(0, 1) per sample or fixed
    by ``interp_tau``. At deployment the flow policy always starts from pure noise.
    """

    latent: str = "laof"
    policy: str = "bc"
    preset: str = "quick"
    seed: int = 0
    labels: float = 0.01  # labelled fraction of the training transitions (label split frac-<f>; 1 = all)
    label_trajectories: int | None = None  # instead: every transition of n whole episodes (label split traj-<n>)
    relabel: str = "none"  # latent "none" only: "idm" relabels every transition with an IDM trained on labels
    lam_run: str | None = None  # run folder of the latent action model (None: the default run, trained if missing)
    # ---- policy
    frame_stack: int = 3  # must equal the latent action model's
    encoder: str = "halving"  # the pixel encoder (rl_laof.models.policy.ENCODERS)
    width: int = 16  # base channel count of the pixel encoder
    features: int = 256  # observation embedding
    hidden: int = 256
    euler_steps: int = 3  # LAFP's K: 3 (1 is clearly worse, 5-20 give nothing)
    time_embed: int = 64  # sinusoidal tau embedding size
    augment: bool = True  # random shifts of +-4 px (DrQ), the same for every method
    steps: int = 2000
    batch_size: int = 64
    lr: float = 3e-4
    lr_schedule: str = "constant"  # every stage's: "constant" | "cosine" (decayed to 0 over the stage's steps)
    weight_decay: float = 1e-4
    grad_clip: float = 10.0
    # ---- action decoder (and the relabelling IDM)
    decoder: str | None = None
    interp_tau: float | None = None  # None: tau_i ~ U(0, 1) per sample
    decoder_hidden: int = 256
    decoder_steps: int = 2000
    decoder_batch_size: int = 64
    decoder_lr: float = 1e-3
    decoder_weight_decay: float = 1e-3
    idm_steps: int = 1500
    checkpoint_every: int = 500  # steps between checkpoints of each training stage
    # ---- evaluation
    eval_episodes: int = 8  # per seed and background set, run in parallel
    eval_seeds: int = 2
    eval_backgrounds: tuple[str, ...] = ("train", "eval")  # "eval": the held-out background videos
    latency_calls: int = 200
    normalise: bool = True  # divide returns by BC on all labels (trained too if missing)
    threads: int | None = None
    precision: str = "fp32"  # "fp32" | "bf16" (autocast forward passes) | "auto" (bf16 where native)

    def __post_init__(self) -> None:
        object.__setattr__(self, "eval_backgrounds", tuple(self.eval_backgrounds))
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"precision={self.precision!r}: use 'auto', 'fp32' or 'bf16'.")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule={self.lr_schedule!r}: use 'constant' or 'cosine'.")
        if self.encoder not in ("halving", "drq", "drq_s2"):  # rl_laof.models.policy.ENCODERS
            raise ValueError(f"encoder={self.encoder!r}: use 'halving', 'drq' or 'drq_s2'.")
        if self.latent != "none" and self.latent not in LAM_METHODS:
            raise ValueError(f"Unknown latent {self.latent!r}; valid: none, {', '.join(LAM_METHODS)}.")
        if self.policy not in POLICY_TYPES:
            raise ValueError(f"Unknown policy {self.policy!r}; valid: {', '.join(POLICY_TYPES)}.")
        if self.latent == "none" and self.policy != "bc":
            raise ValueError("latent 'none' predicts actions directly: use --policy bc (LAFP needs a latent space).")
        if self.relabel not in RELABEL_MODES:
            raise ValueError(f"Unknown relabel {self.relabel!r}; valid: {', '.join(RELABEL_MODES)}.")
        if self.relabel != "none" and self.latent != "none":
            raise ValueError("--relabel idm is the IDM baseline: use it with --latent none.")
        if self.decoder is not None:
            if self.decoder not in DECODER_MODES:
                raise ValueError(f"Unknown decoder mode {self.decoder!r}; valid: {', '.join(DECODER_MODES)}.")
            if self.latent == "none":
                raise ValueError("latent 'none' has no action decoder; drop --decoder.")
            if self.decoder == "interp" and self.policy != "lafp":
                raise ValueError("decoder 'interp' starts the flow policy's ODE mid-way: it needs --policy lafp.")
        if self.interp_tau is not None and not 0.0 <= self.interp_tau < 1.0:
            raise ValueError(f"interp_tau={self.interp_tau}: a time in [0, 1).")
        if not 0.0 < self.labels <= 1.0:
            raise ValueError(f"labels={self.labels}: a fraction in (0, 1].")
        if self.label_trajectories is not None and self.label_trajectories < 1:
            raise ValueError(f"label_trajectories={self.label_trajectories}: at least one whole episode.")
        if self.frame_stack < 1:
            raise ValueError(f"frame_stack={self.frame_stack}: need at least 1.")
        if self.euler_steps < 1:
            raise ValueError(f"euler_steps={self.euler_steps}: need at least 1.")
        if self.eval_episodes < 1 or self.eval_seeds < 1:
            raise ValueError("eval_episodes and eval_seeds must be >= 1.")
        if any(b not in ("train", "eval") for b in self.eval_backgrounds):
            raise ValueError(f"eval_backgrounds={self.eval_backgrounds}: use 'train' and / or 'eval'.")
        for name in ("steps", "batch_size", "decoder_steps", "decoder_batch_size", "idm_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}: must be >= 1.")

    @property
    def resolved_precision(self) -> str:
        return self.precision if self.precision != "auto" else native_bf16()

    @property
    def resolved_decoder(self) -> str | None:
        if self.latent == "none":
            return None
        return self.decoder or ("interp" if self.policy == "lafp" else "idm")

    @property
    def label_split(self) -> str:
        if self.label_trajectories is not None and self.labels < 1.0:
            return f"traj-{self.label_trajectories}"
        return "all" if self.labels >= 1.0 else f"frac-{self.labels:g}"

    @property
    def tag(self) -> str:
        """Run name: what is imitated, how, and on which labels."""
        if self.latent == "none":
            what = "idm-bc" if self.relabel == "idm" else "bc"
        else:
            what = f"{self.latent}-{self.policy}-{self.resolved_decoder}"
        return f"{what}-{self.label_split}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# The dataclass defaults are the quick preset (a few minutes per policy on 2 cores).
IMITATION_PRESETS: dict[str, dict[str, Any]] = {
    "quick": {},
    "paper": dict(width=32, features=512, hidden=512, steps=50_000, batch_size=256, decoder_steps=10_000,
                  idm_steps=10_000, eval_episodes=20, eval_seeds=5),
}


# --------------------------------------------------------------------------- agents in latent action spaces

TRAIN_LATENTS = ("none", "lapo", "laom", "laof", "laof-action", "sof")
SKILL_ACTIONS = ("tokens", "continuous")
TRAIN_ALGOS = ("ppo", "a2c", "trpo", "recurrent-ppo", "sac", "td3", "tqc")
OFF_POLICY = ("sac", "td3", "tqc")


@dataclass(frozen=True)
class TrainConfig:
    """An RL agent in a latent action space (``python -m rl_laof.train``).

    ``latent = "none"``: the agent acts with raw actions. Otherwise it acts with the latents of a latent
    action model, decoded to actions by the frozen action decoder of an imitation run
    (``rl_laof.imitate``): with ``latent_policy = "bc"`` the action is the normalised latent (bounded by
    the latent normalisation, [-1, 1]^D) and the agent's encoder and mean start from the latent BC policy;
    with ``"lafp"`` the action is the source noise z0 of the frozen flow policy (its prior N(0, I):
    the agent's mean starts at 0, its std at 1, its encoder from the flow policy's). The env runs at the
    dataset's action repeat, as the latents do.
    """

    algo: str = "ppo"
    latent: str = "laof"
    latent_policy: str = "bc"  # "bc" | "lafp"
    latent_agent: str | None = None  # an imitation run folder (agent.pt); None: shipped, else built at the preset
    task: str = "cheetah-run"
    obs: str = "pixels"  # "pixels" | "state"
    distractors: str = "laom"  # LAOM's level, the benchmarks' (where latent actions carry the action: README)
    preset: str = "quick"
    seed: int = 0
    num_envs: int = 8
    total_steps: int = 20_000  # agent steps over all envs
    action_repeat: int | None = None  # None: the task's pixel action repeat (envs.tasks), as its datasets
    image_size: int = 64
    frame_stack: int = 3
    init_policy: bool = True  # start from the pretrained latent policy where the action type allows
    residual_pcs: int = 8  # latent_policy bc: > 0 = the frozen latent BC policy acts and the agent, on its pixel
    #                        features, adds a residual along this many leading principal directions of the
    #                        training latents (rl_laof.latent_env.ResidualLatentVecEnv); 0 = the agent acts with
    #                        the whole latent, its encoder and actor initialised from the BC policy
    freeze_encoder: bool = False  # keep a pretrained pixel encoder fixed (a fresh one always trains)
    critic_warmup_steps: int = 0  # on-policy: agent steps during which only the critic learns (the actor is
    #                               held at its pretrained start while the value function catches up)
    # ---- SOF skills (latent "sof"): one decision per H-step chunk; steps, evaluations and checkpoints still
    # count environment steps, and the discount per decision is gamma^H
    skills: str | None = None  # a skills run folder (python -m rl_laof.skills); None: runs/skills/<domain>-...
    skill_action: str = "tokens"  # "tokens": multi-discrete FSQ codes; "continuous": the pre-quantisation code
    kl_coef: float = 0.0  # SPiRL-style: chunk reward -= kl_coef (log pi(tokens|o) - log prior(tokens|o, task))
    skill_init_steps: int = 300  # distillation steps that start the agent as the skill prior
    # ---- networks (the pixel encoder of rl_laof.models.policy, so a latent policy's weights load)
    width: int = 16
    features: int = 256
    hidden: int = 256
    log_std_init: float = -1.0  # std e^-1 = 0.37 in the normalised latent / action range ("lafp": 0, the prior)
    # ---- optimisation (stable-baselines3 arguments; algo_kwargs overrides any)
    learning_rate: float = 3e-4  # decays linearly to learning_rate_end over total_steps, then stays there
    learning_rate_end: float = 0.0  # the schedule's floor (the last rollout may overshoot total_steps)
    n_steps: int = 256  # on-policy rollout length per env
    batch_size: int = 256
    n_epochs: int = 4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_range: float = 0.2
    ent_coef: float = 0.0
    normalize_reward: bool = True  # on-policy algorithms only
    buffer_size: int = 100_000  # off-policy algorithms only
    algo_kwargs: dict[str, Any] = field(default_factory=dict)
    # ---- evaluation, checkpoints
    eval_every: int = 5_000
    eval_episodes: int = 4
    final_eval_episodes: int = 8
    checkpoint_every: int = 5_000
    threads: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "algo", self.algo.lower())
        if self.algo not in TRAIN_ALGOS:
            raise ValueError(f"Unknown algo {self.algo!r}; valid: {', '.join(TRAIN_ALGOS)}.")
        if self.latent not in TRAIN_LATENTS:
            raise ValueError(f"Unknown latent {self.latent!r}; valid: {', '.join(TRAIN_LATENTS)}.")
        if self.skill_action not in SKILL_ACTIONS:
            raise ValueError(f"Unknown skill_action {self.skill_action!r}; valid: {', '.join(SKILL_ACTIONS)}.")
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
        if self.latent_policy not in POLICY_TYPES:
            raise ValueError(f"Unknown latent_policy {self.latent_policy!r}; valid: {', '.join(POLICY_TYPES)}.")
        if self.obs not in OBS_TYPES:
            raise ValueError(f"Unknown obs type {self.obs!r}; valid: {', '.join(OBS_TYPES)}.")
        if self.obs == "state" and self.latent_policy == "lafp" and self.latent != "none":
            raise ValueError("latent_policy 'lafp' runs the flow policy on pixels: use --obs pixels.")
        DistractorConfig.parse(self.distractors)
        if self.obs == "state" and DistractorConfig.parse(self.distractors).active_kinds:
            object.__setattr__(self, "distractors", "none")  # distractors are pixels; state obs has none
        for name in ("num_envs", "total_steps", "n_steps", "batch_size", "n_epochs", "eval_every",
                     "eval_episodes", "final_eval_episodes", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}: must be >= 1.")
        if self.action_repeat is not None and self.action_repeat < 1:
            raise ValueError(f"action_repeat={self.action_repeat}: must be >= 1.")
        if self.critic_warmup_steps < 0:
            raise ValueError(f"critic_warmup_steps={self.critic_warmup_steps}: must be >= 0.")
        if self.residual_pcs < 0:
            raise ValueError(f"residual_pcs={self.residual_pcs}: must be >= 0 (0: act with the whole latent).")
        if self.critic_warmup_steps and not self.on_policy:
            raise ValueError(f"critic_warmup_steps holds an actor-critic's actor; {self.algo} is off-policy: "
                             "use ppo, a2c, trpo or recurrent-ppo.")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate={self.learning_rate}: must be > 0.")
        if not 0 <= self.learning_rate_end <= self.learning_rate:
            raise ValueError(f"learning_rate_end={self.learning_rate_end}: must be in [0, learning_rate].")

    @property
    def on_policy(self) -> bool:
        return self.algo not in OFF_POLICY

    @property
    def residual(self) -> bool:
        """The agent acts as a residual on the frozen latent BC policy's features (see ``residual_pcs``)."""
        return self.residual_pcs > 0 and self.latent not in ("none", "sof") and self.latent_policy == "bc" \
            and self.obs == "pixels"

    @property
    def resolved_action_repeat(self) -> int:
        return self.action_repeat or get_task(self.task).pixel_action_repeat

    @property
    def tag(self) -> str:
        latent = self.latent if self.latent == "none" else f"{self.latent}-{self.latent_policy}"
        if self.residual:
            latent += f"-res{self.residual_pcs}"
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

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# The dataclass defaults are the quick preset: 20k agent steps (80k control steps at action repeat 4, 80
# episodes), ~5 minutes of PPO on 2 cores in the residual latent space (86 agent steps/s; the pixel env alone
# steps ~117; benchmarks/results/train.json).
TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    "quick": {},
    "paper": dict(total_steps=1_000_000, num_envs=16, width=32, features=512, hidden=512, eval_every=50_000,
                  checkpoint_every=50_000, eval_episodes=16, final_eval_episodes=50),
}


# --------------------------------------------------------------------------- sweeps

SWEEP_TARGETS = ("laof", "lapo", "laom", "lafp", "sof", "ppo")
SWEEP_OBJECTIVES = ("probe", "return", "both")
SWEEP_PRUNERS = ("median", "hyperband", "none")
SWEEP_SAMPLERS = ("tpe", "random")
#: per target, (training steps per trial, steps between intermediate values) when the stage preset is quick:
#: a few minutes per trial on 2 cores (PPO: agent steps)
SWEEP_QUICK_BUDGET = {"laof": (300, 100), "lapo": (300, 100), "laom": (300, 100), "lafp": (500, None),
                      "sof": (300, None), "ppo": (10_000, 2_500)}


@dataclass(frozen=True)
class SweepConfig:
    """An Optuna study over one stage's config (``python -m sweeps.tune``).

    A trial runs the target's stage at ``preset`` with the sampled values, cut to the sweep's trial budget
    (``trial_steps``), and is scored on held-out data: ``probe`` = the
    held-out linear-probe action MSE of a latent action model (minimised), ``return`` = the downstream
    episode return (maximised), ``both`` = the two at once (a Pareto front; Optuna cannot prune those).
    ``n_trials`` counts the study's trials over every worker and every rerun, so running the same
    command again finishes an interrupted study. A trial whose worker stops beating its heartbeat for
    ``grace_s`` is marked failed and retried with the same parameters (at most ``max_retry`` times).
    """

    target: str = "laof"
    task: str = "cheetah-run"
    preset: str = "quick"  # the stage preset every trial starts from
    method: str | None = None  # latent action targets: None -> "<target>-action" (tunes the action weight too)
    dataset: str | None = None  # None: the task's dataset at the preset (built first); sof: a multi-task one
    objective: str = "probe"
    n_trials: int = 20
    workers: int = 1  # worker processes on this machine (more machines: run the same command there)
    storage: str | None = None  # journal file path or SQLAlchemy URL; None: runs/sweeps/<study>/journal.log
    study_name: str | None = None  # None: <target>-<task>-<objective>
    sampler: str = "tpe"
    pruner: str = "median"
    pruner_startup_trials: int = 3  # median: trials finished before any is pruned
    seed: int = 0
    # training steps of the tuned stage per trial (PPO: agent steps) and steps between intermediate values
    # (the pruners' rungs); None: SWEEP_QUICK_BUDGET at the quick preset, the stage preset's own otherwise
    trial_steps: int | None = None
    report_every: int | None = None
    threads: int | None = None  # torch threads per worker; None: cores // workers
    heartbeat_s: float = 10.0
    grace_s: float = 60.0  # a RUNNING trial without a heartbeat for this long belongs to a dead worker
    max_retry: int = 2

    def __post_init__(self) -> None:
        if self.target not in SWEEP_TARGETS:
            raise ValueError(f"Unknown target {self.target!r}; valid: {', '.join(SWEEP_TARGETS)}.")
        if self.objective not in SWEEP_OBJECTIVES:
            raise ValueError(f"Unknown objective {self.objective!r}; valid: {', '.join(SWEEP_OBJECTIVES)}.")
        if self.objective != "return" and self.target not in ("laof", "lapo", "laom"):
            raise ValueError(f"target {self.target!r} has no latent probe: use --objective return (the probe "
                             "objectives are for the latent action models laof / lapo / laom).")
        if self.method is not None and (self.target not in ("laof", "lapo", "laom")
                                        or self.method.removesuffix("-action") != self.target):
            raise ValueError(f"--method {self.method}: the {self.target} target takes {self.target} or "
                             f"{self.target}-action.")
        if self.pruner not in SWEEP_PRUNERS:
            raise ValueError(f"Unknown pruner {self.pruner!r}; valid: {', '.join(SWEEP_PRUNERS)}.")
        if self.sampler not in SWEEP_SAMPLERS:
            raise ValueError(f"Unknown sampler {self.sampler!r}; valid: {', '.join(SWEEP_SAMPLERS)}.")
        if self.n_trials < 1 or self.workers < 1:
            raise ValueError("n_trials and workers must be >= 1.")
        if self.heartbeat_s <= 0 or self.grace_s <= 2 * self.heartbeat_s:
            raise ValueError(f"grace_s={self.grace_s} must exceed twice heartbeat_s={self.heartbeat_s} (> 0), "
                             "or live workers would look dead.")
        if self.trial_steps is not None and self.trial_steps < 1:
            raise ValueError("trial_steps must be >= 1 (or None for the preset's).")

    @property
    def budget(self) -> tuple[int | None, int | None]:
        """(training steps per trial, steps between intermediate values); None: the stage preset's."""
        steps, every = SWEEP_QUICK_BUDGET[self.target] if self.preset == "quick" else (None, None)
        return (self.trial_steps or steps, self.report_every or every)

    @property
    def resolved_method(self) -> str | None:
        if self.target not in ("laof", "lapo", "laom"):
            return None
        return self.method or f"{self.target}-action"

    @property
    def name(self) -> str:
        return self.study_name or f"{self.target}-{self.task}-{self.objective}"

    @property
    def directions(self) -> list[str]:
        return {"probe": ["minimize"], "return": ["maximize"], "both": ["minimize", "maximize"]}[self.objective]

    @property
    def worker_threads(self) -> int:
        return self.threads or max(1, (os.cpu_count() or 1) // self.workers)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


SWEEP_PRESETS: dict[str, dict[str, Any]] = {
    # a few minutes per trial on 2 cores (LAOF: 300 steps, probes at 100 / 200 / 300)
    "quick": {},
    # the stage's own paper budget per trial, intermediate values at its evaluation interval
    "paper": dict(preset="paper", n_trials=100, pruner="hyperband"),
}
