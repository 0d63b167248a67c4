"""Pixel-environment throughput, ours against the peers a user would otherwise use.

    python benchmarks/bench_envs.py [--quick]

All four at the same size (64x64 RGB, 3 stacked frames, 16 envs, random actions, action repeat 1),
measured one after the other in one run:

  (a) ours: envs.make(backend="envpool") with hard distractors;
  (b) ours without distractors (the kernel still composites the clean sky);
  (c) plain EnvPool pixels with its default assets (shadows, multisampling), camera 0, its own
      frame stack;
  (d) a gymnasium AsyncVectorEnv of dm_control pixel envs (one subprocess each, default assets)
      with the same hard distractors: the sky mask comes from a segmentation render (DCS swaps the
      skybox texture instead: a comparable extra pass), then the same distractor kernel, one env
      at a time, and gymnasium's FrameStackObservation.

fps = environment frames delivered per second of wall time (steps x envs / s). The last line is
one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
from bench_args import alone, write_result

import envs  # loads EGL before envpool is imported

SIZE, STACK, NUM_ENVS, TASK = 64, 3, 16, "cheetah-run"


def measure(step, reset, seconds: float, warmup: int, num_envs: int) -> float:
    reset()
    for _ in range(warmup):
        step()
    n, start = 0, time.perf_counter()
    while True:
        step()
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and n >= 5:
            return n * num_envs / elapsed


def bench_ours(distractors: str, seconds: float) -> float:
    venv = envs.make(TASK, num_envs=NUM_ENVS, distractors=distractors, image_size=SIZE, frame_stack=STACK,
                     seed=0, monitor=False)
    rng = np.random.default_rng(0)
    shape = (NUM_ENVS, *venv.action_space.shape)
    fps = measure(lambda: venv.step(rng.uniform(-1, 1, shape)), venv.reset, seconds, 10, NUM_ENVS)
    venv.close()
    return fps


def bench_envpool_default(seconds: float) -> float:
    import envpool

    task = envs.get_task(TASK)
    env = envpool.make_gymnasium(task.envpool_id, num_envs=NUM_ENVS, batch_size=NUM_ENVS,
                                 num_threads=min(NUM_ENVS, os.cpu_count() or 1), from_pixels=True,
                                 render_width=SIZE, render_height=SIZE, render_camera_id=task.camera_id,
                                 frame_stack=STACK, seed=0)
    rng = np.random.default_rng(0)
    shape = (NUM_ENVS, *env.action_space.shape)
    fps = measure(lambda: env.step(rng.uniform(-1, 1, shape)), env.reset, seconds, 3, NUM_ENVS)
    env.close()
    return fps


class DMCPixelEnv:
    """What a user builds without us: dm_control suite + pixels + DCS-style distractors (gymnasium)."""

    def __new__(cls, seed: int, distractors: str):
        import gymnasium as gym

        class _Env(gym.Env):
            def __init__(self):
                envs.ensure_gl()
                from dm_control import suite

                from envs.assets import KEY_COLOR
                from envs.config import DistractorConfig
                from envs.distractors import Distractors

                task = envs.get_task(TASK)
                self.env = suite.load(task.domain, task.task, task_kwargs={"random": seed})
                self.cam = task.camera_id
                self.key = np.array(KEY_COLOR, np.uint8)
                self.dis = Distractors(DistractorConfig.parse(distractors), 1, SIZE, seed)
                a = self.env.action_spec()
                self.action_space = gym.spaces.Box(a.minimum.astype(np.float32), a.maximum.astype(np.float32))
                self.observation_space = gym.spaces.Box(0, 255, (3, SIZE, SIZE), np.uint8)

            def _obs(self):
                p = self.env.physics
                rgb = p.render(SIZE, SIZE, camera_id=self.cam)
                seg = p.render(SIZE, SIZE, camera_id=self.cam, segmentation=True)
                rgb[seg[..., 0] < 0] = self.key  # sky pixels
                out, _ = self.dis.apply(np.ascontiguousarray(rgb.transpose(2, 0, 1)[None]), [0])
                return out[0]

            def reset(self, seed=None, options=None):
                super().reset(seed=seed)
                self.env.reset()
                self.dis.reset([0])
                return self._obs(), {}

            def step(self, action):
                ts = self.env.step(action)
                self.dis.step()
                return self._obs(), float(ts.reward or 0.0), False, ts.last(), {}

        return _Env()


def bench_dmc_vector(distractors: str, seconds: float) -> float:
    import gymnasium as gym

    def thunk(i):
        return lambda: gym.wrappers.FrameStackObservation(DMCPixelEnv(i, distractors), STACK)

    # "spawn": forking a process that already holds EnvPool's threads and GL contexts deadlocks
    venv = gym.vector.AsyncVectorEnv([thunk(i) for i in range(NUM_ENVS)], shared_memory=True, context="spawn")
    rng = np.random.default_rng(0)
    shape = (NUM_ENVS, *venv.single_action_space.shape)
    fps = measure(lambda: venv.step(rng.uniform(-1, 1, shape).astype(np.float32)), venv.reset,
                  seconds, 2, NUM_ENVS)
    venv.close()
    return fps


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="shorter measurements (about 1 minute in all)")
    p.add_argument("--seconds", type=float, default=None, help="seconds measured per configuration")
    args = p.parse_args(argv)
    seconds = args.seconds or (4.0 if args.quick else 20.0)

    res = {}
    res["fps_ours"] = bench_ours("hard", seconds)
    print(f"(a) ours, hard distractors:     {res['fps_ours']:8.1f} fps", flush=True)
    res["fps_ours_clean"] = bench_ours("none", seconds)
    print(f"(b) ours, no distractors:       {res['fps_ours_clean']:8.1f} fps", flush=True)
    res["fps_envpool_default"] = bench_envpool_default(seconds)
    print(f"(c) envpool, default assets:    {res['fps_envpool_default']:8.1f} fps", flush=True)
    res["fps_dmc_vector"] = bench_dmc_vector("hard", seconds)
    print(f"(d) dm_control AsyncVectorEnv:  {res['fps_dmc_vector']:8.1f} fps", flush=True)
    res["ratio_vs_envpool_default"] = res["fps_ours"] / res["fps_envpool_default"]
    res["distractor_cost"] = res["fps_ours"] / res["fps_ours_clean"]
    res["ratio_vs_dmc_vector"] = res["fps_ours"] / res["fps_dmc_vector"]
    res["targets_met"] = {
        "ratio_vs_envpool_default>=5": res["ratio_vs_envpool_default"] >= 5,
        "distractor_cost>=0.85": res["distractor_cost"] >= 0.85,
        "ratio_vs_dmc_vector>=3": res["ratio_vs_dmc_vector"] >= 3,
    }
    res.update(task=TASK, size=SIZE, frame_stack=STACK, num_envs=NUM_ENVS, seconds_each=seconds,
               cpus=os.cpu_count())
    res = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in res.items()}
    if not args.quick:
        write_result("envs", res)
    print(json.dumps(res))
    return res


if __name__ == "__main__":
    alone(main)
