"""The two physics + rendering backends behind :class:`envs.vec_env.DistractedVecEnv`.

A simulator steps ``num_envs`` copies of one task and returns raw rendered frames (sky in the
key colour), state observations, and, for the dm_control backend, everything exact optical flow
needs. It knows nothing of distractors, frame stacks or SB3's conventions: the VecEnv adds those,
once, for both backends.
"""

from __future__ import annotations

import contextlib
import functools
import os
from dataclasses import dataclass, field
from unittest import mock

import gymnasium as gym
import numpy as np

from envs.assets import model_and_assets, render_asset_root
from envs.gl import ensure_gl
from envs.tasks import EPISODE_PHYSICS_STEPS, TaskSpec


@dataclass
class Batch:
    """Raw output of a simulator for the envs ``ids``, in that order."""

    ids: np.ndarray
    frames: np.ndarray | None = None  # (n, 3, H, W) uint8, sky = key colour
    state: dict[str, np.ndarray] | None = None  # key -> (n, ...) float64
    extras: list[dict] | None = None  # per env: agent mask, depth, camera / geom poses, ...
    info: dict = field(default_factory=dict)


def state_space_from(shapes: dict[str, tuple]) -> gym.spaces.Dict:
    return gym.spaces.Dict(
        {k: gym.spaces.Box(-np.inf, np.inf, shape=s, dtype=np.float64) for k, s in shapes.items()}
    )


def episode_steps(action_repeat: int) -> int:
    """Agent steps per episode: DMC episodes are 1000 control steps, whatever the repeat."""
    return max(1, EPISODE_PHYSICS_STEPS // action_repeat)


class EnvpoolSimulator:
    """EnvPool's C++ vector env; renders natively (``from_pixels``) with our render assets."""

    def __init__(self, task: TaskSpec, num_envs: int, pixels: bool, size: int, action_repeat: int,
                 seed: int, num_threads: int = 0, optimised_assets: bool = True):
        ensure_gl()  # before importing envpool, or its first render aborts
        import envpool  # deferred: after ensure_gl() has loaded EGL (envs.gl)

        self.task, self.num_envs, self.pixels, self.size = task, num_envs, pixels, size
        self.action_repeat = action_repeat
        self.max_steps = episode_steps(action_repeat)
        # EnvPool's DMC ``frame_skip`` is dm_control's ``n_sub_steps`` (physics steps per control step:
        # cheetah 1, walker 10, hopper 4...): its default is the task's own, and overriding it changes
        # the MDP. Action repeat (DrQ, PlaNet) repeats *control* steps and sums their rewards, so we
        # step the pool ``action_repeat`` times and sum, as the dm_control backend does.
        # Pixel pools default to one worker thread: EnvPool <= 1.2.5 keeps one EGL context per thread, and a
        # renderer created on one worker then stepped on another races on it and segfaults now and then
        # (sail-sg/envpool#405, fixed upstream by #406 after 1.2.5). Rendering dominates a pixel step and
        # does not scale with threads here anyway (bench: 60-68 agent steps/s with 1 or 2 threads).
        default_threads = 1 if pixels else min(num_envs, os.cpu_count() or 1)
        self._kwargs = dict(
            num_envs=num_envs,
            batch_size=num_envs,
            num_threads=num_threads or default_threads,
            max_episode_steps=self.max_steps * action_repeat,
        )
        if pixels:
            self._kwargs.update(from_pixels=True, render_width=size, render_height=size,
                                render_camera_id=task.camera_id)
            if optimised_assets:
                self._kwargs["base_path"] = str(render_asset_root())
        self._envpool = envpool
        self._make(seed)
        state_env = envpool.make_spec(task.envpool_id)
        # EnvPool returns the union of its domain's observation keys (finger-spin gets finger-turn's
        # target, quadruped-run the ball...); keep exactly dm_control's keys, in dm_control's order
        spaces = state_env.observation_space.spaces
        self.state_shapes = {k: tuple(spaces[k].shape) for k in dm_control_state_keys(task.domain, task.task)}
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=self.env.action_space.shape, dtype=np.float32)

    def _make(self, seed: int) -> None:
        self.env = self._envpool.make_gymnasium(self.task.envpool_id, seed=int(seed), **self._kwargs)

    def reseed(self, seed: int) -> None:
        self.env.close()
        self._make(seed)

    def _batch(self, obs, info) -> Batch:
        ids = np.asarray(info["env_id"])
        order = np.argsort(ids, kind="stable")
        if self.pixels:
            return Batch(ids=ids[order], frames=obs[order])
        return Batch(ids=ids[order], state={k: np.asarray(obs[k])[order] for k in self.state_shapes})

    def reset(self, ids: np.ndarray) -> Batch:
        ids = np.asarray(ids, np.int32)
        if len(ids) == self.num_envs:
            obs, info = self.env.reset()
        else:
            obs, info = self.env.reset(ids)
        batch = self._batch(obs, info)
        assert np.array_equal(batch.ids, np.sort(ids)), "EnvPool reset returned other envs"
        return batch

    def step(self, actions: np.ndarray):
        actions = np.asarray(actions, np.float64)
        total = np.zeros(self.num_envs)
        ended = np.zeros(self.num_envs, bool)
        term_all = np.zeros(self.num_envs, bool)
        trunc_all = np.zeros(self.num_envs, bool)
        batch = None
        for _ in range(self.action_repeat):
            obs, rew, term, trunc, info = self.env.step(actions)
            order = np.argsort(np.asarray(info["env_id"]), kind="stable")
            sub = self._batch(obs, info)
            rew, term, trunc = rew[order], term[order], trunc[order]
            live = ~ended
            total[live] += rew[live]
            term_all[live] = term[live]
            trunc_all[live] = trunc[live]
            if batch is None:
                batch = sub
            else:  # keep each env's observation from the substep where it ended
                self._put_live(batch, sub, live)
            ended |= term | trunc
            if ended.all():
                break
        return batch, total, term_all, trunc_all

    def _put_live(self, batch: Batch, sub: Batch, live: np.ndarray) -> None:
        if batch.frames is not None:
            batch.frames[live] = sub.frames[live]
        else:
            for k in batch.state:
                batch.state[k][live] = sub.state[k][live]

    def close(self) -> None:
        self.env.close()


