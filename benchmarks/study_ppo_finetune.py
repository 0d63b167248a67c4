"""Does PPO improve on the latent BC start at bench_train's budget, and does a critic warm-up or a longer budget
change that? Seed 0 of bench_train's ``laof`` and ``action_residual`` rows (the same start: LAOF latent BC of
imitation seed 0, in the latent residual space and in raw actions), with and without ``critic_warmup_steps``, and
the latent row at three times the agent steps.

    python benchmarks/study_ppo_finetune.py [--variants laof,laof_warm4k,...]

The rows without a change are bench_train's own runs (``runs/bench/train/full-lq/<row>-s0``: a finished one is read,
not retrained). Per variant: the final return (8 held-out episodes), the periodic evaluations (4 episodes each), and
the return of the agent's own training episodes (stochastic actions), which has far less noise: SB3's
``rollout/ep_rew_mean`` after each rollout (the mean of the last <= 100 training episodes; a rollout of 8 envs x 256
steps ends 8 episodes of 250 steps), and from it the mean of each rollout's own 8 episodes while the window still
holds every episode (the first 12 rollouts). One PPO seed: a pilot for what bench_train's seeds can show, not an
interval. Writes ``benchmarks/results/study_ppo_finetune.json``; each finished variant leaves its record in
``benchmarks/results/study_ppo_finetune_runs/`` (a fresh clone continues from them).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import bench_train as bt
from bench_args import alone, recorded, study_variants, subset

import envs  # noqa: F401  (loads EGL before anything imports envpool)
from agents.config import TrainConfig
from rl_laof.pipeline import agent as train
from rl_laof.runs import runs_root

SEED = 0
WINDOW = 100  # SB3's episode window of rollout/ep_rew_mean
#: variant -> (bench_train row, TrainConfig changes)
VARIANTS: dict[str, tuple[str, dict]] = {
    "laof": ("laof", {}),
    "laof_warm4k": ("laof", dict(critic_warmup_steps=4096)),
    "action_residual": ("action_residual", {}),
    "action_residual_warm4k": ("action_residual", dict(critic_warmup_steps=4096)),
    "laof_warm4k_60k": ("laof", dict(critic_warmup_steps=4096, total_steps=60_000)),
}
RECORDS = bt.RESULTS.parent / "study_ppo_finetune_runs"


def variant_config(base: TrainConfig, variant: str, policy: Path) -> TrainConfig:
    row, changes = VARIANTS[variant]
    return dataclasses.replace(bt.row_config(base, row, SEED, policy), **changes)


def run_dir(variant: str) -> Path:
    row, changes = VARIANTS[variant]
    return bt.run_root(False) / f"{row}-s{SEED}" if not changes else runs_root() / "study" / "ppo_ft" / variant


def training_returns(tb_dir: Path) -> list[dict]:
    """(step, rollout/ep_rew_mean) after each rollout, from the run's TensorBoard events."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: list[dict] = []
    for events in sorted(tb_dir.glob("run_*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        if "rollout/ep_rew_mean" in acc.Tags()["scalars"]:
            out += [{"step": int(s.step), "window_mean": round(float(s.value), 2)}
                    for s in acc.Scalars("rollout/ep_rew_mean")]
    return sorted({o["step"]: o for o in out}.values(), key=lambda o: o["step"])


def per_rollout(window: list[float], episodes_per_rollout: int) -> list[float]:
    """Each rollout's own mean return, recovered from the running window means while the window holds every
    episode so far (the first WINDOW // episodes_per_rollout rollouts): m_k = (k + 1) E_k - k E_(k-1)."""
    n = min(len(window), WINDOW // episodes_per_rollout)
    return [round(window[0], 1)] + [round((k + 1) * window[k] - k * window[k - 1], 1) for k in range(1, n)]


def variant_record(base: TrainConfig, variant: str, progress: bool) -> dict:
    row = VARIANTS[variant][0]
    policy = bt.latent_policy(row, SEED, False, progress)
    cfg = variant_config(base, variant, policy)

    def make() -> dict:
        folder = run_dir(variant)
        rep = train(cfg, folder, resume=True, progress=progress)
        hist = rep["eval_history"]
        window = training_returns(folder / "tb")
        episodes = cfg.num_envs * cfg.n_steps // (1000 // cfg.resolved_action_repeat)  # DMC: 1000 frames
        rollouts = [w["window_mean"] for w in window]
        return {"variant": variant, "row": row, "seed": SEED, "ret": rep["final"]["mean"],
                "first_eval": hist[0]["mean"], "curve": [{"step": h["step"], "mean": h["mean"]} for h in hist],
                "train_window": window, "train_per_rollout": per_rollout(rollouts, episodes),
                "train_first_rollout": rollouts[0] if rollouts else None,
                "train_last_window": rollouts[-1] if rollouts else None}

    return recorded(RECORDS / f"{variant}.json", {"train": cfg.to_dict()}, make)


def main() -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated, from " + ", ".join(VARIANTS))
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args()
    variants = subset(p, args.variants, VARIANTS, "variants")
    base = bt.base_config()
    result: dict = {"task": bt.TASK, "distractors": base.distractors, "seed": SEED}
    return study_variants("study_ppo_finetune", result, variants, VARIANTS,
                          lambda v: variant_record(base, v, not args.no_progress))


if __name__ == "__main__":
    alone(main)
