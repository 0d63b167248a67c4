"""SOF skills: ``python -m rl_laof.skills pretrain|prior|translate|evaluate|all --dataset DIR``.

Skills from optical flow (SOF, Fang et al. 2025, on QueST's skill learner), on a multi-task dataset of one
embodiment (``python -m rl_laof.commands.multitask``):

    pretrain   the tokenizer: the agent's flow over H-step windows -> n FSQ tokens; decoder (tokens + first
               frame -> flow window), L1. Unlabelled video only.
    prior      an autoregressive transformer over the tokens of the window starting at the current frame,
               conditioned on the frame stack and the task. Unlabelled video only.
    translate  (tokens or decoded flow, frame stack) -> the window's H actions, on the labelled windows only
               (``label_trajectories`` whole episodes per task).
    evaluate   the skill policy per task: prior (top-k) -> tokens -> [decoder] -> translator -> H actions,
               executed open loop, then replan; EnvPool pixels with the data's distractors.

Each stage writes ``<stage>.pt`` in the run folder and resumes from its checkpoint when interrupted; a
later stage finds the earlier ones there. ``python -m rl_laof.train --latent sof`` acts in this skill space.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from envs import ensure_gl
from rl_laof.cli import add_run_flags, print_summary, run, stage_config, stage_parser
from rl_laof.config_file import config_section
from rl_laof.runs import read_json
from rl_laof.skills.config import SKILLS_PRESETS, SkillsConfig
from rl_laof.skills.evaluation import write_report
from rl_laof.skills.training import STAGES, SkillRun


def build_parser() -> argparse.ArgumentParser:
    p = stage_parser("rl_laof.skills", __doc__, SKILLS_PRESETS,
                     "quick: minutes per stage on 2 cores; paper: QueST's sizes", task=False)
    p.add_argument("stage", choices=[*STAGES, "evaluate", "all"],
                   help="pretrain: tokenizer; prior; translate; evaluate: per-task returns; all: every stage")
    p.add_argument("--dataset", type=Path, help="a (multi-task) dataset with flow targets; default: the run's")
    p.add_argument("--seed", type=int, default=None, help="seed of the models and batches (default 0)")
    add_run_flags(p, "run folder (default runs/skills/<task>/<dataset>/...)", SkillsConfig, None,
                  "a config file's 'skills' section (e.g. a sweep's best.json); --seed and --set win")
    return p


def config_from_args(args: argparse.Namespace) -> SkillsConfig:
    sets = args.set if args.seed is None else [*args.set, f"seed={args.seed}"]  # --seed wins over --set seed=...
    return stage_config(SkillsConfig, SKILLS_PRESETS, args.preset, file=config_section(args.config, "skills"),
                        sets=sets)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    dataset = args.dataset
    if dataset is None:
        if args.out is None or not (args.out / "config.json").exists():
            raise ValueError("--dataset DIR is needed (a multi-task dataset with flow: python -m "
                             "rl_laof.data.multitask), unless --out names an existing run")
        dataset = read_json(args.out / "config.json")["dataset"]
    cfg = config_from_args(args)
    if args.stage in ("evaluate", "all"):
        ensure_gl()  # the evaluation renders: without headless GL, refused before any stage trains
    run_ = SkillRun(cfg, dataset, args.out)  # the config and the data every stage needs are checked here first
    progress = not args.no_progress
    t0 = time.time()
    out: dict[str, Any] = {"run_dir": str(run_.dir), "stage": args.stage}
    if args.stage in ("pretrain", "all"):
        run_.tokenizer(progress)
    if args.stage in ("prior", "all"):
        run_.prior(progress)
    if args.stage in ("translate", "all"):
        run_.translator(progress)
    if args.stage in ("evaluate", "all"):
        out.update(write_report(run_, progress))
    out["seconds"] = round(time.time() - t0, 1)
    print_summary({k: v for k, v in out.items() if k not in ("config",)})
    return out


def main_entry() -> None:
    """The console script ``rl-laof-skills``."""
    run(main)


if __name__ == "__main__":
    run(main)
