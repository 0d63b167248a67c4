"""Vectorised dm_control environments rendered to pixels, with visual distractors.

    import envs
    venv = envs.make("cheetah-run", num_envs=16, distractors="hard")   # an SB3 VecEnv

``backend="envpool"`` is the fast path (C++ threads, native rendering); ``backend="dm_control"``
renders the same scene in Python and adds, per frame, everything exact optical flow needs.
"""

from __future__ import annotations

from typing import Any

from stable_baselines3.common.vec_env import VecMonitor

from envs.config import DistractorConfig, EnvConfig
from envs.gl import GLUnavailableError, ensure_gl
from envs.tasks import TASKS, TaskSpec, get_task

try:  # load EGL before anything can import envpool (see envs.gl); errors surface in make()
    ensure_gl()
except GLUnavailableError:
    pass

__all__ = ["make", "make_from_config", "TASKS", "TaskSpec", "get_task", "GLUnavailableError", "ensure_gl",
           "EnvConfig", "DistractorConfig"]


def make_from_config(cfg: EnvConfig, monitor: bool = True):
    """Build the VecEnv an :class:`EnvConfig` describes."""
    from envs.simulators import DMControlSimulator, EnvpoolSimulator  # deferred: after ensure_gl() below (envs.gl)
    from envs.vec_env import DistractedVecEnv  # deferred: after ensure_gl() below (envs.gl)

    task = get_task(cfg.task)
    pixels = cfg.obs == "pixels"
    repeat = cfg.action_repeat or 1
    common = dict(task=task, num_envs=cfg.num_envs, pixels=pixels, size=cfg.image_size,
                  action_repeat=repeat, seed=cfg.seed)
    if cfg.backend == "envpool":
        sim = EnvpoolSimulator(**common, num_threads=cfg.num_threads)
    else:
        sim = DMControlSimulator(**common, extras=cfg.exact_flow_info)
    venv = DistractedVecEnv(sim, cfg)
    return VecMonitor(venv) if monitor else venv


def make(task: str, num_envs: int = 16, obs: str = "pixels", distractors: Any = None, image_size: int = 64,
         frame_stack: int = 3, action_repeat: int | None = None, seed: int = 0, backend: str = "envpool",
         monitor: bool = True, **kwargs: Any):
    """A stable-baselines3 ``VecEnv`` for a dm_control task (``"cheetah-run"``, ``"walker-walk"``...).

    ``distractors``: None / "none", "easy" / "medium" / "hard" (DCS scales), "laom" (LAOM's headline
    setting: camera and colour 0.1, every training video, no occluders), "hard:background,camera"
    to pick kinds, or a :class:`DistractorConfig`. ``action_repeat``: the same action is applied that many
    control steps and the rewards summed (DrQ semantics; ``get_task(t).pixel_action_repeat`` is the
    PlaNet choice); None = 1, as in the PPO references. Other keyword arguments are
    :class:`EnvConfig` fields (``state_as_dict``, ``num_threads``, ``exact_flow_info``).
    ``monitor`` wraps the env in SB3's VecMonitor (episode returns in ``info["episode"]``).
    """
    cfg = EnvConfig(task=task, num_envs=num_envs, obs=obs, distractors=DistractorConfig.parse(distractors),
                    image_size=image_size, frame_stack=frame_stack, action_repeat=action_repeat, seed=seed,
                    backend=backend, **kwargs)
    return make_from_config(cfg, monitor=monitor)
