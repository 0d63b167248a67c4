"""The latent action model stage's config (``python -m rl_laof.lam``) and its presets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from rl_laof.data.config import WindowConfig
from rl_laof.flow.agent_targets import FLOW_LOSSES
from rl_laof.flow.tiers import agent_source, check_tier, flow_method
from rl_laof.precision import native_bf16
from rl_laof.presets import check_ranges

LAM_METHODS = ("lapo", "laom", "laof", "lapo-action", "laom-action", "laof-action")
LR_SCHEDULES = ("constant", "warmup_linear")
# sizes a None resolves to, by preset and base method (the quick preset: the dataclass defaults)
QUICK_SIZES: dict[str, int] = dict(steps=1000, batch_size=64, labelled_batch_size=32, width=16)
PAPER_SIZES: dict[str, dict[str, int]] = {
    # LAOF's Procgen setting (XizoB/LAOF): batch 128, 50k steps, U-Net width 64
    "lapo": dict(steps=50_000, batch_size=128, labelled_batch_size=64, width=64),
    "laof": dict(steps=50_000, batch_size=128, labelled_batch_size=64, width=64),
    # dunnolab/laom's configs/laom-labels.yaml: 10 epochs of batch 512 over 5000 trajectories x 990 windows
    # (offset 10) = 10 x ceil(4.95M / 512) updates, a labelled batch of 128, IMPALA (16, 32, 32) x 6
    "laom": dict(steps=96_680, batch_size=512, labelled_batch_size=128, width=96),
}


@dataclass(frozen=True)
class LAMConfig:
    """A latent action model and its training (``python -m rl_laof.lam``).

    Fields left ``None`` take the method's published setting (:meth:`resolved`):

    ============  =======  =======  ==========  ===========================================
    method        latent   FDM      IDM offset  losses
    ============  =======  =======  ==========  ===========================================
    lapo          vq       pixel    1           FDM + VQ
    laof          cont.    pixel    1           FDM + flow (z-only flow decoder on the agent's flow)
    laom          cont.    latent   U{1..10}    latent FDM vs EMA target encoder, each image augmented
    ``*-action``  same + an action head on labelled batches. lapo / laof (XizoB/LAOF's reference code):
                  labelled and unlabelled batches alternate, a labelled step's loss lambda (FDM + VQ +
                  action), an unlabelled step's (1 - lambda) (FDM + VQ + flow), lambda = the labelled
                  share of the *data* (0.01 at 1 % labels). laom: a labelled batch beside every
                  unlabelled one, action weight 0.001 (dunnolab/laom)
    ============  =======  =======  ==========  ===========================================

    Sizes and optimiser by method: lapo / laof: halving conv nets (``encoder`` "conv"), 128-d latent, AdamW
    lr 3e-4, weight decay 0.01, constant lr, grad clip 2. laom (dunnolab/laom's configs/laom.yaml): one
    IMPALA-ResNet encoder (``encoder`` "impala", :mod:`rl_laof.models.laom_model`), 8192-d latent, heads 1024
    wide, Adam lr 1e-4 without weight decay or clipping, linear warm-up over 30 % of the steps then linear decay
    to 0 (``lr_schedule`` "warmup_linear"). The paper preset's sizes also differ by method (:data:`PAPER_SIZES`).
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
    latent_dim: int | None = None  # None: 128 (lapo*, laof*), 8192 (laom*)
    vq_codebooks: int = 2  # LAPO: 128-d latent = 2 codebooks x 4 positions x 16-d, 64 codes each
    vq_positions: int = 4
    vq_codes: int = 64
    vq_decay: float = 0.999
    vq_commitment: float = 0.05
    fdm: str | None = None  # "pixel" (U-Net on o_t, z at input and bottleneck) | "latent"; None: by method
    # base channel count of every conv net (LAOM's IMPALA stages: width, 2 width, 2 width: the reference's
    # (16, 32, 32) x encoder_scale, 6 published = width 96); None: the preset's size for the method (PAPER_SIZES)
    width: int | None = 16
    encoder: str | None = None  # "conv" (halving convs) | "impala" (LAOM's shared IMPALA-ResNet); None: by method
    head_width: int | None = None  # LAOM's IDM / FDM MLP heads; None: 1024 for laom* (unused by lapo / laof)
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
    # what the flow target is built from (rl_laof.flow.tiers): "rgb" (TV-L1 flow from RGB, no mask: no simulator
    # information), "estimated" (the same flow x the agent mask standing in for a segmenter), "oracle" (the
    # simulator's exact flow x agent mask: privileged). "rgb" is val's choice (bench_latent_quality, 5 seeds: val
    # probe 0.555 of the mean action vs LAPO's 0.937; held-out 0.565 [0.531, 0.598] vs 1.031 [0.963, 1.107])
    flow_tier: str = "rgb"
    flow_source: str = "observed"  # "observed" (displayed frames) | "camfree" (camera shake removed; oracle only)
    flow_loss: str = "agent"  # "agent": per-sample weighted to the agent's cells | "plain": LAOF's plain MSE
    flow_bg_weight: float = 0.1  # weight of a cell without the agent in the "agent" loss
    # side of the flow decoder's output (None: the frame size). 16 measured best: held-out probe 0.26 of the mean
    # action at 1100 samples/s against 0.28 at 660 samples/s for 64 (LAOM level, 1000 steps, README)
    flow_resolution: int | None = 16
    # ---- loss weights (the sweeps tune these)
    fdm_weight: float = 1.0
    vq_weight: float = 1.0
    flow_weight: float | None = None  # None: 1 for laof, 1 - lambda for laof-action, 0 otherwise
    action_weight: float | None = None  # None: 1 in a labelled step for lapo/laof-action, 0.001 for laom-action
    # how labels enter (*-action): "alternate" labelled / unlabelled steps weighted lambda / 1 - lambda (lapo,
    # laof), "joint" a labelled batch in every step (laom); None: by method
    label_schedule: str | None = None
    label_share: float | None = None  # lambda of "alternate"; None: the labelled share of the training data
    # ---- optimisation
    # steps, batch_size, labelled_batch_size: None = the preset's size for the method (PAPER_SIZES)
    steps: int | None = 1000
    batch_size: int | None = 64
    labelled_batch_size: int | None = 32  # a second batch from the labelled windows (*-action)
    optimizer: str | None = None  # "adamw" | "adam"; None: adamw (lapo*, laof*), adam (laom*)
    lr: float | None = None  # None: 3e-4 (lapo*, laof*), 1e-4 (laom*)
    # "constant" | "warmup_linear" (0 -> lr over lr_warmup x steps, then linearly to 0 at the last step, set per
    # update: LAOM's 3 of 10 epochs); None: constant (lapo*, laof*), warmup_linear (laom*)
    lr_schedule: str | None = None
    lr_warmup: float = 0.3
    weight_decay: float | None = None  # None: 0.01 (lapo*, laof*), 0 (laom*)
    grad_clip: float | None = None  # max gradient norm, 0 = no clipping; None: 2 (lapo*, laof*), 0 (laom*)
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
    # probe the step-0 model too (the report's untrained_probes: the floor every claim is read against); about
    # 2.5 min on 2 cores for LAOM's 8192-d latent, seconds for a 128-d one
    untrained_probes: bool = True

    def __post_init__(self) -> None:
        check_ranges(self, ('frame_stack', 'max_offset', 'labelled_trajectories', 'latent_dim', 'vq_codebooks',
                           'vq_positions', 'vq_codes', 'width', 'head_width', 'steps', 'batch_size',
                           'labelled_batch_size',
                           'eval_every', 'checkpoint_every', 'eval_windows', 'probe_train_windows', 'train_episodes'))
        if self.method not in LAM_METHODS:
            raise ValueError(f"Unknown method {self.method!r}; valid: {', '.join(LAM_METHODS)}.")
        if self.latent not in (None, "vq", "continuous"):
            raise ValueError(f"latent={self.latent!r}: use 'vq' or 'continuous'.")
        if self.fdm not in (None, "pixel", "latent"):
            raise ValueError(f"fdm={self.fdm!r}: use 'pixel' or 'latent'.")
        if self.encoder not in (None, "conv", "impala"):
            raise ValueError(f"encoder={self.encoder!r}: use 'conv' or 'impala'.")
        if self.encoder == "impala" and self.base != "laom":
            raise ValueError(f"encoder='impala' is LAOM's model: use it with --method laom / laom-action, not "
                             f"{self.method}.")
        if self.optimizer not in (None, "adam", "adamw"):
            raise ValueError(f"optimizer={self.optimizer!r}: use 'adam' or 'adamw'.")
        if self.lr_schedule not in (None, *LR_SCHEDULES):
            raise ValueError(f"lr_schedule={self.lr_schedule!r}: use one of {', '.join(LR_SCHEDULES)}.")
        if not 0.0 <= self.lr_warmup < 1.0:
            raise ValueError(f"lr_warmup={self.lr_warmup}: the warm-up's share of the steps, in [0, 1).")
        if self.action_head not in ("linear", "mlp"):
            raise ValueError(f"action_head={self.action_head!r}: use 'linear' or 'mlp'.")
        if self.labels is not None and self.labelled_trajectories is not None:
            raise ValueError("Give --labels or --labelled-trajectories, not both.")
        if not self.method.endswith("-action") and (self.labels is not None or self.labelled_trajectories is not None):
            raise ValueError(f"--method {self.method} uses no labels; give --labels / --labelled-trajectories to "
                             f"{self.method}-action.")
        if self.labels is not None and not 0.0 < self.labels <= 1.0:
            raise ValueError(f"labels={self.labels}: a fraction in (0, 1].")
        if self._latent_dim % (self.vq_codebooks * self.vq_positions):
            raise ValueError(f"latent_dim={self._latent_dim} must split into {self.vq_codebooks} codebooks x "
                             f"{self.vq_positions} positions.")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"precision={self.precision!r}: use 'auto', 'fp32' or 'bf16'.")
        check_tier(self.flow_tier, self.flow_source)
        if self.label_schedule not in (None, "alternate", "joint"):
            raise ValueError(f"label_schedule={self.label_schedule!r}: use 'alternate' or 'joint'.")
        if self.label_share is not None and not 0.0 < self.label_share < 1.0:
            raise ValueError(f"label_share={self.label_share}: a fraction in (0, 1) (or None: the data's share).")
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
    def _latent_dim(self) -> int:
        return self.latent_dim if self.latent_dim is not None else (8192 if self.base == "laom" else 128)

    @property
    def base(self) -> str:
        return self.method.removesuffix("-action")

    @property
    def flow_method(self) -> str:
        """The flow file (``flow-<method>.h5``) this config's flow target is built from (its tier's)."""
        return flow_method(self.flow_tier)

    @property
    def agent_flow_source(self) -> str:
        """The agent-flow source of :mod:`rl_laof.flow.calibrate` for this config's tier and source."""
        return agent_source(self.flow_tier, self.flow_source)

    @property
    def unused_fields(self) -> tuple[str, ...]:
        """Fields that change nothing this config computes: the flow target's without a flow loss (a LAPO run
        is the same run whatever ``flow_tier`` says, e.g. one made before the default tier changed)."""
        return () if self.resolved().flow_weight > 0 else ("flow_tier", "flow_source")

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
        sizes = PAPER_SIZES[self.base] if self.preset == "paper" else QUICK_SIZES
        size = {k: getattr(self, k) if getattr(self, k) is not None else v for k, v in sizes.items()}
        # lambda scales whole steps (rl_laof.lam.training); within a step every weight is the paper's
        flow_w = 1.0 if self.base == "laof" else 0.0
        action_w = (0.001 if laom else 1.0) if self.supervised else 0.0
        return dataclasses.replace(
            self,
            max_offset=self.max_offset if self.max_offset is not None else (10 if laom else 1),
            # LAOF's paper: continuous latents beat VQ. Measured here too (README): under LAOM-level distractors
            # LAOF's flow decoder on a VQ latent never beat the best constant prediction (held-out probe 0.88 of
            # the mean action, as the untrained model), on a continuous one it reached 0.26 in the same 1000 steps
            latent=self.latent or ("vq" if self.base == "lapo" else "continuous"),
            fdm=self.fdm or ("latent" if laom else "pixel"),
            augment=self.augment if self.augment is not None else laom,
            **size,
            # LAOM (dunnolab/laom, configs/laom.yaml): latent_action_dim 8192, act/obs_head_dim 1024, Adam 1e-4
            # (weight_decay 0, grad_norm None), linear_annealing_with_warmup over 3 of 10 epochs
            encoder=self.encoder or ("impala" if laom else "conv"),
            latent_dim=self._latent_dim,
            head_width=self.head_width if self.head_width is not None else (1024 if laom else None),
            optimizer=self.optimizer or ("adam" if laom else "adamw"),
            lr=self.lr if self.lr is not None else (1e-4 if laom else 3e-4),
            lr_schedule=self.lr_schedule or ("warmup_linear" if laom else "constant"),
            weight_decay=self.weight_decay if self.weight_decay is not None else (0.0 if laom else 0.01),
            grad_clip=self.grad_clip if self.grad_clip is not None else (0.0 if laom else 2.0),
            flow_sigma=self.flow_sigma if self.flow_sigma is not None else flow_sigma,
            precision=self.precision if self.precision != "auto" else native_bf16(),
            flow_weight=self.flow_weight if self.flow_weight is not None else flow_w,
            action_weight=self.action_weight if self.action_weight is not None else action_w,
            label_schedule=self.label_schedule or (("joint" if laom else "alternate") if self.supervised else None),
            labels=self.labels if (self.labels is not None or not self.supervised
                                   or self.labelled_trajectories is not None) else 0.01,
        )

    def learning_rate(self, step: int) -> float:
        """The learning rate of update ``step`` (0-based) of a resolved config: a function of the step alone, so
        a resumed run continues the schedule exactly. "warmup_linear" is dunnolab/laom's
        ``linear_annealing_with_warmup`` stepped per update: step / W during the W = lr_warmup x steps warm-up
        updates (0 at the first), then 1 - (step - W) / (steps - W)."""
        if self.lr_schedule == "constant":
            return self.lr
        warm = round(self.lr_warmup * self.steps)
        f = step / warm if step < warm else 1.0 - (step - warm) / max(self.steps - warm, 1)
        return self.lr * min(max(f, 0.0), 1.0)

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
    # each method's published sizes (PAPER_SIZES: LAOF's Procgen setting, batch 128, 50k steps; LAOM's batch
    # 512, ~97k steps, IMPALA width 96)
    "paper": dict(steps=None, batch_size=None, labelled_batch_size=None, width=None, eval_every=2500,
                  checkpoint_every=1000, eval_windows=4096, mlp_probe_steps=5000),
}
