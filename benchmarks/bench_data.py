"""Dataset throughput: collection, the window loader, and the loader against what training consumes.

    python benchmarks/bench_data.py [--quick]

Measured one after the other in one run, on this machine:

  collect_fps              frames per second written by ``rl_laof.collect`` (dm_control backend, hard
                           distractors, exact-flow inputs, 2 worker processes, random policy: expert
                           inference is ~0.1 ms a step against ~15 ms of rendering), end to end
                           including process start-up, HDF5 writing and the final merge;
  plain_render_fps         its peer: dm_control as a user runs it, one process, ``physics.render`` of
                           RGB only (default assets, no extras, no distractors, no writing)
                           -> ``collect_vs_plain_render`` (2 workers, 3 render passes a frame);
  loader_samples_per_s     windows per second from ``WindowDataset.batches`` (3 stacked frames,
                           LAOM offsets k <= 10, masks; batch 256), one process;
  lam_train_samples_per_s  samples per second one training step of a quick-sized latent action model
                           consumes (IDM + FDM conv nets at 64x64, batch 64, Adam, CPU, all cores):
                           ``loader_vs_train_ratio`` = loader / train (target >= 3: training never
                           waits for data even with the loader on the same cores).

The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_args import alone, write_result

import envs  # noqa: F401  (loads EGL first)
from rl_laof.data import VideoDataset, WindowDataset
from rl_laof.data.collection import collect
from rl_laof.data.config import CollectConfig, WindowConfig

TASK, SIZE = "cheetah-run", 64


def bench_collect(out: Path, episodes: int, steps: int) -> tuple[float, Path]:
    cfg = CollectConfig(task=TASK, expert="random", episodes=episodes, eval_episodes=0, heldout_bg_episodes=0,
                        episode_steps=steps, image_size=SIZE, workers=2)
    t0 = time.perf_counter()
    path = collect(cfg, out, progress=False)
    dt = time.perf_counter() - t0
    return episodes * (steps + 1) / dt, path


def bench_plain_render(frames: int) -> float:
    """The peer: dm_control as a user would run it, one process, ``physics.render`` of RGB only."""
    from dm_control import suite

    env = suite.load("cheetah", "run", task_kwargs={"random": 0})
    env.reset()
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for _ in range(frames):
        env.step(rng.uniform(-1, 1, 6))
        env.physics.render(SIZE, SIZE, camera_id=0)
    fps = frames / (time.perf_counter() - t0)
    env.close()
    return fps


def bench_loader(path: Path, batches: int, batch_size: int = 256) -> float:
    ds = WindowDataset(VideoDataset(path), "train", WindowConfig(frame_stack=3, max_offset=10, label_split="all"))
    it = ds.batches(batch_size, seed=0)
    next(it)
    t0 = time.perf_counter()
    for _ in range(batches):
        b = next(it)
    assert b["obs"].shape == (batch_size, 9, SIZE, SIZE)
    return batches * batch_size / (time.perf_counter() - t0)


def quick_lam(action_dim: int = 128):
    """A quick-sized LAPO-style model: IDM(o_t stack, o_{t+1}) -> z; FDM(o_t stack, z) -> o_{t+1}.

    A stand-in with the shapes and widths of the quick LAM preset, until the real models exist."""
    import torch
    from torch import nn

    def enc(cin):
        return nn.Sequential(nn.Conv2d(cin, 32, 4, 2, 1), nn.GELU(), nn.Conv2d(32, 64, 4, 2, 1), nn.GELU(),
                             nn.Conv2d(64, 128, 4, 2, 1), nn.GELU(), nn.Conv2d(128, 128, 4, 2, 1), nn.GELU(),
                             nn.Flatten())

    class LAM(nn.Module):
        def __init__(self):
            super().__init__()
            self.idm = nn.Sequential(enc(12), nn.Linear(128 * 16, action_dim))
            self.fdm_enc = enc(9)
            self.fdm_mid = nn.Linear(128 * 16 + action_dim, 128 * 16)
            self.fdm_dec = nn.Sequential(nn.ConvTranspose2d(128, 64, 4, 2, 1), nn.GELU(),
                                         nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.GELU(),
                                         nn.ConvTranspose2d(32, 32, 4, 2, 1), nn.GELU(),
                                         nn.ConvTranspose2d(32, 3, 4, 2, 1))

        def forward(self, obs, nxt):
            z = self.idm(torch.cat([obs, nxt[:, -3:]], 1))
            h = self.fdm_mid(torch.cat([self.fdm_enc(obs), z], 1)).view(-1, 128, 4, 4)
            return self.fdm_dec(h)

    return LAM()


def bench_train(steps: int, batch_size: int = 64) -> float:
    import torch

    torch.manual_seed(0)
    model = quick_lam()
    opt = torch.optim.Adam(model.parameters(), 3e-4)
    obs = torch.randint(0, 255, (batch_size, 9, SIZE, SIZE), dtype=torch.uint8)
    nxt = torch.randint(0, 255, (batch_size, 9, SIZE, SIZE), dtype=torch.uint8)

    def step():
        o, n = obs.float() / 255 - 0.5, nxt.float() / 255 - 0.5
        loss = ((model(o, n) - n[:, -3:]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch_size / (time.perf_counter() - t0)


def main() -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes (about a minute)")
    args = p.parse_args()
    episodes, steps = (4, 100) if args.quick else (8, 500)
    with tempfile.TemporaryDirectory() as tmp:
        collect_fps, path = bench_collect(Path(tmp) / "ds", episodes, steps)
        plain_fps = bench_plain_render(200 if args.quick else 1000)
        loader = bench_loader(path, 50 if args.quick else 300)
    train = bench_train(10 if args.quick else 40)
    result = dict(
        task=TASK, image_size=SIZE, quick=args.quick, cpu_cores=os.cpu_count(),
        collect_episodes=episodes, collect_steps=steps,
        collect_fps=round(collect_fps, 1), plain_render_fps=round(plain_fps, 1),
        collect_vs_plain_render=round(collect_fps / plain_fps, 2),
        loader_samples_per_s=round(loader), lam_train_samples_per_s=round(train, 1),
        loader_vs_train_ratio=round(loader / train, 1),
    )
    if not args.quick:
        write_result("data", result)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    alone(main)