@contextlib.contextmanager
def _quiet_absl():
    from absl import logging as absl_logging  # deferred: dm_control's, loaded with it (envs.gl)

    level = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.ERROR)
    try:
        yield
    finally:
        absl_logging.set_verbosity(level)


@functools.cache
def dm_control_state_keys(domain: str, task: str) -> tuple[str, ...]:
    """The task's state observation keys, in dm_control's order (the reference for both backends)."""
    from dm_control import suite  # deferred: after MUJOCO_GL is set (envs.gl)

    with _quiet_absl():
        env = suite.load(domain, task)
    keys = tuple(env.observation_spec())
    env.close()
    return keys


def agent_geoms(model) -> np.ndarray:
    """Boolean per geom: part of the agent, i.e. of a kinematic tree that holds an actuator.

    This keeps the robot's links (cheetah's torso too, whose own joints are unactuated slides)
    and leaves out the world (floor, walls), static targets (reacher) and passive objects the
    agent acts on (finger's spinner, ball_in_cup's ball)."""
    import mujoco  # deferred: after MUJOCO_GL is set (envs.gl)

    trees: set[int] = set()
    for a in range(model.nu):
        kind, target = int(model.actuator_trntype[a]), int(model.actuator_trnid[a, 0])
        if kind in (mujoco.mjtTrn.mjTRN_JOINT, mujoco.mjtTrn.mjTRN_JOINTINPARENT):
            trees.add(int(model.body_rootid[model.jnt_bodyid[target]]))
        elif kind == mujoco.mjtTrn.mjTRN_TENDON:
            adr, num = model.tendon_adr[target], model.tendon_num[target]
            for w in range(adr, adr + num):
                if model.wrap_type[w] == mujoco.mjtWrap.mjWRAP_JOINT:
                    trees.add(int(model.body_rootid[model.jnt_bodyid[model.wrap_objid[w]]]))
        elif kind == mujoco.mjtTrn.mjTRN_SITE:
            trees.add(int(model.body_rootid[model.site_bodyid[target]]))
        elif kind == mujoco.mjtTrn.mjTRN_BODY:
            trees.add(int(model.body_rootid[target]))
    trees.discard(0)
    roots = model.body_rootid[model.geom_bodyid]
    return np.isin(roots, sorted(trees)) & (model.geom_bodyid != 0)


