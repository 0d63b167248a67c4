"""Where a latent-action-model training step spends its time, before and after issue 17's changes.

    python benchmarks/bench_lam_speed.py [--dataset DIR] [--steps N] [--method laof]

Times ``--steps`` training steps of one method on a real dataset (default: the quick cheetah-run
dataset at the LAOM distractor level, collected if missing) in two set-ups, in the same process:

  before   the pipeline as it was: flow and agent masks gathered with every window, the LAOF target
           HSV-encoded per batch in NumPy at 64x64 with the old sigma (0.03 x action repeat), a 64x64
           flow decoder and pixel FDM, a VQ latent, a plain MSE, fp32;
  after    the current defaults (``LAMConfig``): targets encoded once per split
           (``rl_laof.flow.agent_targets``), the flow decoder at ``flow_resolution``, the agent-weighted
           loss, ``precision``.

Each step is split into data (gathering the batch and its targets), forward, backward and optimiser
(with gradient clipping); the evaluation share is one held-out evaluation's time over ``eval_every``
steps. FLOPs per step are counted by ``torch.utils.flop_counter`` (convolutions and matmuls, forward
and backward), and the achieved FLOP/s is reported as a share of a dense 2048^2 matmul measured in the
same run (fp32, and bf16 for the bf16 set-up). It writes ``benchmarks/results/lam_speed.json`` (the README's and
docs/lam.md's speed rows); the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from bench_args import alone

import envs  # noqa: F401  (loads EGL before anything imports envpool)
from rl_laof import distributed as dist
from rl_laof.data.dataset import VideoDataset
from rl_laof.data.windows import WindowDataset
from rl_laof.flow.agent_targets import AgentFlowTargets
from rl_laof.flow.encoding import agent_flow, encode_flow_rgb
from rl_laof.lam.config import LAMConfig
from rl_laof.lam.evaluation import HeldOutEvaluation
from rl_laof.lam.training import Batches, flow_calibration, make_optimizer
from rl_laof.models import build_lam
from rl_laof.precision import autocast
from rl_laof.runs import atomic_path

RESULT = Path(__file__).resolve().parent / "results" / "lam_speed.json"
PHASES = ("data", "forward", "backward", "optimiser")


class LegacyBatches(Batches):
    """The pre-issue data path: flow, validity and agent masks gathered per window, target encoded per batch."""

    def __init__(self, windows: WindowDataset, batch_size: int, seed: int, sigma: float):
        super().__init__(windows, batch_size, seed, None)
        self.sigma = sigma

    def next(self, augment=None):
        batch = super().next(augment)
        f = agent_flow(batch["flow"].numpy(), batch["agent_mask"][:, 0].numpy(), batch["flow_valid"].numpy())
        batch["flow_target"] = torch.from_numpy(encode_flow_rgb(f, self.sigma))
        return batch


def legacy_config(cfg: LAMConfig, action_repeat: int) -> LAMConfig:
    """The pre-issue LAOF setting: VQ latent, sigma 0.03 x action repeat, full-resolution flow decoder and pixel
    FDM, plain MSE, fp32."""
    return dataclasses.replace(cfg, flow_sigma=0.03 * action_repeat, flow_resolution=None, fdm_resolution=None,
                               latent="vq" if cfg.base in ("lapo", "laof") else cfg.latent, flow_loss="plain",
                               precision="fp32")


def matmul_flops(dtype: torch.dtype, n: int = 2048, reps: int = 10) -> float:
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    for _ in range(3):
        a @ b
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n ** 3 * reps / (time.perf_counter() - t0)


def step_flops(model: torch.nn.Module, cfg: LAMConfig, batch: dict) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)  # one context: entering it again would reset the counts
    with counter:
        with autocast(cfg.precision):
            loss, _ = model.losses(batch)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def profile(cfg: LAMConfig, ds: VideoDataset, batches, steps: int, warmup: int = 5) -> dict:
    """Per-phase seconds per step (median over ``steps`` after ``warmup``), samples/s, FLOPs."""
    torch.manual_seed(cfg.seed)
    model = build_lam(cfg, ds.image_shape[-1], ds.action_dim).train()
    opt = make_optimizer(model, cfg)
    times = {k: [] for k in PHASES}
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        batch = batches.next()
        t1 = time.perf_counter()
        with autocast(cfg.precision):
            loss, _ = model.losses(batch)
        t2 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        t3 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip or math.inf)
        opt.step()
        t4 = time.perf_counter()
        if i >= warmup:
            for k, a, b in zip(PHASES, (t0, t1, t2, t3), (t1, t2, t3, t4), strict=True):
                times[k].append(b - a)
    per_step = {k: float(np.median(v)) for k, v in times.items()}
    total = sum(per_step.values())
    flops = step_flops(model, cfg, batches.next())
    return {"seconds_per_step": per_step, "step_seconds": total, "samples_per_s": cfg.batch_size / total,
            "gflop_per_step": flops / 1e9, "achieved_gflop_per_s": flops / total / 1e9, "model": model}


def eval_seconds(model: torch.nn.Module, cfg: LAMConfig, ds: VideoDataset, train: WindowDataset,
                 targets: AgentFlowTargets | None) -> float:
    """One periodic held-out evaluation, as ``train_lam`` runs it (losses on eval windows and a linear probe)."""
    if targets is not None:
        targets = {"train": targets, "eval": AgentFlowTargets(ds, "eval", cfg.flow_sigma, cfg.flow_source,
                                                              cfg.flow_resolution)}
    held_out = HeldOutEvaluation(ds, cfg, train, targets or {})
    t0 = time.perf_counter()
    held_out(model)
    return time.perf_counter() - t0


def measure(dataset, method: str = "laof", steps: int = 20, base: LAMConfig | None = None) -> dict:
    """Before/after profile of ``method`` on ``dataset`` (see the module docstring)."""
    dist.init_from_env()
    ds = VideoDataset(dataset)
    action_repeat = int(ds.config.get("action_repeat", 1))
    base = base or LAMConfig(method=method)
    out: dict = {"method": method, "dataset": str(ds.path), "batch_size": base.batch_size,
                 "threads": torch.get_num_threads(),
                 "matmul_gflop_per_s": {"fp32": matmul_flops(torch.float32) / 1e9,
                                        "bf16": matmul_flops(torch.bfloat16) / 1e9}}
    for name in ("before", "after"):
        cfg = legacy_config(base, action_repeat) if name == "before" else base
        cfg, _ = flow_calibration(cfg, ds)
        wcfg = cfg.window_config()
        targets = (AgentFlowTargets(ds, "train", cfg.flow_sigma, cfg.flow_source, cfg.flow_resolution)
                   if cfg.flow_weight > 0 else None)
        if name == "before":
            train = WindowDataset(ds, "train", dataclasses.replace(wcfg, with_flow=True, with_masks=True),
                                  seed=cfg.seed)
            batches = LegacyBatches(train, cfg.batch_size, cfg.seed + 1, cfg.flow_sigma)
        else:
            train = WindowDataset(ds, "train", wcfg, seed=cfg.seed)
            batches = Batches(train, cfg.batch_size, cfg.seed + 1, targets)
        r = profile(cfg, ds, batches, steps)
        ev = eval_seconds(r.pop("model"), cfg, ds, train, targets)
        r["eval_seconds_per_step"] = ev / cfg.eval_every
        peak = out["matmul_gflop_per_s"]["bf16" if cfg.precision == "bf16" else "fp32"]
        r["share_of_matmul_peak"] = r["achieved_gflop_per_s"] / peak
        r["config"] = {k: getattr(cfg, k) for k in ("flow_resolution", "flow_loss", "flow_sigma", "precision",
                                                    "width", "fdm", "fdm_resolution", "latent", "batch_size")}
        out[name] = r
    out["speedup"] = out["after"]["samples_per_s"] / out["before"]["samples_per_s"]
    return out


def table(r: dict) -> str:
    """The README's before/after table (milliseconds per step)."""
    rows = ["| phase | before (ms/step) | after (ms/step) |", "|---|---|---|"]
    for k in PHASES:
        rows.append(f"| {k} | {1000 * r['before']['seconds_per_step'][k]:.1f} | "
                    f"{1000 * r['after']['seconds_per_step'][k]:.1f} |")
    before, after = r["before"]["eval_seconds_per_step"], r["after"]["eval_seconds_per_step"]
    rows.append(f"| evaluation (per step, every {LAMConfig().eval_every}) | {1000 * before:.1f} | {1000 * after:.1f} |")
    for key, label, fmt_ in (("samples_per_s", "samples/s", "{:.0f}"), ("gflop_per_step", "GFLOP per step", "{:.1f}"),
                             ("achieved_gflop_per_s", "achieved GFLOP/s", "{:.0f}"),
                             ("share_of_matmul_peak", "share of dense matmul", "{:.0%}")):
        rows.append(f"| {label} | {fmt_.format(r['before'][key])} | {fmt_.format(r['after'][key])} |")
    return "\n".join(rows)


def main() -> dict:
    from rl_laof.pipeline import default_dataset

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default=None, help="default: the quick cheetah-run dataset at the LAOM level")
    p.add_argument("--method", default="laof")
    p.add_argument("--steps", type=int, default=20)
    args = p.parse_args()
    dataset = args.dataset or default_dataset("cheetah-run", "quick", flow=True, distractors="laom")
    r = measure(dataset, args.method, args.steps)
    with atomic_path(RESULT) as tmp:  # an interrupted run leaves the committed file whole
        Path(tmp).write_text(json.dumps(r, indent=1) + "\n")
    print(table(r), file=sys.stderr)
    print(json.dumps(r))
    return r


if __name__ == "__main__":
    alone(main)
