"""SOF skills: ``python -m rl_laof.skills pretrain|prior|translate|evaluate|all --dataset DIR``.

Skills from optical flow (SOF, Fang et al. 2025, on QueST's skill learner), on a multi-task dataset of one
embodiment (``python -m rl_laof.data.multitask``):

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

import json
import time
from pathlib import Path
from typing import Any

from rl_laof.config import from_preset
from rl_laof.runs import read_json
from rl_laof.sof.config import SKILL_PRESETS, SkillConfig
from rl_laof.sof.evaluation import write_report
from rl_laof.sof.training import STAGES, SkillRun

# --------------------------------------------------------------------------- CLI

def build_parser():
    import argparse

    p = argparse.ArgumentParser(prog="python -m rl_laof.skills", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("stage", choices=[*STAGES, "evaluate", "all"],
                   help="pretrain: tokenizer; prior; translate; evaluate: per-task returns; all: every stage")
    p.add_argument("--dataset", type=Path, help="a (multi-task) dataset with flow targets; default: the run's")
    p.add_argument("--out", type=Path, default=None, help="run folder (default runs/skills/<task>/<dataset>/...)")
    p.add_argument("--preset", default="quick", choices=list(SKILL_PRESETS),
                   help="quick: minutes per stage on 2 cores; paper: QueST's sizes")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="any SkillConfig field")
    p.add_argument("--config", type=Path, default=None, metavar="FILE",
                   help="a config file's 'skills' section (e.g. a sweep's best.json); --seed and --set win")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from rl_laof.cli import parse_sets
    from rl_laof.config_file import config_section

    args = build_parser().parse_args(argv)
    overrides = {**config_section(args.config, "skills"), **parse_sets(SkillConfig, args.set)}
    if args.seed is not None:
        overrides["seed"] = args.seed
    dataset = args.dataset
    if dataset is None:
        if args.out is None or not (args.out / "config.json").exists():
            raise ValueError("--dataset DIR is needed (a multi-task dataset with flow: python -m "
                             "rl_laof.data.multitask), unless --out names an existing run")
        dataset = read_json(args.out / "config.json")["dataset"]
    cfg = from_preset(SkillConfig, SKILL_PRESETS, args.preset, **overrides)
    run = SkillRun(cfg, dataset, args.out)
    progress = not args.no_progress
    t0 = time.time()
    out: dict[str, Any] = {"run_dir": str(run.dir), "stage": args.stage}
    if args.stage in ("pretrain", "all"):
        run.tokenizer(progress)
    if args.stage in ("prior", "all"):
        run.prior(progress)
    if args.stage in ("translate", "all"):
        run.translator(progress)
    if args.stage in ("evaluate", "all"):
        out.update(write_report(run, progress))
    out["seconds"] = round(time.time() - t0, 1)
    print(json.dumps({k: v for k, v in out.items() if k not in ("config",)}, default=str))
    return out


if __name__ == "__main__":
    from rl_laof.cli import run as run_cli

    run_cli(main)