class DMControlSimulator:
    """dm_control suite tasks in-process, rendering the same XML with the same visual settings.

    With ``extras`` each frame also comes with the agent mask (segmentation of the agent's own
    geoms), depth, camera pose and intrinsics, and every geom's pose: what exact flow needs."""

    def __init__(self, task: TaskSpec, num_envs: int, pixels: bool, size: int, action_repeat: int,
                 seed: int, extras: bool = True, optimised_assets: bool = True):
        ensure_gl()
        from dm_control import suite  # deferred: after MUJOCO_GL is set (envs.gl)

        self.task, self.num_envs, self.pixels, self.size = task, num_envs, pixels, size
        self.action_repeat = action_repeat
        self.max_steps = episode_steps(action_repeat)
        self.want_extras = extras and pixels
        self._suite = suite
        self._optimised = optimised_assets
        self._make(seed)
        spec = self.envs[0].observation_spec()
        self.state_shapes = {k: tuple(v.shape) for k, v in spec.items()}
        a = self.envs[0].action_spec()
        if not (np.allclose(a.minimum, -1) and np.allclose(a.maximum, 1)):
            raise NotImplementedError(f"{task.name}: action bounds other than [-1, 1] are not supported")
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=a.shape, dtype=np.float32)
        self._agent = agent_geoms(self.envs[0].physics.model)

    def _make(self, seed: int) -> None:
        module = getattr(self._suite, self.task.domain)
        xml, assets = model_and_assets(self.task.domain, self._optimised)
        self.envs = []
        # the suite's own XML is swapped for ours; absl warns about an XML attribute on each load
        with mock.patch.object(module, "get_model_and_assets", lambda: (xml, assets)), _quiet_absl():
            for i in range(self.num_envs):
                self.envs.append(self._suite.load(
                    self.task.domain, self.task.task,
                    task_kwargs={"random": int(seed) + i, "time_limit": float("inf")},
                ))
        self.steps = np.zeros(self.num_envs, np.int64)
        self._cameras: list = [None] * self.num_envs

    def reseed(self, seed: int) -> None:
        self.close()
        self._make(seed)

    def _camera(self, i: int):
        """One dm_control Camera per env, kept: ``physics.render`` builds a new one (and its MjvScene)
        on every call, which cost a third of a frame with three passes per frame."""
        from dm_control.mujoco.engine import Camera  # deferred: after MUJOCO_GL is set (envs.gl)

        if self._cameras[i] is None:
            self._cameras[i] = Camera(self.envs[i].physics, self.size, self.size, self.task.camera_id)
        return self._cameras[i]

    def _render(self, i: int):
        physics = self.envs[i].physics
        cam = self.task.camera_id
        camera = self._camera(i)
        rgb = camera.render().copy()  # a view of the camera's buffer, which the next pass overwrites
        if not self.want_extras:
            return rgb, None
        depth = camera.render(depth=True).copy()
        seg = camera.render(segmentation=True)
        geom = np.where(seg[..., 1] == 5, seg[..., 0], -1)  # mjOBJ_GEOM == 5
        mask = self._agent[np.maximum(geom, 0)] & (geom >= 0)
        d = physics.data
        extras = {
            "agent_mask_raw": mask.astype(np.uint8),
            "geom_id": geom.astype(np.int16),
            "depth": depth.astype(np.float32),
            "camera_pos": d.cam_xpos[cam].copy(),
            "camera_mat": d.cam_xmat[cam].reshape(3, 3).copy(),
            "camera_fovy": float(physics.model.cam_fovy[cam]),
            "geom_xpos": d.geom_xpos.copy(),
            "geom_xmat": d.geom_xmat.reshape(-1, 3, 3).copy(),
            "agent_geoms": self._agent,
        }
        return rgb, extras

    def _collect(self, ids, observations) -> Batch:
        batch = Batch(ids=np.asarray(ids))
        batch.state = {k: np.stack([np.asarray(o[k], np.float64) for o in observations])
                       for k in self.state_shapes}
        if self.pixels:
            frames, extras = zip(*(self._render(i) for i in ids), strict=False)
            batch.frames = np.ascontiguousarray(np.stack(frames).transpose(0, 3, 1, 2))
            if self.want_extras:
                for e, i, o in zip(extras, ids, observations, strict=False):
                    e["state"] = np.concatenate([np.ravel(o[k]) for k in self.state_shapes]).astype(np.float32)
                    e["physics_state"] = self.envs[i].physics.get_state().copy()
                batch.extras = list(extras)
        return batch

    def reset(self, ids: np.ndarray) -> Batch:
        ids = np.asarray(ids)
        obs = []
        for i in ids:
            obs.append(self.envs[i].reset().observation)
            self.steps[i] = 0
        return self._collect(ids, obs)

    def step(self, actions: np.ndarray):
        n = self.num_envs
        rew = np.zeros(n, np.float64)
        term = np.zeros(n, bool)
        obs = []
        for i in range(n):
            for _ in range(self.action_repeat):
                ts = self.envs[i].step(actions[i])
                rew[i] += ts.reward or 0.0
                if ts.discount == 0.0:  # a real termination (time limits are ours)
                    term[i] = True
                    break
            obs.append(ts.observation)
            self.steps[i] += 1
        trunc = (self.steps >= self.max_steps) & ~term
        return self._collect(np.arange(n), obs), rew, term, trunc

    def close(self) -> None:
        self._cameras = [None] * self.num_envs  # scenes go before the physics they point at
        for e in getattr(self, "envs", []):
            e.close()
