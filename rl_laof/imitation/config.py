"""The latent policy stage's config (``python -m rl_laof.imitation``) and its presets."""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Any

from envs.config import resolve_backend
from rl_laof.fit import LR_SCHEDULES
from rl_laof.lam.config import LAM_METHODS
from rl_laof.models.policy import ENCODERS
from rl_laof.precision import native_bf16
from rl_laof.presets import check_eval_backgrounds, check_ranges, from_recorded, recorded_dict

POLICY_TYPES = ("bc", "lafp")
DECODER_MODES = ("idm", "sample", "interp", "val")
RELABEL_MODES = ("none", "idm")
#: what ``decoder`` None meant for runs recorded before the ``val`` mode became bc's default (issue 31)
DECODER_DEFAULT_BEFORE_VAL = {"bc": "idm", "lafp": "interp"}


@dataclass(frozen=True)
class ImitationConfig:
    """A policy from pixels imitating the dataset, and its evaluation (``python -m rl_laof.imitation``).

    ``latent`` = a latent action model (``lapo``, ``laof``, ``laof-action``...): the policy predicts that
    model's normalised pre-quantisation latent of (o_t, o_{t+1}), by behaviour cloning (``bc``) or flow
    matching (``lafp``); an action decoder, trained afterwards on the labelled transitions with the policy
    frozen, maps latents to actions. ``latent = "none"``: the policy predicts actions directly, trained on the
    labelled transitions (``relabel = "none"``) or on every transition relabelled by an inverse dynamics
    model trained on the labels (``relabel = "idm"``); with ``labels = 1`` it is BC on all labels, the
    reference every return is normalised by. A ``-action`` latent carries LAFP's action-decoder
    regularisation during pretraining (weight = labelled share).

    Decoder training (``decoder``; None: ``interp`` for lafp, ``val`` for bc):
    ``idm`` on the IDM latents of labelled transitions; ``sample`` on the frozen policy's own outputs at
    labelled observations; ``interp`` (LAFP's inference-time interpolation, lafp only) on policy samples whose
    ODE starts at (1 - tau_i) z0 + tau_i z_t and runs from tau_i to 1, tau_i ~ U(0, 1) per sample or fixed
    by ``interp_tau``; ``val`` trains each of the policy's modes (:attr:`decoder_candidates`) and keeps the one
    whose decoded policy returns most on the ``val`` evaluation set (the data's backgrounds on episodes no
    reported figure uses; ``eval_seeds`` x ``eval_episodes`` of them per mode). At deployment the flow policy
    always starts from pure noise.
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
    width: int = 32  # base channel count of the pixel encoder (study_bc: 16 underfits 128 episodes)
    features: int = 256  # observation embedding
    hidden: int = 256
    euler_steps: int = 3  # LAFP's K: 3 (1 is clearly worse, 5-20 give nothing)
    time_embed: int = 64  # sinusoidal tau embedding size
    augment: bool = True  # random shifts of +-4 px (DrQ), the same for every method
    steps: int = 8000  # ~8 min on 2 cores at width 32, bf16 (study_bc: 2000 stops far short)
    batch_size: int = 64
    lr: float = 3e-4
    lr_schedule: str = "cosine"  # every stage's: "constant" | "cosine" (decayed to 0 over the stage's steps)
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
    eval_backend: str = "auto"  # the evaluation env's simulator; "auto": the faster at the data's action repeat
    #                             (envs.config.resolve_backend: dm_control above 1, the backend the data comes from)
    latency_calls: int = 200
    normalise: bool = True  # divide returns by BC on all labels (trained too if missing)
    threads: int | None = None
    precision: str = "auto"  # "fp32" | "bf16" (autocast forward passes) | "auto" (bf16 where native)

    def __post_init__(self) -> None:
        check_ranges(self, ('frame_stack', 'width', 'features', 'hidden', 'euler_steps', 'time_embed', 'steps',
                           'batch_size', 'decoder_hidden', 'decoder_steps', 'decoder_batch_size', 'idm_steps',
                           'checkpoint_every', 'eval_episodes', 'eval_seeds', 'latency_calls',
                           'label_trajectories'))
        object.__setattr__(self, "eval_backgrounds", tuple(self.eval_backgrounds))
        resolve_backend(self.eval_backend, "pixels", None)  # an unknown backend: refused with the valid ones
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"precision={self.precision!r}: use 'auto', 'fp32' or 'bf16'.")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule={self.lr_schedule!r}: use one of {', '.join(LR_SCHEDULES)}.")
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder={self.encoder!r}: use one of {', '.join(ENCODERS)}.")
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
        check_eval_backgrounds(self.eval_backgrounds)

    @property
    def resolved_precision(self) -> str:
        return self.precision if self.precision != "auto" else native_bf16()

    @property
    def resolved_decoder(self) -> str | None:
        if self.latent == "none":
            return None
        return self.decoder or ("interp" if self.policy == "lafp" else "val")

    @staticmethod
    def recorded_before_val(config: dict[str, Any]) -> dict[str, Any]:
        """A config recorded before ``to_dict`` resolved the decoder (``decoder`` None), with the mode None meant
        then: ``interp`` for lafp, ``idm`` for bc (:data:`DECODER_DEFAULT_BEFORE_VAL`)."""
        if config.get("decoder") is not None or config.get("latent", "none") == "none":
            return config
        return {**config, "decoder": DECODER_DEFAULT_BEFORE_VAL[config.get("policy", "bc")]}

    @property
    def decoder_candidates(self) -> tuple[str, ...]:
        """The decoder modes a run trains: the resolved one, or under ``val`` every mode the policy allows."""
        mode = self.resolved_decoder
        if mode is None:
            return ()
        if mode != "val":
            return (mode,)
        return ("idm", "sample", "interp") if self.policy == "lafp" else ("idm", "sample")

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

    #: fields added after runs were recorded, with the value those runs had in effect (rl_laof.presets.recorded_dict):
    #: before ``eval_backend`` every evaluation ran on EnvPool
    ADDED_FIELDS: typing.ClassVar[dict[str, Any]] = {"eval_backend": "envpool"}

    def to_dict(self) -> dict[str, Any]:
        """The config as recorded with a run, the decoder mode resolved (``decoder`` None means a mode that depends
        on the policy type, and that default has changed: the record names the mode the run used)."""
        return {**recorded_dict(self, self.ADDED_FIELDS), "decoder": self.resolved_decoder}

    @classmethod
    def from_recorded(cls, recorded: dict[str, Any]) -> ImitationConfig:
        """The config a run recorded (an evaluation recorded before ``eval_backend`` existed ran on EnvPool)."""
        return from_recorded(cls, recorded, cls.ADDED_FIELDS,
                             eval_backgrounds=tuple(recorded.get("eval_backgrounds", ("train", "eval"))))


# The dataclass defaults are the quick preset: ~8 minutes of policy training on 2 idle cores (width 32, 8000
# steps, bf16 where native; benchmarks/results/study_bc.json), plus its decoder and evaluation.
IMITATION_PRESETS: dict[str, dict[str, Any]] = {
    "quick": {},
    "paper": dict(width=32, features=512, hidden=512, steps=50_000, batch_size=256, decoder_steps=10_000,
                  idm_steps=10_000, eval_episodes=20, eval_seeds=5),
}
