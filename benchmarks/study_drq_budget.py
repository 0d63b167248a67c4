"""Is DrQ-v2's failure at bench_train's budget the method or the CPU preset? DrQ-v2 on bench_train's env and frames
as they were when the study began (cheetah-run, LAOM distractors, 20k agent steps at action repeat 4 = 80k frames,
EnvPool: :data:`SETTINGS`, pinned so that the study stays the one it was) at the CPU preset and at the paper's
update rate and sizes (``DRQ_PRESETS["paper"]``: batch 256, an update every 4 frames, MLPs of 1024, fp32); and, to
tell the method's failure from the distractors', ``clean``: the CPU preset on the same env without distractors.

    python benchmarks/study_drq_budget.py [--variants cpu,paper,clean] [--seed 0]

The ``cpu`` variant is bench_train's ``drq`` row of that time (its committed record stands for it; run again, it
trains in ``runs/study/drq_budget/cpu-s<seed>``). Per variant: the final return (8 held-out episodes), the evaluation
curve, the updates and the samples they drew (updates x batch), the actor's saturation at the end (``report.json``'s
``drq.actor_saturation``: the share of mean actions within 0.01 of a bound), agent steps/s and wall time. One seed:
a pointer to what DrQ-v2 needs here, not an interval. Writes ``benchmarks/results/study_drq_budget.json``; each
finished variant leaves its record in ``benchmarks/results/study_drq_budget_runs/`` (a fresh clone continues).
"""

from __future__ import annotations

import argparse
import dataclasses

import bench_train as bt
from bench_args import alone, recorded, study_variants, subset

import envs  # noqa: F401  (loads EGL before anything imports envpool)
from agents.config import DRQ_PRESETS, DrQConfig, TrainConfig
from rl_laof.pipeline import agent as train
from rl_laof.runs import read_json, runs_root

VARIANTS = ("cpu", "paper", "clean")
RECORDS = bt.RESULTS.parent / "study_drq_budget_runs"
#: bench_train's budget, evaluations and simulator when the study began (before issue 31 moved the agents to 60k
#: steps on the dm_control backend)
SETTINGS = dict(total_steps=20_000, eval_every=5_000, checkpoint_every=5_000, backend="envpool")
#: PPO's settings when the study ran, which DrQ does not use (it has its own DrQConfig; TrainConfig refuses a drq run's
#: batch_size other than the default) but its TrainConfig records: a record's identity keeps them at those values, so
#: the study's records stand after PPO's defaults moved (issue 31: log std -0.5, 10 epochs, minibatch 64)
PPO_FIELDS_THEN = dict(log_std_init=-1.0, n_epochs=4, batch_size=256)


def study_base() -> TrainConfig:
    """bench_train's base config with the study's :data:`SETTINGS`."""
    return dataclasses.replace(bt.base_config(), **SETTINGS)


def variant_config(base: TrainConfig, variant: str, seed: int) -> TrainConfig:
    """bench_train's drq row at PPO seed ``seed``; ``paper``: with the paper's DrQConfig (the frames unchanged);
    ``clean``: without distractors."""
    cfg = bt.row_config(base, "drq", seed, None)
    if variant == "paper":
        cfg = dataclasses.replace(cfg, drq=DrQConfig.resolve("paper", None))
    elif variant == "clean":
        cfg = dataclasses.replace(cfg, distractors="none")
    return cfg


def run_dir(variant: str, seed: int):
    return runs_root() / "study" / "drq_budget" / f"{variant}-s{seed}"


def variant_record(base: TrainConfig, variant: str, seed: int, progress: bool) -> dict:
    cfg = variant_config(base, variant, seed)

    def make() -> dict:
        folder = run_dir(variant, seed)
        rep = train(cfg, folder, resume=True, progress=progress)
        d = cfg.drq  # resolved by TrainConfig for algo drq
        drq = rep.get("drq") or read_json(folder / "report.json").get("drq", {})
        hist = rep["eval_history"]
        return {"variant": variant, "seed": seed, "drq": dataclasses.asdict(d), "ret": rep["final"]["mean"],
                "ret_std": rep["final"]["std"], "curve": [{"step": h["step"], "mean": h["mean"]} for h in hist],
                "updates": drq.get("updates"), "samples": (drq.get("updates") or 0) * d.batch_size,
                "actor_saturation": drq.get("actor_saturation"), "sps": rep["steps_per_s"],
                "wall_s": hist[-1]["wall_s"] if hist else None}

    return recorded(RECORDS / f"{variant}-s{seed}.json", record_identity(cfg), make)


def record_identity(cfg: TrainConfig) -> dict:
    """What a record stands for: the run's config, with the PPO fields DrQ ignores at their values of the study."""
    return {"train": {**cfg.to_dict(), **PPO_FIELDS_THEN}}


def main() -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated, from " + ", ".join(VARIANTS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args()
    variants = subset(p, args.variants, VARIANTS, "variants")
    if args.seed < 0:
        p.error(f"--seed {args.seed}: a PPO / imitation seed is >= 0 (bench_train's seeds are 0-4)")
    base = study_base()
    result: dict = {"task": bt.TASK, "distractors": base.distractors, "seed": args.seed,
                    "frames": base.total_steps * base.resolved_action_repeat, "paper_preset": DRQ_PRESETS["paper"]}
    return study_variants("study_drq_budget", result, variants, VARIANTS,
                          lambda v: variant_record(base, v, args.seed, not args.no_progress))


if __name__ == "__main__":
    alone(main)
