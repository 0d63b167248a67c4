"""What limits behaviour cloning from pixels? BC on every label, one factor changed at a time.

    python benchmarks/study_bc.py [--arms quick,steps8k,...] [--seeds 1] [--level laom] [--dataset DIR]

Each arm is ``rl_laof.imitation`` with ``latent none, labels 1.0`` (the BC-on-all-labels normaliser of
``bench_imitation``) and some ImitationConfig fields changed. Reported per arm and seed:

* ``heldout_mse``: the policy's action MSE on the held-out ``eval`` episodes divided by the mean-action
  MSE of the same episodes (1.0 = no better than the mean action; ``imitate``'s ``action_mse``), the
  same on the training transitions (``train_mse``: the gap is over-fitting) and on held-out backgrounds;
* ``return``: the mean return on the EnvPool pixel env with the data's distractors (8 episodes), and,
  for the arms in ``--dm-control``, the same policy on the dm_control backend the data was rendered
  with (a renderer gap shows as envpool << dm_control);
* ``data_return``: the mean return of the training episodes (what BC can reach); ``seconds`` of training.

Writes ``benchmarks/results/study_bc.json``; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from bench_args import alone

import envs  # noqa: F401  (loads EGL before anything imports envpool)
from rl_laof.data.dataset import VideoDataset
from rl_laof.imitation.config import ImitationConfig
from rl_laof.runs import runs_root, write_json

RESULTS = Path(__file__).resolve().parent / "results" / "study_bc.json"
BASE = dict(latent="none", labels=1.0, normalise=False, eval_seeds=1, eval_episodes=8, eval_backgrounds=("train",))
ARMS: dict[str, dict] = {
    "quick": {},
    "bf16": dict(precision="bf16"),
    "steps8k_bf16": dict(steps=8000, precision="bf16"),
    "steps16k_bf16": dict(steps=16000, precision="bf16"),
    "steps8k": dict(steps=8000),
    "steps8k_b128": dict(steps=8000, batch_size=128),
    "width32": dict(width=32),
    "no_augment": dict(augment=False),
    "steps8k_width32": dict(steps=8000, width=32),
    "steps8k_bf16_cos": dict(steps=8000, precision="bf16", lr_schedule="cosine"),
    "steps8k_bf16_w32": dict(steps=8000, precision="bf16", width=32),
    "steps8k_bf16_w32_cos": dict(steps=8000, precision="bf16", width=32, lr_schedule="cosine"),
    "steps12k_bf16_w32_cos": dict(steps=12000, precision="bf16", width=32, lr_schedule="cosine"),
    "steps8k_bf16_lr1e3": dict(steps=8000, precision="bf16", lr=1e-3),
    "steps8k_bf16_drq32_cos": dict(steps=8000, precision="bf16", encoder="drq", width=32, lr_schedule="cosine"),
    "steps8k_bf16_drqs2_32_cos": dict(steps=8000, precision="bf16", encoder="drq_s2", width=32, lr_schedule="cosine"),
    "steps2k_bf16_w32_cos": dict(steps=2000, precision="bf16", width=32, lr_schedule="cosine"),
    "steps2k_bf16_kp32_cos": dict(steps=2000, precision="bf16", encoder="keypoints", width=32, lr_schedule="cosine"),
    "steps8k_bf16_kp32_cos": dict(steps=8000, precision="bf16", encoder="keypoints", width=32, lr_schedule="cosine"),
}


def backend_return(agent, ds: VideoDataset, frame_stack: int, backend: str, episodes: int = 8) -> float:
    from envs.config import DistractorConfig
    from envs.rollout import EVAL_SEED, run_episodes

    venv = envs.make(ds.task, num_envs=episodes, obs="pixels", distractors=DistractorConfig.parse(
        ds.config["distractors"]), image_size=ds.image_shape[-1], frame_stack=frame_stack,
        action_repeat=int(ds.config.get("action_repeat", 1)), seed=EVAL_SEED, backend=backend)
    try:
        return float(run_episodes(venv, agent).mean())
    finally:
        venv.close()


def main() -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arms", default="quick,steps8k", help=f"comma-separated, from {', '.join(ARMS)}")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--level", default="laom", help="the quick dataset's distractor level")
    p.add_argument("--dataset", default=None,
                   help="a collected dataset folder instead of the quick one (e.g. 128 episodes); its rows are "
                        "keyed by the folder's name")
    p.add_argument("--dm-control", default="quick", help="arms also evaluated on the dm_control backend")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args()
    from rl_laof.imitation.policy import load_latent_policy
    from rl_laof.imitation.training import imitate
    from rl_laof.pipeline import default_dataset

    if args.dataset:
        data = Path(args.dataset) / "dataset.h5"
        tag = f"-{Path(args.dataset).name}"
    else:
        data = default_dataset("cheetah-run", "quick", "exact", distractors=args.level,
                               progress=not args.no_progress)
        tag = ""
    ds = VideoDataset(data)
    if ds.config["distractors"]["difficulty"] != args.level:
        sys.exit(f"{data} was collected at distractor level {ds.config['distractors']['difficulty']!r}, "
                 f"not --level {args.level!r}")
    data_return = float(np.mean([e.ret for e in ds.episodes["train"]]))
    out: dict = {"level": args.level, "dataset": str(data), "data_return": round(data_return, 1), "arms": {},
                 "datasets": {}}
    if RESULTS.exists():
        old = json.loads(RESULTS.read_text())
        if old.get("level") == args.level:
            out = {**out, **{k: old[k] for k in ("arms", "datasets", "dataset", "data_return") if k in old}}
    out["datasets"][tag.lstrip("-") or "quick"] = dict(path=str(data), data_return=round(data_return, 1),
                                                      transitions=sum(e.length for e in ds.episodes["train"]))
    for arm in args.arms.split(","):
        for seed in range(args.seeds):
            key = f"{arm}{tag}-s{seed}"
            if key in out["arms"]:
                continue
            cfg = ImitationConfig(**{**BASE, **ARMS[arm], "seed": seed})
            run = runs_root() / "bench" / "study_bc" / args.level / key
            t0 = time.perf_counter()
            report = imitate(cfg, data, run, progress=not args.no_progress)
            agent, _ = load_latent_policy(run)
            row = dict(arm=arm, seed=seed, dataset=tag.lstrip("-") or "quick",
                       seconds=report["stages"]["policy_seconds"],
                       wall_s=round(time.perf_counter() - t0, 1),
                       heldout_mse=report["action_mse"]["eval"], train_mse=report["action_mse"]["train"],
                       heldout_bg_mse=report["action_mse"].get("heldout_bg"),
                       ret_envpool=round(report["returns"]["train"]["mean"], 1))
            if arm in args.dm_control.split(","):
                row["ret_dm_control"] = round(backend_return(agent, ds, cfg.frame_stack, "dm_control"), 1)
            out["arms"][key] = row
            print(json.dumps(row), flush=True)
            RESULTS.parent.mkdir(exist_ok=True)
            write_json(RESULTS, out)
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    alone(main)
