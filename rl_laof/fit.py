"""One torch module trained on one loss: the stages of the imitation and skill runs, built on the shared
training loop (``rl_laof.loop``).

``fit`` trains a module on a loss function for a number of steps; a finished stage is kept as
``<run_dir>/<stage>.pt`` and loaded instead of trained again, an unfinished one resumes from its checkpoint
(``<run_dir>/checkpoints/<stage>.pt``) with every random state (so an interrupted stage ends where an
uninterrupted one would).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from rl_laof.loop import Checkpoints, Metrics, TrainingLoop, trainable
from rl_laof.precision import autocast
from rl_laof.runs import load_torch, save_torch

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


class ModuleFit(TrainingLoop):
    """The loop of :func:`fit`: AdamW on the module's trainable parameters, ``loss_fn(rng, generator)`` with the
    stage's own seeded numpy and torch generators (kept in its checkpoints), and a history of the training loss
    averaged over every :data:`LOG_EVERY` steps."""

    checkpoint_at_end = False  # the finished module is written to <run_dir>/<stage>.pt instead

    def __init__(self, stage: str, module: nn.Module,
                 loss_fn: Callable[[np.random.Generator, torch.Generator], torch.Tensor], steps: int, lr: float,
                 weight_decay: float, grad_clip: float, run_dir: Path, seed: int, checkpoint_every: int, writer=None,
                 progress: bool = True, precision: str = "fp32", schedule: str = "constant"):
        super().__init__(stage, steps, Checkpoints(run_dir / "checkpoints", name=stage), checkpoint_every,
                         hint=f"lower the learning rate (it is {lr:g})", progress=progress)
        self.module, self.loss_fn, self.writer = module, loss_fn, writer
        self.lr, self.schedule, self.precision, self.grad_clip = lr, schedule, precision, grad_clip
        self.parameters = trainable(module)
        self.optimizer = torch.optim.AdamW(self.parameters, lr, weight_decay=weight_decay)
        self.rng, self.gen = np.random.default_rng(seed), torch.Generator().manual_seed(seed)
        self.running = [0.0, 0]  # the loss summed since the last history entry, and over how many steps

    def learning_rate(self, step: int) -> float:
        return scheduled_lr(self.lr, self.schedule, step, self.steps)

    def loss(self) -> tuple[torch.Tensor, Metrics]:
        with autocast(self.precision):
            loss = self.loss_fn(self.rng, self.gen).float()
        return loss, {}

    def start(self) -> None:
        self.module.train()

    def log(self, metrics: Metrics) -> None:
        self.running = [self.running[0] + metrics["loss"], self.running[1] + 1]
        if self.step % LOG_EVERY == 0 or self.step == self.steps:
            self.history.append({"step": self.step, "loss": self.running[0] / self.running[1]})
            self.running = [0.0, 0]
            self.bar.set_postfix(loss=f"{self.history[-1]['loss']:.4f}")
            if self.writer is not None:
                self.writer.add_scalar(f"{self.stage}/loss", self.history[-1]["loss"], self.step)

    def module_state(self) -> dict:
        return self.module.state_dict()

    def state(self) -> dict:
        return {"model": self.module.state_dict(), "optimizer": self.optimizer.state_dict(),
                "rng": self.rng.bit_generator.state, "gen": self.gen.get_state(), "running": self.running}

    def load_state(self, state: dict) -> None:
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.rng.bit_generator.state = state["rng"]
        self.gen.set_state(state["gen"])
        self.running = state["running"]


def fit(stage: str, module: nn.Module, loss_fn: Callable[[np.random.Generator, torch.Generator], torch.Tensor],
        steps: int, lr: float, weight_decay: float, grad_clip: float, run_dir: Path, seed: int,
        checkpoint_every: int, writer=None, progress: bool = True, precision: str = "fp32",
        schedule: str = "constant", record: str | None = None) -> list[dict[str, float]]:
    """Train ``module`` (its parameters that require grad) on ``loss_fn(rng, generator)`` for ``steps``, its
    forward passes at ``precision`` ("fp32" or "bf16" autocast), at learning rate ``lr`` (``schedule``
    "constant") or ``lr`` decayed to 0 along a half cosine ("cosine"; a function of the step, so a resumed
    stage continues the same schedule); returns the history of its training loss.

    A finished stage is loaded from ``<run_dir>/<record>`` (default ``<stage>.pt``); an unfinished one resumes
    from its checkpoint with every random state, so an interrupted stage ends where an uninterrupted one would. A
    non-finite loss or gradient stops it at once (``rl_laof.finite.Diverged``); no non-finite module is ever
    written.
    """
    done = run_dir / (record or f"{stage}.pt")
    if done.exists():
        saved = load_torch(done)
        module.load_state_dict(saved["model"])
        module.eval()
        return saved["history"]
    loop = ModuleFit(stage, module, loss_fn, steps, lr, weight_decay, grad_clip, run_dir, seed, checkpoint_every,
                     writer, progress, precision, schedule)
    loop.run()
    loop.check_finite()
    module.eval()
    save_torch({"model": module.state_dict(), "history": loop.history}, done)
    loop.checkpoints.clear()
    return loop.history
