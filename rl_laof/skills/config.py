"""The SOF skills stage's config (``python -m rl_laof.skills``) and its presets."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from rl_laof.flow.tiers import check_tier, flow_method
from rl_laof.presets import check_eval_backgrounds, check_ranges

MAX_CODES = 2 ** 16  # FSQ's largest codebook in its paper; the skill prior has one logit per code


@dataclass(frozen=True)
class SkillsConfig:
    """SOF skills from optical flow (``python -m rl_laof.skills pretrain|prior|translate|evaluate``).

    Tokenizer (QueST's, on flow): the agent's flow of each of the ``chunk`` steps of a window (flow x agent
    mask x validity, average-pooled to ``flow_size``; the flow and the mask as ``flow_tier`` allows) -> per-step
    conv encoder -> ``downsample`` causal temporal convolutions of stride 2 -> causal transformer -> FSQ with
    ``fsq_levels``: chunk / 2^downsample tokens per window. Decoder: tokens + the window's first frame -> the
    flow window; L1 loss.
    Prior: autoregressive transformer over a window's tokens given the current frame stack and the task;
    top-k sampling; the agent replans after every executed chunk. Translator: (tokens or the decoded flow,
    frame stack) -> the chunk's actions, trained on the labelled windows only (whole labelled trajectories:
    ``label_trajectories`` per task).
    """

    preset: str = "quick"
    seed: int = 0
    # ---- tokenizer
    chunk: int = 10  # H: steps per skill; divides the 500-step walker episodes (a chunk never crosses one)
    downsample: int = 1  # stride-2 causal temporal convs: tokens per chunk = chunk / 2^downsample
    fsq_levels: tuple[int, ...] = (8, 5, 5, 5)  # QueST's: 1000 codes
    flow_size: int = 16  # flow windows are average-pooled to flow_size^2 (from the dataset's frames)
    conv_kernel: int = 4  # temporal conv kernel (left-padded by kernel - stride: causal)
    d_model: int = 128
    heads: int = 4
    encoder_layers: int = 2
    decoder_layers: int = 2
    width: int = 16  # conv encoders' base channels
    frame_stack: int = 3  # the prior's and translator's observation (the decoder sees the window's first frame)
    frame_size: int = 32  # the decoder sees the window's first frame average-pooled to this size
    background_weight: float = 0.1  # L1 weight of flow cells that do not show the agent (1: a plain mean)
    # what the flow windows are made of (rl_laof.flow.tiers), as LAMConfig.flow_tier: "rgb" (TV-L1 flow from RGB,
    # every valid pixel: no simulator information), "estimated" (that flow x the simulator's agent mask),
    # "oracle" (the simulator's exact flow x agent mask: privileged; every skills run before issue 32)
    flow_tier: str = "rgb"
    tokenizer_steps: int = 1500
    # ---- prior
    prior_d_model: int = 128
    prior_layers: int = 2
    prior_steps: int = 1500
    top_k: int = 5
    execute: int | None = None  # actions executed per plan before replanning (QueST: 8 of 32); None: the whole chunk
    # ---- translator
    translator_input: str = "tokens"  # "tokens" (FSQ codes) | "flow" (the decoder's flow window)
    translator_hidden: int = 256
    translator_steps: int = 1500
    label_trajectories: int = 2  # labelled whole episodes per task (label split traj-<n>)
    # ---- optimisation (every stage)
    batch_size: int = 64
    lr: float = 3e-4
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    augment: bool = True  # DrQ random shifts of the frames the prior and translator see
    checkpoint_every: int = 500
    # ---- evaluation
    eval_episodes: int = 8
    eval_seeds: int = 1
    eval_backgrounds: tuple[str, ...] = ("train",)
    threads: int | None = None

    def __post_init__(self) -> None:
        check_ranges(self, ('chunk', 'downsample', 'flow_size', 'd_model', 'heads', 'encoder_layers',
                           'decoder_layers', 'width', 'frame_stack', 'frame_size', 'tokenizer_steps',
                           'prior_d_model', 'prior_layers', 'prior_steps', 'top_k', 'translator_hidden',
                           'translator_steps', 'label_trajectories', 'batch_size', 'checkpoint_every',
                           'eval_episodes', 'eval_seeds'))
        object.__setattr__(self, "fsq_levels", tuple(int(x) for x in self.fsq_levels))
        object.__setattr__(self, "eval_backgrounds", tuple(self.eval_backgrounds))
        stride = 2 ** self.downsample
        if self.chunk < 1 or self.downsample < 0 or self.chunk % stride:
            raise ValueError(f"chunk={self.chunk}, downsample={self.downsample}: the chunk must be a multiple of "
                             f"2^downsample = {stride}.")
        if not self.fsq_levels or any(level < 2 for level in self.fsq_levels):
            raise ValueError(f"fsq_levels={self.fsq_levels}: every level count must be >= 2.")
        if math.prod(self.fsq_levels) > MAX_CODES:  # the prior's output layer has one logit per code
            raise ValueError(f"fsq_levels={self.fsq_levels}: {math.prod(self.fsq_levels)} codes; at most {MAX_CODES} "
                             "(QueST's (8, 5, 5, 5) has 1000).")
        check_eval_backgrounds(self.eval_backgrounds)
        for name in ("flow_size", "frame_size"):  # the conv encoders halve a side down to 4 x 4
            size = getattr(self, name)
            if size < 4 or size & (size - 1):
                raise ValueError(f"{name}={size}: a power of two >= 4 (the encoders halve it down to 4 x 4).")
        if self.conv_kernel < 2:
            raise ValueError(f"conv_kernel={self.conv_kernel}: must be >= the stride 2.")
        if self.d_model % self.heads or self.prior_d_model % self.heads:
            raise ValueError(f"d_model={self.d_model} / prior_d_model={self.prior_d_model} must divide by "
                             f"heads={self.heads}.")
        if self.translator_input not in ("tokens", "flow"):
            raise ValueError(f"translator_input={self.translator_input!r}: use 'tokens' or 'flow'.")
        check_tier(self.flow_tier)
        if self.execute is not None and not 1 <= self.execute <= self.chunk:
            raise ValueError(f"execute={self.execute}: between 1 and the chunk ({self.chunk}).")

    @property
    def tokens(self) -> int:
        return self.chunk // 2 ** self.downsample

    @property
    def resolved_execute(self) -> int:
        return self.execute or self.chunk

    @property
    def codebook_size(self) -> int:
        return math.prod(self.fsq_levels)

    @property
    def flow_method(self) -> str:
        """The flow file the tier's windows come from (``flow-<method>.h5``): exact or estimate."""
        return flow_method(self.flow_tier)

    @property
    def masked(self) -> bool:
        """Whether the flow windows are cut to the simulator's agent mask (not in the ``rgb`` tier)."""
        return self.flow_tier != "rgb"

    @property
    def label_split(self) -> str:
        return f"traj-{self.label_trajectories}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# The dataclass defaults are the quick preset (~2-4 minutes per stage on 2 cores); paper: QueST's sizes.
SKILLS_PRESETS: dict[str, dict[str, Any]] = {
    "quick": {},
    "paper": dict(chunk=32, downsample=2, flow_size=32, frame_size=64, d_model=256, encoder_layers=2, decoder_layers=4,
                  width=32, prior_d_model=384, prior_layers=6, tokenizer_steps=50_000, prior_steps=50_000,
                  translator_steps=20_000, batch_size=128, eval_episodes=25, eval_seeds=3,
                  eval_backgrounds=("train", "eval"), checkpoint_every=2500),
}
