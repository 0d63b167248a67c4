"""The sweeps' config (``python -m sweeps.tune``): an Optuna study over one stage's config, and its presets."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

from rl_laof.presets import check_ranges

SWEEP_TARGETS = ("laof", "lapo", "laom", "lafp", "sof", "ppo")
SWEEP_OBJECTIVES = ("probe", "return", "both")
SWEEP_PRUNERS = ("median", "hyperband", "none")
SWEEP_SAMPLERS = ("tpe", "random")
#: per target, (training steps per trial, steps between intermediate values) when the stage preset is quick:
#: a few minutes per trial on 2 cores (PPO: agent steps)
SWEEP_QUICK_BUDGET = {"laof": (300, 100), "lapo": (300, 100), "laom": (300, 100), "lafp": (500, None),
                      "sof": (300, None), "ppo": (10_000, 2_500)}


@dataclass(frozen=True)
class SweepConfig:
    """An Optuna study over one stage's config (``python -m sweeps.tune``).

    A trial runs the target's stage at ``preset`` with the sampled values, cut to the sweep's trial budget
    (``trial_steps``), and is scored on held-out data: ``probe`` = the
    held-out linear-probe action MSE of a latent action model (minimised), ``return`` = the downstream
    episode return (maximised), ``both`` = the two at once (a Pareto front; Optuna cannot prune those).
    ``n_trials`` counts the study's trials over every worker and every rerun, so running the same
    command again finishes an interrupted study. A trial whose worker stops beating its heartbeat for
    ``grace_s`` is marked failed and retried with the same parameters (at most ``max_retry`` times).
    """

    target: str = "laof"
    task: str = "cheetah-run"
    preset: str = "quick"  # the stage preset every trial starts from
    method: str | None = None  # latent action targets: None -> "<target>-action" (tunes the action weight too)
    dataset: str | None = None  # None: the task's dataset at the preset (built first); sof: a multi-task one
    objective: str = "probe"
    n_trials: int = 20
    workers: int = 1  # worker processes on this machine (more machines: run the same command there)
    storage: str | None = None  # journal file path or SQLAlchemy URL; None: runs/sweeps/<study>/journal.log
    study_name: str | None = None  # None: <target>-<task>-<objective>
    sampler: str = "tpe"
    pruner: str = "median"
    pruner_startup_trials: int = 3  # median: trials finished before any is pruned
    seed: int = 0
    # training steps of the tuned stage per trial (PPO: agent steps) and steps between intermediate values
    # (the pruners' rungs); None: SWEEP_QUICK_BUDGET at the quick preset, the stage preset's own otherwise
    trial_steps: int | None = None
    report_every: int | None = None
    threads: int | None = None  # torch threads per worker; None: cores // workers
    heartbeat_s: float = 10.0
    grace_s: float = 60.0  # a RUNNING trial without a heartbeat for this long belongs to a dead worker
    max_retry: int = 2

    def __post_init__(self) -> None:
        check_ranges(self, ('n_trials', 'workers', 'trial_steps', 'report_every'))
        if self.target not in SWEEP_TARGETS:
            raise ValueError(f"Unknown target {self.target!r}; valid: {', '.join(SWEEP_TARGETS)}.")
        if self.objective not in SWEEP_OBJECTIVES:
            raise ValueError(f"Unknown objective {self.objective!r}; valid: {', '.join(SWEEP_OBJECTIVES)}.")
        if self.objective != "return" and self.target not in ("laof", "lapo", "laom"):
            raise ValueError(f"target {self.target!r} has no latent probe: use --objective return (the probe "
                             "objectives are for the latent action models laof / lapo / laom).")
        if self.method is not None and (self.target not in ("laof", "lapo", "laom")
                                        or self.method.removesuffix("-action") != self.target):
            raise ValueError(f"--method {self.method}: the {self.target} target takes {self.target} or "
                             f"{self.target}-action.")
        if self.pruner not in SWEEP_PRUNERS:
            raise ValueError(f"Unknown pruner {self.pruner!r}; valid: {', '.join(SWEEP_PRUNERS)}.")
        if self.sampler not in SWEEP_SAMPLERS:
            raise ValueError(f"Unknown sampler {self.sampler!r}; valid: {', '.join(SWEEP_SAMPLERS)}.")
        if self.n_trials < 1 or self.workers < 1:
            raise ValueError("n_trials and workers must be >= 1.")
        if self.heartbeat_s <= 0 or self.grace_s <= 2 * self.heartbeat_s:
            raise ValueError(f"grace_s={self.grace_s} must exceed twice heartbeat_s={self.heartbeat_s} (> 0), "
                             "or live workers would look dead.")
        if self.trial_steps is not None and self.trial_steps < 1:
            raise ValueError("trial_steps must be >= 1 (or None for the preset's).")

    @property
    def budget(self) -> tuple[int | None, int | None]:
        """(training steps per trial, steps between intermediate values); None: the stage preset's."""
        steps, every = SWEEP_QUICK_BUDGET[self.target] if self.preset == "quick" else (None, None)
        return (self.trial_steps or steps, self.report_every or every)

    @property
    def resolved_method(self) -> str | None:
        if self.target not in ("laof", "lapo", "laom"):
            return None
        return self.method or f"{self.target}-action"

    @property
    def name(self) -> str:
        return self.study_name or f"{self.target}-{self.task}-{self.objective}"

    @property
    def directions(self) -> list[str]:
        return {"probe": ["minimize"], "return": ["maximize"], "both": ["minimize", "maximize"]}[self.objective]

    @property
    def worker_threads(self) -> int:
        return self.threads or max(1, (os.cpu_count() or 1) // self.workers)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


SWEEP_PRESETS: dict[str, dict[str, Any]] = {
    # a few minutes per trial on 2 cores (LAOF: 300 steps, probes at 100 / 200 / 300)
    "quick": {},
    # the stage's own paper budget per trial, intermediate values at its evaluation interval
    "paper": dict(preset="paper", n_trials=100, pruner="hyperband"),
}
