"""The resumable training loop of one torch module, shared by the imitation and skill stages.

``fit`` trains a module on a loss function for a number of steps; a finished stage is kept as
``<run_dir>/<stage>.pt`` and loaded instead of trained again, an unfinished one resumes from its checkpoint
with every random state (so an interrupted stage ends where an uninterrupted one would).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from rl_laof.finite import check_state, check_step
from rl_laof.precision import autocast
from rl_laof.progress import progress_bar
from rl_laof.runs import atomic_path, load_torch

LOG_EVERY = 50
LR_SCHEDULES = ("constant", "cosine")


def scheduled_lr(lr: float, schedule: str, step: int, steps: int) -> float:
    """The learning rate of update ``step`` (0-based) of ``steps``: constant, or a half cosine from ``lr``
    to 0 (never below 0, never above ``lr``)."""
    if schedule == "constant":
        return lr
    if schedule == "cosine":
        return lr * 0.5 * (1.0 + math.cos(math.pi * min(step, steps) / steps))
    raise ValueError(f"Unknown learning-rate schedule {schedule!r}; valid: {', '.join(LR_SCHEDULES)}.")


def fit(stage: str, module: nn.Module, loss_fn: Callable[[np.random.Generator, torch.Generator], torch.Tensor],
        steps: int, lr: float, weight_decay: float, grad_clip: float, run_dir: Path, seed: int,
        checkpoint_every: int, writer=None, progress: bool = True, precision: str = "fp32",
        schedule: str = "constant") -> list[dict[str, float]]:
    """Train ``module`` (its parameters that require grad) on ``loss_fn(rng, generator)`` for ``steps``, its
    forward passes at ``precision`` ("fp32" or "bf16" autocast), at learning rate ``lr`` (``schedule``
    "constant") or ``lr`` decayed to 0 along a half cosine ("cosine"; a function of the step, so a resumed
    stage continues the same schedule).

    A finished stage is loaded from ``<run_dir>/<stage>.pt``; an unfinished one resumes from its checkpoint
    with every random state, so an interrupted stage ends where an uninterrupted one would. A non-finite loss
    or gradient stops it at once (``rl_laof.finite.Diverged``); no non-finite module is ever written.
    """
    done = run_dir / f"{stage}.pt"
    if done.exists():
        saved = load_torch(done)
        module.load_state_dict(saved["model"])
        module.eval()
        return saved["history"]
    params = [p for p in module.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr, weight_decay=weight_decay)
    rng, gen = np.random.default_rng(seed), torch.Generator().manual_seed(seed)
    step, history, running = 0, [], [0.0, 0]
    ckpt = run_dir / "checkpoints" / f"{stage}.pt"
    if ckpt.exists():
        st = load_torch(ckpt)
        module.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        rng.bit_generator.state = st["rng"]
        gen.set_state(st["gen"])
        step, history, running = st["step"], st["history"], st["running"]
    module.train()
    bar = progress_bar(total=steps, initial=step, desc=stage, unit="step", enabled=progress)
    while step < steps:
        with autocast(precision):
            loss = loss_fn(rng, gen).float()
        hint = f"lower the learning rate (it is {lr:g})"
        check_step(stage, step + 1, hint, loss=loss)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        check_step(stage, step + 1, hint, grad_norm=torch.nn.utils.clip_grad_norm_(params, grad_clip))
        for group in opt.param_groups:
            group["lr"] = scheduled_lr(lr, schedule, step, steps)
        opt.step()
        step += 1
        running = [running[0] + float(loss.detach()), running[1] + 1]
        bar.update(1)
        if step % LOG_EVERY == 0 or step == steps:
            history.append({"step": step, "loss": running[0] / running[1]})
            running = [0.0, 0]
            bar.set_postfix(loss=f"{history[-1]['loss']:.4f}")
            if writer is not None:
                writer.add_scalar(f"{stage}/loss", history[-1]["loss"], step)
        if step % checkpoint_every == 0 and step < steps:
            check_state(stage, module.state_dict(), step, hint)
            ckpt.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(ckpt) as tmp:
                torch.save({"step": step, "model": module.state_dict(), "optimizer": opt.state_dict(),
                            "rng": rng.bit_generator.state, "gen": gen.get_state(), "history": history,
                            "running": running}, tmp)
    bar.close()
    check_state(stage, module.state_dict(), step, f"lower the learning rate (it is {lr:g})")
    module.eval()
    with atomic_path(done) as tmp:
        torch.save({"model": module.state_dict(), "history": history}, tmp)
    ckpt.unlink(missing_ok=True)
    return history
