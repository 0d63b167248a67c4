"""What one trial runs: the target's stage with the trial's values, scored on held-out data.

Each objective takes the trial's stage overrides, a folder of its own, and ``report(step, value)``
(intermediate values for the pruner, which may raise ``optuna.TrialPruned``; ``None`` for
multi-objective studies, which Optuna cannot prune) and returns one value per study direction:
``probe`` = held-out linear-probe action MSE of the latent action model (the ``eval`` episodes: other
episodes than the training ones), ``return`` = mean episode return of the downstream policy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rl_laof import pipeline
from rl_laof.data.dataset import VideoDataset
from rl_laof.imitation.training import imitate
from rl_laof.lam.training import train_lam
from rl_laof.skills.evaluation import evaluate_skills
from rl_laof.skills.training import SkillRun
from sweeps.config import SweepConfig
from sweeps.spaces import stage_config

Report = Callable[[int, float], None] | None


def _forward(report: Report, key: str) -> Callable[[int, dict[str, float]], None] | None:
    """A stage's ``on_eval(step, metrics)`` that reports ``metrics[key]`` as the trial's intermediate value."""
    if report is None:
        return None
    return lambda step, metrics: report(step, metrics[key])


def check(cfg: SweepConfig) -> None:
    """Refuse, before the study or any folder is made, a sweep whose dataset is missing or is not one
    (target sof needs one: a multi-task dataset)."""
    if cfg.target == "sof" and cfg.dataset is None:
        raise ValueError("target sof needs --dataset: a multi-task dataset with flow (python -m "
                         "rl_laof.data.multitask; benchmarks/bench_skills.py builds one)")
    if cfg.dataset is not None:
        VideoDataset(cfg.dataset, flow=None)  # no dataset there: its one-line error names the path


def prepare(cfg: SweepConfig, progress: bool = True) -> dict[str, Any]:
    """What every trial shares, built once before any worker starts (two workers must not both collect
    a dataset or train the same default model): the dataset, and the frozen upstream runs of the
    downstream targets. Returns fixed stage overrides / paths for the trials."""
    check(cfg)
    if cfg.target == "sof":
        return {"dataset": str(cfg.dataset), "fixed": {}}
    if cfg.target == "ppo":
        tcfg = stage_config("train", cfg.preset, {"task": cfg.task, "latent": "laof"})
        return {"dataset": None, "fixed": {"latent_policy": str(pipeline.latent_policy(tcfg, progress=progress))}}
    laof = cfg.target in ("laof", "lafp")
    dataset = Path(cfg.dataset) if cfg.dataset else pipeline.default_dataset(cfg.task, cfg.preset, laof, progress)
    if not dataset.exists():
        raise FileNotFoundError(f"--dataset {dataset}: no such dataset")
    if cfg.target == "lafp":  # the policy imitates the latents of the preset's LAOF model, trained once here
        lam_cfg = stage_config("lam", cfg.preset, {"method": "laof", "seed": cfg.seed})
        return {"dataset": str(dataset), "fixed": {"lam_run": str(pipeline.latent_model(lam_cfg, dataset, progress))}}
    return {"dataset": str(dataset), "fixed": {}}


def latent_model(cfg: SweepConfig, overrides: dict[str, Any], shared: dict[str, Any], trial_dir: Path,
                 report: Report) -> list[float]:
    """laof / lapo / laom: train the model; probe MSE and / or the return of latent BC on its latents."""
    lam_cfg = stage_config("lam", cfg.preset, overrides)
    rep = train_lam(lam_cfg, shared["dataset"], trial_dir / "lam", progress=False,
                    on_eval=_forward(report, "eval/linear_probe_action_mse"))
    values = []
    if cfg.objective in ("probe", "both"):
        # choices read the val split (the report's selection_split; eval for datasets without one)
        values.append(float(rep["probes"][rep.get("selection_split", "eval")]["linear_action_mse"]))
    if cfg.objective in ("return", "both"):
        icfg = stage_config("imitation", cfg.preset, {
            "latent": lam_cfg.method, "policy": "bc", "lam_run": rep["run_dir"], "seed": cfg.seed,
            "threads": lam_cfg.threads, "normalise": False, "eval_backgrounds": ("train",)})
        values.append(float(imitate(icfg, shared["dataset"], trial_dir / "imitation", progress=False)
                            ["returns"]["train"]["mean"]))
    return values


def latent_flow_policy(cfg: SweepConfig, overrides: dict[str, Any], shared: dict[str, Any], trial_dir: Path,
                       report: Report) -> list[float]:
    """lafp: the flow-matching latent policy and its decoder on the frozen LAOF latents; episode return."""
    icfg = stage_config("imitation", cfg.preset, overrides)
    report = imitate(icfg, shared["dataset"], trial_dir / "imitation", progress=False)
    return [float(report["returns"]["train"]["mean"])]


def skills(cfg: SweepConfig, overrides: dict[str, Any], shared: dict[str, Any], trial_dir: Path,
           report: Report) -> list[float]:
    """sof: tokenizer, prior and translator; mean return of the skill policy over the dataset's tasks."""

    scfg = stage_config("skills", cfg.preset, overrides)
    return [float(evaluate_skills(SkillRun(scfg, shared["dataset"], trial_dir / "skills"), progress=False)
                  ["mean_over_tasks"])]


def ppo(cfg: SweepConfig, overrides: dict[str, Any], shared: dict[str, Any], trial_dir: Path,
        report: Report) -> list[float]:
    """ppo: the agent in the LAOF latent action space; final evaluation return (periodic ones are reported)."""
    tcfg = stage_config("train", cfg.preset, overrides)
    rollout = tcfg.n_steps * tcfg.num_envs
    if tcfg.batch_size > rollout:  # as rl-baselines3-zoo: a minibatch is at most the rollout
        tcfg = dataclasses.replace(tcfg, batch_size=rollout)
    return [float(pipeline.agent(tcfg, trial_dir / "train", progress=False, on_eval=_forward(report, "mean"))
                  ["final"]["mean"])]


OBJECTIVES = {"laof": latent_model, "lapo": latent_model, "laom": latent_model, "lafp": latent_flow_policy,
              "sof": skills, "ppo": ppo}
