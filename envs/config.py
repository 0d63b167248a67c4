"""Configuration of the environments: visual distractors (the Distracting Control Suite's scales) and one
vectorised environment. ``envs`` owns these; it imports nothing from ``rl_laof``.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Any

# --------------------------------------------------------------------------- distractors

#: Distracting Control Suite difficulty scale s (Stone et al. 2021). ``laom`` is the setting of LAOM's
#: headline (Nikulin et al. 2025, "scale_easy_video_hard"): camera and colour at the easy scale 0.1, every
#: training background video, dynamic, and no occluders (DCS has none).
DIFFICULTY_SCALE = {"none": 0.0, "easy": 0.1, "medium": 0.2, "hard": 0.3, "laom": 0.1}
#: DCS uses 4 / 8 / all background videos for easy / medium / hard (None = all of the split).
DIFFICULTY_NUM_VIDEOS = {"none": 0, "easy": 4, "medium": 8, "hard": None, "laom": None}
#: Moving occluders are ours (DCS has none): 1 / 2 / 3 objects; none at the LAOM level.
DIFFICULTY_NUM_OBJECTS = {"none": 0, "easy": 1, "medium": 2, "hard": 3, "laom": 0}
DISTRACTOR_KINDS = ("background", "color", "camera", "objects")
BACKGROUND_SPLITS = ("train", "eval")


@dataclass(frozen=True)
class DistractorConfig:
    """Visual distractors, on the Distracting Control Suite's scales.

    With scale s: agent colour offset up to s per RGB channel (dynamic: random-walk step std
    0.03*s); camera roll up to pi/2*s and distance factor in [1-0.5*s, 1+1.5*s], with velocity std
    0.1*s and max velocity 0.4*s per step; background videos play forward or backward one frame a
    step and bounce at the ends.
    """

    difficulty: str = "none"
    kinds: tuple[str, ...] = DISTRACTOR_KINDS
    scale: float | None = None  # overrides the difficulty's s
    dynamic: bool = True  # False: every distractor is fixed for the whole episode
    background_source: str = "procedural"  # or a folder of the user's videos / images
    background_split: str = "train"  # "eval" holds disjoint backgrounds, for generalisation
    num_videos: int | None = -1  # -1: the difficulty's DCS default; None: all of the split
    num_objects: int | None = None  # None: the difficulty's default

    def __post_init__(self) -> None:
        if self.difficulty not in DIFFICULTY_SCALE:
            raise ValueError(
                f"Unknown distractor difficulty {self.difficulty!r}; valid: {', '.join(DIFFICULTY_SCALE)}."
            )
        kinds = (self.kinds,) if isinstance(self.kinds, str) else tuple(self.kinds)
        object.__setattr__(self, "kinds", kinds)
        bad = [k for k in kinds if k not in DISTRACTOR_KINDS]
        if bad:
            raise ValueError(
                f"Unknown distractor kind(s) {bad}; valid kinds: {', '.join(DISTRACTOR_KINDS)}."
            )
        if self.scale is not None and not (0.0 <= float(self.scale) <= 1.0):
            raise ValueError(
                f"Distractor scale {self.scale} is out of range: use 0 <= scale <= 1 "
                "(DCS easy/medium/hard are 0.1/0.2/0.3)."
            )
        if self.background_split not in BACKGROUND_SPLITS:
            raise ValueError(
                f"Unknown background split {self.background_split!r}; valid: {', '.join(BACKGROUND_SPLITS)}."
            )
        if self.num_objects is not None and not (0 <= self.num_objects <= 8):
            raise ValueError(f"num_objects={self.num_objects} is out of range: use 0..8.")
        if self.num_videos is not None and self.num_videos != -1 and self.num_videos < 1:
            raise ValueError(f"num_videos={self.num_videos}: use >= 1, None for all, or -1 for the default.")
        if self.background_source != "procedural" and "background" in self.active_kinds:
            if not os.path.isdir(os.path.expanduser(self.background_source)):
                raise FileNotFoundError(
                    f"Background folder {self.background_source!r} does not exist. Point "
                    "background_source at a folder of videos/images, or use 'procedural' "
                    "(built in, no download)."
                )

    @property
    def resolved_scale(self) -> float:
        return float(self.scale) if self.scale is not None else DIFFICULTY_SCALE[self.difficulty]

    @property
    def active_kinds(self) -> tuple[str, ...]:
        """Kinds that actually do something (none when the scale is 0)."""
        if self.resolved_scale <= 0.0:
            return ()
        return self.kinds

    @property
    def resolved_num_videos(self) -> int | None:
        if self.num_videos == -1:
            default = DIFFICULTY_NUM_VIDEOS[self.difficulty]
            if default == 0:  # custom scale with difficulty "none": DCS hard's choice
                return None
            return default
        return self.num_videos

    @property
    def resolved_num_objects(self) -> int:
        if self.num_objects is not None:
            return self.num_objects
        n = DIFFICULTY_NUM_OBJECTS[self.difficulty]
        if n == 0 and self.difficulty == "none" and self.resolved_scale > 0:  # custom scale: 1 object per 0.1
            n = max(1, min(8, math.ceil(self.resolved_scale / 0.1 - 1e-9)))
        return n

    @classmethod
    def parse(cls, spec: str | dict | DistractorConfig | None) -> DistractorConfig:
        """Accept a config, None / "none", a difficulty name, or a dict of fields.

        A string may name kinds after a colon: ``"hard:background,camera"``.
        """
        if spec is None:
            return cls()
        if isinstance(spec, cls):
            return spec
        if isinstance(spec, dict):
            return cls(**spec)
        if isinstance(spec, str):
            level, _, kinds = spec.partition(":")
            if kinds:
                return cls(difficulty=level, kinds=tuple(k.strip() for k in kinds.split(",") if k.strip()))
            return cls(difficulty=level)
        raise TypeError(f"distractors must be a difficulty name, a dict or a DistractorConfig, not {spec!r}")


# --------------------------------------------------------------------------- environments

OBS_TYPES = ("pixels", "state")
BACKENDS = ("envpool", "dm_control")


def resolve_backend(backend: str, obs: str, action_repeat: int | None) -> str:
    """``backend``, with ``"auto"`` made concrete: the faster simulator for ``obs`` at ``action_repeat``. EnvPool
    renders a frame on every control step, so at an action repeat k > 1 it renders k frames per observation; the
    dm_control backend renders only the observed one. Measured here (8 envs, LAOM distractors, random actions):
    cheetah-run at repeat 4, 54-69 agent steps/s on EnvPool against 208-213 on dm_control; walker-walk at repeat 2,
    115-140 against 189-205; at repeat 1 EnvPool is the faster (229 for cheetah-run), and for state too."""
    if backend == "auto":
        return "dm_control" if obs == "pixels" and (action_repeat or 1) > 1 else "envpool"
    if backend not in BACKENDS:
        raise ValueError(f"Unknown backend {backend!r}; valid: auto, {', '.join(BACKENDS)}.")
    return backend


@dataclass(frozen=True)
class EnvConfig:
    """One vectorised environment. ``envs.make(**fields)`` builds it."""

    task: str = "cheetah-run"
    num_envs: int = 16
    obs: str = "pixels"
    distractors: DistractorConfig = field(default_factory=DistractorConfig)
    image_size: int = 64
    frame_stack: int = 3
    action_repeat: int | None = None  # None: 1; rewards are summed over the repeats
    seed: int = 0
    backend: str = "envpool"
    state_as_dict: bool = False  # state obs as a Dict space instead of one float32 vector
    num_threads: int = 0  # EnvPool worker threads; 0 = one per CPU core for state, 1 for pixels (EGL race)
    exact_flow_info: bool = True  # dm_control backend: agent mask, depth, camera & geom poses in info

    def __post_init__(self) -> None:
        object.__setattr__(self, "distractors", DistractorConfig.parse(self.distractors))
        if self.obs not in OBS_TYPES:
            raise ValueError(f"Unknown obs type {self.obs!r}; valid: {', '.join(OBS_TYPES)}.")
        if self.backend not in BACKENDS:
            raise ValueError(f"Unknown backend {self.backend!r}; valid: {', '.join(BACKENDS)}.")
        if self.num_envs < 1:
            raise ValueError(f"num_envs={self.num_envs}: need at least 1.")
        if not (16 <= self.image_size <= 512):
            raise ValueError(f"image_size={self.image_size} is out of range: use 16..512 (64 is standard).")
        if self.frame_stack < 1:
            raise ValueError(f"frame_stack={self.frame_stack}: need at least 1.")
        if self.action_repeat is not None and not (1 <= self.action_repeat <= 1000):
            raise ValueError(f"action_repeat={self.action_repeat}: use 1..1000 (None means 1).")
        if self.obs == "state" and self.distractors.active_kinds:
            raise ValueError(
                "Visual distractors only apply to pixel observations: use obs='pixels' or distractors='none'."
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
