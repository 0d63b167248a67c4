"""The data stage's configs: a collected dataset (``CollectConfig``, ``python -m rl_laof.collect``) and its
presets, and what one training sample holds (``WindowConfig``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from envs.config import DistractorConfig, EnvConfig
from envs.tasks import get_task
from rl_laof.presets import check_ranges
from rl_laof.runs import dataset_name


@dataclass(frozen=True)
class CollectConfig:
    """A video dataset rolled out by an expert on the dm_control backend (``rl_laof.collect``).

    Four splits of whole episodes, each from its own seeds: ``train`` (what methods learn from),
    ``val`` (held-out episodes, same distractor distribution: for choices, i.e. defaults, budgets and
    sweeps), ``eval`` (held-out episodes, same distractor distribution: for reported figures only) and
    ``heldout_bg`` (held-out episodes with the *eval* background videos: a generalisation split, reported
    only). Choosing on ``val`` keeps ``eval`` an unbiased estimate of what was chosen. Label splits over
    the train transitions are nested (every larger budget contains the smaller ones).
    """

    task: str = "cheetah-run"
    preset: str = "quick"
    distractors: DistractorConfig = field(default_factory=lambda: DistractorConfig(difficulty="hard"))
    image_size: int = 64
    action_repeat: int | None = None  # None: the task's pixel action repeat (envs.tasks)
    episodes: int = 32  # train episodes
    eval_episodes: int = 8
    heldout_bg_episodes: int = 4
    val_episodes: int = 8  # 0: no val split (what datasets collected before it existed hold)
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
        check_ranges(self, ('image_size', 'workers', 'label_trajectories'))
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
        if self.episode_steps is not None and self.episode_steps < 2:
            raise ValueError(f"episode_steps={self.episode_steps}: need at least 2 steps per episode.")
        if any(not (0.0 <= f <= 1.0) for f in self.label_fractions):
            raise ValueError(f"label_fractions {self.label_fractions}: each must be in [0, 1].")
        if self.compression not in (None, "lzf", "gzip"):
            raise ValueError(f"compression={self.compression!r}: use 'lzf', 'gzip' or None.")
        if self.expert_which not in ("best", "final"):
            raise ValueError(f"expert_which={self.expert_which!r}: use 'best' or 'final'.")

    @property
    def name(self) -> str:
        """The dataset's folder name under runs/datasets/<task>/ (``rl_laof.runs.dataset_name``)."""
        return dataset_name(self.distractors.difficulty, self.action_repeat, self.preset, self.seed)

    def split_sizes(self) -> dict[str, int]:
        """Episodes per split, in ``format.SPLITS`` order."""
        return {"train": self.episodes, "eval": self.eval_episodes, "heldout_bg": self.heldout_bg_episodes,
                "val": self.val_episodes}

    def env_config(self, split: str, seed: int) -> EnvConfig:
        """The one-env dm_control config an episode of ``split`` is rolled out in: ``heldout_bg`` with the eval
        background videos, every other split (``val`` too) with the train ones."""
        dist = self.distractors
        if split == "heldout_bg":
            dist = dataclasses.replace(dist, background_split="eval")
        # the frame infos (agent mask, state) are needed whether or not the flow inputs are stored
        return EnvConfig(task=self.task, num_envs=1, obs="pixels", distractors=dist, image_size=self.image_size,
                         frame_stack=1, action_repeat=self.action_repeat, seed=seed, backend="dm_control",
                         exact_flow_info=True)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# The dataclass defaults are the quick preset: 32 train + 8 val + 8 eval + 4 heldout_bg episodes of up to 500
# agent steps (cheetah-run at action repeat 4: 250, the whole episode; 8000 training frames).
COLLECT_PRESETS: dict[str, dict[str, Any]] = {
    "quick": {},
    # LAOM's scale per task is 5000 x 1000 steps; this is a tenth of it
    "paper": dict(episodes=500, eval_episodes=50, heldout_bg_episodes=50, val_episodes=50, episode_steps=None,
                  workers=16, expert_preset="paper"),
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
        check_ranges(self, ('frame_stack',))
        if self.frame_stack < 1:
            raise ValueError(f"frame_stack={self.frame_stack}: need at least 1.")
        if self.max_offset < 1:
            raise ValueError(f"max_offset={self.max_offset}: need at least 1 (k=1 is the next frame).")
