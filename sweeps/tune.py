"""Optuna sweeps: ``python -m sweeps.tune --target laof --task cheetah-run --n-trials 20 --workers 2``.

Tunes one stage's config (``--target``: a latent action model laof / lapo / laom, the LAFP latent policy,
SOF skills, or PPO) on held-out numbers: the latent action model's linear-probe action MSE on held-out
episodes (``--objective probe``, fast), the downstream return (``return``, slow) or both (a Pareto
front). Intermediate values go to a median or Hyperband pruner. The study lives in a journal file
(default: runs/sweeps/<study>/journal.log; many processes on one machine) or a database URL
(``--storage postgresql://user:pw@host/db``: many machines, each running this same command). Running the
command again continues the study; trials of a dead worker are retried. At the end: trials.csv, PNG
plots, and best.json, a config file for ``rl_laof.lam --config`` / ``rl_laof.train --config``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

from envs import get_task
from rl_laof.cli import command_parser, parse_sets, run
from rl_laof.config_file import SECTIONS
from rl_laof.presets import from_preset
from rl_laof.runs import write_json
from sweeps import objectives, outputs
from sweeps import study as st
from sweeps.config import SWEEP_OBJECTIVES, SWEEP_PRESETS, SWEEP_PRUNERS, SWEEP_SAMPLERS, SWEEP_TARGETS, SweepConfig
from sweeps.spaces import TARGET_STAGE, apply, build_space, parse_space_item, target_defaults


def build_parser():
    p = command_parser("sweeps.tune", __doc__)
    p.add_argument("--target", required=True, choices=list(SWEEP_TARGETS), help="the stage whose config is tuned")
    p.add_argument("--task", default="cheetah-run", help="dm_control task")
    p.add_argument("--sweep-preset", default="quick", choices=list(SWEEP_PRESETS),
                   help="quick: the stage's quick preset cut to a few minutes per trial; paper: full-size trials")
    p.add_argument("--method", default=None, help="laof / lapo / laom targets: the plain method or -action "
                                                   "(default: <target>-action, which tunes the action weight too)")
    p.add_argument("--dataset", default=None, help="dataset folder (default: the task's at the preset; sof: "
                                                    "a multi-task dataset, required)")
    p.add_argument("--objective", default=None, choices=list(SWEEP_OBJECTIVES),
                   help="probe: held-out probe MSE; return: downstream return; both (default: probe, or return "
                        "for targets without a latent probe)")
    p.add_argument("--n-trials", type=int, default=None, help="trials in the study, over all workers and reruns")
    p.add_argument("--workers", type=int, default=None, help="worker processes on this machine")
    p.add_argument("--storage", default=None, metavar="PATH_OR_URL",
                   help="journal file, or a SQLAlchemy URL (postgresql://user:pw@host:port/db) for many machines "
                        "(default: runs/sweeps/<study>/journal.log)")
    p.add_argument("--study-name", default=None, help="default: <target>-<task>-<objective>")
    p.add_argument("--sampler", default=None, choices=list(SWEEP_SAMPLERS),
                   help="how trials draw their values: tpe (Optuna's default) or random (default: the preset's)")
    p.add_argument("--pruner", default=None, choices=list(SWEEP_PRUNERS),
                   help="what stops unpromising trials early from their intermediate values (default: the preset's)")
    p.add_argument("--trial-steps", type=int, default=None, help="training steps per trial (PPO: agent steps)")
    p.add_argument("--report-every", type=int, default=None, help="steps between intermediate values")
    p.add_argument("--seed", type=int, default=None, help="seed of the sampler and of every trial's run (default 0)")
    p.add_argument("--threads", type=int, default=None, help="torch threads per worker (default: cores // workers)")
    p.add_argument("--heartbeat", type=float, default=None, help="seconds between a running trial's heartbeats")
    p.add_argument("--grace", type=float, default=None, help="seconds without a heartbeat before a trial is retried")
    p.add_argument("--space", action="append", default=[], metavar="NAME=LOW:HIGH[:log] | NAME=[a,b]",
                   help="replace or add a tuned parameter (repeatable)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="fix a field of the tuned stage's config for every trial (repeatable)")
    p.add_argument("--worker-index", type=int, default=None, help=argparse.SUPPRESS)  # set for child workers
    p.add_argument("--no-progress", action="store_true", help="no per-trial log lines")
    return p


def config_from_args(args) -> SweepConfig:
    objective = args.objective or ("probe" if args.target in ("laof", "lapo", "laom") else "return")
    return from_preset(SweepConfig, SWEEP_PRESETS, args.sweep_preset, target=args.target, task=args.task,
                       method=args.method, dataset=args.dataset, objective=objective, n_trials=args.n_trials,
                       workers=args.workers, storage=args.storage, study_name=args.study_name, sampler=args.sampler,
                       pruner=args.pruner, trial_steps=args.trial_steps, report_every=args.report_every,
                       seed=args.seed, threads=args.threads, heartbeat_s=args.heartbeat, grace_s=args.grace)


def setup(args) -> tuple[SweepConfig, list, dict[str, Any]]:
    """The config, the checked search space and the fixed overrides: every error before any work."""
    cfg = config_from_args(args)
    if cfg.target != "sof":
        get_task(cfg.task)  # an unknown task: the valid ones
    cls, _ = SECTIONS[TARGET_STAGE[cfg.target]]
    fixed = parse_sets(cls, args.set)
    space = build_space(cfg, fixed, [parse_space_item(s) for s in args.space])
    objectives.check(cfg)
    st.check_storage(st.storage_spec(cfg))
    return cfg, space, fixed


def worker_main(args, cfg: SweepConfig, space, fixed, shared: dict[str, Any], index: int) -> dict[str, int]:
    storage = st.open_storage(st.storage_spec(cfg))
    study = st.create_or_load(cfg, storage, st.identity(cfg, [p.describe() for p in space], fixed))
    study.sampler = st.make_sampler(cfg, index, len(study.get_trials(deepcopy=False)))
    study.pruner = st.make_pruner(cfg)
    section, run = TARGET_STAGE[cfg.target], objectives.OBJECTIVES[cfg.target]
    base = {**target_defaults(cfg), **shared["fixed"], **fixed}
    trials_dir = st.study_dir(cfg) / "trials"

    def objective(trial, report):
        values = {**base, **{p.name: p.suggest(trial) for p in space}}
        trial_dir = trials_dir / f"{trial.number:04d}"
        trial_dir.mkdir(parents=True, exist_ok=True)
        return run(cfg, apply(section, values), shared, trial_dir, report)

    def log(msg: str) -> None:
        if not args.no_progress:
            print(f"[worker {index} pid {os.getpid()}] {msg}", flush=True)

    return st.run_worker(study, cfg, objective, log, sample=lambda trial: [p.suggest(trial) for p in space])


def spawn_workers(argv: list[str], workers: int) -> list[int]:
    """W child processes running this command as workers; their exit codes."""
    procs = [subprocess.Popen([sys.executable, "-m", "sweeps.tune", *argv, "--worker-index", str(i)])
             for i in range(workers)]
    try:
        return [p.wait() for p in procs]
    except BaseException:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()
        raise


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    cfg, space, fixed = setup(args)
    out = st.study_dir(cfg)
    if args.worker_index is not None:  # a child: the shared runs exist already
        shared = json.loads((out / "shared.json").read_text())
        worker_main(args, cfg, space, fixed, shared, args.worker_index)
        return {}

    storage = st.open_storage(st.storage_spec(cfg))  # an unreachable database fails here, before any work
    out.mkdir(parents=True, exist_ok=True)
    st.create_or_load(cfg, storage, st.identity(cfg, [p.describe() for p in space], fixed), command=argv)
    shared = objectives.prepare(cfg, progress=not args.no_progress)
    write_json(out / "shared.json", shared)
    t0 = time.time()
    # workers are always child processes (one or many: the same start-up cost); this process coordinates
    codes = spawn_workers(argv, cfg.workers)
    if any(codes):
        print(f"warning: worker exit codes {codes}; the study keeps what they finished", file=sys.stderr)
    study = st.create_or_load(cfg, storage, st.identity(cfg, [p.describe() for p in space], fixed))
    result = outputs.write_outputs(study, cfg, space, fixed, out, target_defaults(cfg))
    result.update(seconds=round(time.time() - t0, 1), storage=st.redact(st.storage_spec(cfg)), folder=str(out))
    print(json.dumps(result, default=str))
    return result


def main_entry() -> None:
    """The console script ``rl-laof-tune``."""
    run(main)


if __name__ == "__main__":
    run(main)
