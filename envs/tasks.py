"""The dm_control tasks rl_laof knows, under their dm_control names (``domain-task``).

One table serves both backends: the EnvPool task id, the dm_control (domain, task) pair, and the
camera the pixel wrappers of dm_control / DCS / DrQ use. ``pixel_action_repeat`` records the
PlaNet / DrQ convention for pixel control; ``envs.make`` defaults to action repeat 1 (as the PPO
references) and takes this value only when asked.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

#: PlaNet / DrQ action repeats for pixel control (Hafner et al. 2019; every other domain 2, as DrQ-v2), also
#: the control steps per recorded frame of video datasets: at 1, one 10 ms control step barely changes a
#: 64 px frame (on cheetah-run with hard distractors even a supervised inverse-dynamics model did not beat
#: the mean action on held-out episodes), so no latent action can be measured.
_PIXEL_ACTION_REPEAT = {
    "cartpole": 8,
    "cheetah": 4,
    "reacher": 4,
    "ball_in_cup": 4,
    "walker": 2,
    "finger": 2,
    "hopper": 2,
}

# (domain, task) pairs of the dm_control benchmarking suite that EnvPool also implements.
_SUITE = [
    ("acrobot", "swingup"), ("acrobot", "swingup_sparse"),
    ("ball_in_cup", "catch"),
    ("cartpole", "balance"), ("cartpole", "balance_sparse"), ("cartpole", "swingup"),
    ("cartpole", "swingup_sparse"),
    ("cheetah", "run"),
    ("finger", "spin"), ("finger", "turn_easy"), ("finger", "turn_hard"),
    ("fish", "swim"), ("fish", "upright"),
    ("hopper", "hop"), ("hopper", "stand"),
    ("humanoid", "run"), ("humanoid", "stand"), ("humanoid", "walk"),
    ("manipulator", "bring_ball"),
    ("pendulum", "swingup"),
    ("point_mass", "easy"), ("point_mass", "hard"),
    ("quadruped", "run"), ("quadruped", "walk"), ("quadruped", "escape"), ("quadruped", "fetch"),
    ("reacher", "easy"), ("reacher", "hard"),
    ("swimmer", "swimmer6"), ("swimmer", "swimmer15"),
    ("walker", "run"), ("walker", "stand"), ("walker", "walk"),
]

EPISODE_PHYSICS_STEPS = 1000  # every DMC suite episode is 1000 control steps, ended by truncation


@dataclass(frozen=True)
class TaskSpec:
    name: str  # dm_control name, e.g. "cheetah-run"
    domain: str
    task: str
    envpool_id: str
    camera_id: int
    pixel_action_repeat: int


def _camel(s: str) -> str:
    return "".join(p[:1].upper() + p[1:] for p in s.split("_"))


TASKS: dict[str, TaskSpec] = {
    f"{d}-{t}": TaskSpec(
        name=f"{d}-{t}",
        domain=d,
        task=t,
        envpool_id=f"{_camel(d)}{_camel(t)}-v1",
        camera_id=2 if d == "quadruped" else 0,
        pixel_action_repeat=_PIXEL_ACTION_REPEAT.get(d, 2),
    )
    for d, t in _SUITE
}


def get_task(name: str) -> TaskSpec:
    """Look a task up by its dm_control name; an unknown name lists the valid ones."""
    if not isinstance(name, str) or name not in TASKS:
        hint = ""
        if isinstance(name, str):
            norm = {t.replace("-", "_").lower(): t for t in TASKS}
            close = difflib.get_close_matches(name.replace("-", "_").lower(), list(norm), n=1, cutoff=0.75)
            if close:
                hint = f" Did you mean {norm[close[0]]!r}?"
        raise ValueError(
            f"Unknown task {name!r}.{hint} Valid tasks (dm_control names, domain-task): "
            + ", ".join(sorted(TASKS))
        )
    return TASKS[name]
