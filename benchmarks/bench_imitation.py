"""Imitation from video with 1 % action labels: do latent policies beat BC on the labels?

    python benchmarks/bench_imitation.py [--quick]

On cheetah-run with hard distractors (the quick dataset: 32 training episodes of 250 steps at action
repeat 4, 80 labelled transitions = 1 %), trains with the same encoder, budget and labels:

  bc_all           BC on every transition with its true action (the normaliser; not a 1 % method)
  bc_labels        BC on the 80 labelled transitions only
  idm_bc           a pixel IDM trained on the labels relabels every transition, then BC
  lapo_bc          latent BC on LAPO's latents, decoder trained on the labels (IDM-latent mode)
  laof_bc          latent BC on LAOF's latents, the same
  laof_lafp        LAFP: flow-matching policy on LAOF's latents, decoder by inference-time interpolation
  laof_action_lafp LAFP on LAOF-Action's latents (action-decoder regularisation in pretraining)
  random           uniform random actions (the floor; no training)

The latent action models are ``bench_latent_quality``'s runs (trained here if missing). Each policy is
evaluated on the EnvPool pixel env with the data's distractors (``ret_*``) and with held-out background
videos (``ret_heldout_*``), over eval_seeds x eval_episodes episodes; returns are divided by bc_all's.
``ms_bc`` / ``ms_lafp``: median ms per action (one observation, policy + decoder) of laof_bc / laof_lafp,
measured here, interleaved. Targets (the papers' claims): ret_laof_lafp >= ret_laof_bc >= ret_lapo_bc;
ms_lafp < 2 x ms_bc. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
from bench_latent_quality import lam_run  # noqa: E402

import envs  # noqa: E402,F401  (loads EGL before anything imports envpool)
from rl_laof.artifacts import runs_root  # noqa: E402
from rl_laof.config import IMITATION_PRESETS, ImitationConfig, from_preset  # noqa: E402
from rl_laof.imitate import evaluate_returns, imitate, latency_ms, load_agent, plot_normalised_returns  # noqa: E402
from rl_laof.pretrain import find_or_build_dataset  # noqa: E402

TASK = "cheetah-run"
METHODS = {  # name -> (ImitationConfig fields, latent-quality run providing the latents)
    "bc_all": (dict(latent="none", labels=1.0), None),
    "bc_labels": (dict(latent="none"), None),
    "idm_bc": (dict(latent="none", relabel="idm"), None),
    "lapo_bc": (dict(latent="lapo", policy="bc"), "lapo"),
    "laof_bc": (dict(latent="laof", policy="bc"), "laof"),
    "laof_lafp": (dict(latent="laof", policy="lafp"), "laof"),
    "laof_action_lafp": (dict(latent="laof-action", policy="lafp"), "laof_action_1pct"),
}
QUICK = dict(steps=400, decoder_steps=400, idm_steps=400, eval_episodes=4, eval_seeds=1)


def random_returns(data, cfg: ImitationConfig, progress: bool) -> dict:
    """Returns of uniform random actions under the same evaluation protocol (cached beside the runs)."""
    from rl_laof.artifacts import read_json, write_json
    from rl_laof.data.dataset import VideoDataset

    path = runs_root() / "bench" / "imitation" / f"random-{cfg.eval_seeds}x{cfg.eval_episodes}.json"
    if path.exists():
        return read_json(path)
    ds = VideoDataset(data)
    rng = np.random.default_rng(0)
    out = evaluate_returns(lambda obs: rng.uniform(-1, 1, (len(obs), ds.action_dim)), ds, cfg, progress)
    write_json(path, out)
    return out


def main() -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="400 training steps per stage, 4 evaluation episodes per background set")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args()
    progress = not args.no_progress
    t0 = time.perf_counter()
    data = find_or_build_dataset(TASK, "quick", flow=True, progress=progress)
    out_root = runs_root() / "bench" / "imitation" / ("quick" if args.quick else "full")
    base = from_preset(ImitationConfig, IMITATION_PRESETS, "quick", **(QUICK if args.quick else {}))
    result: dict = {"task": TASK, "quick": args.quick, "dataset": str(data)}
    reports = {}
    for name, (fields, lam_name) in METHODS.items():
        lam = lam_run(lam_name, data, args.quick, progress)["run_dir"] if lam_name else None
        cfg = dataclasses.replace(base, lam_run=lam, normalise=False, **fields)
        if progress:
            print(f"== {name}: {cfg.tag}", flush=True)
        reports[name] = imitate(cfg, data, out_root / name, progress=progress)
    ref = reports["bc_all"]["returns"]
    rows = {}
    for name, rep in reports.items():
        for bg, key in (("train", "ret"), ("eval", "ret_heldout")):
            r = rep["returns"][bg]
            result[f"{key}_{name}"] = round(r["mean"] / ref[bg]["mean"], 3)
            result[f"raw_{key}_{name}"] = round(r["mean"], 1)
            result[f"seed_std_{key}_{name}"] = round(r["std_seeds"] / ref[bg]["mean"], 3)
        rows[name] = {bg: {"mean": rep["returns"][bg]["mean"] / ref[bg]["mean"],
                           "std": rep["returns"][bg]["std_seeds"] / ref[bg]["mean"]} for bg in ("train", "eval")}
    result["episodes_per_background"] = reports["bc_all"]["returns"]["train"]["episodes"]
    # the floor: uniform random actions, same episodes
    rand = random_returns(data, base, progress)
    rows["random"] = {bg: {"mean": r["mean"] / ref[bg]["mean"], "std": r["std_seeds"] / ref[bg]["mean"]}
                      for bg, r in rand.items()}
    result["ret_random"] = round(rand["train"]["mean"] / ref["train"]["mean"], 3)
    result["raw_ret_random"] = round(rand["train"]["mean"], 1)
    result["ret_heldout_random"] = round(rand["eval"]["mean"] / ref["eval"]["mean"], 3)
    # latency: the two laof policies, interleaved in this process (same threads, same machine state)
    loaded = {k: load_agent(reports[k]["run_dir"]) for k in ("laof_bc", "laof_lafp", "bc_labels")}
    agents = {k: agent for k, (agent, _) in loaded.items()}
    size = loaded["laof_bc"][1]["image_size"]
    shape = (3 * base.frame_stack, size, size)
    times: dict[str, list[float]] = {k: [] for k in agents}
    for _ in range(5):
        for k, agent in agents.items():
            times[k].append(latency_ms(agent, shape, 100))
    ms = {k: float(np.median(v)) for k, v in times.items()}
    result["ms_bc"], result["ms_lafp"], result["ms_bc_pixels"] = (round(ms["laof_bc"], 3), round(ms["laof_lafp"], 3),
                                                                  round(ms["bc_labels"], 3))
    result["lafp_vs_bc_latency"] = round(ms["laof_lafp"] / ms["laof_bc"], 2)
    plot_normalised_returns(rows, out_root / "returns.png",
                            f"{TASK}, hard distractors, 1 % labels: return / BC on all labels")
    result["targets"] = {
        "lafp_ge_laof_bc": result["ret_laof_lafp"] >= result["ret_laof_bc"],
        "laof_bc_ge_lapo_bc": result["ret_laof_bc"] >= result["ret_lapo_bc"],
        "ms_lafp_lt_2x_ms_bc": result["ms_lafp"] < 2 * result["ms_bc"],
    }
    result["plot"] = str(out_root / "returns.png")
    result["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
