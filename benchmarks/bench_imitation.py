"""Imitation from video with 1 % action labels: do latent policies beat BC on the labels? Three seeds,
bootstrap intervals.

    python benchmarks/bench_imitation.py [--quick] [--level laom] [--seeds 3]

On cheetah-run at the benchmark's distractor level (``bench_latent_quality``'s dataset: 32 training
episodes of 250 steps at action repeat 4, 80 labelled transitions = 1 %), with the same encoder, budget
(the ``quick`` imitation preset) and labels:

  bc_all           BC on every transition with its true action (the ceiling; not a 1 % method)
  bc_all_128       the same on a 4x bigger dataset (128 training episodes, same expert, level and preset)
  bc_all_512       the same on 512 training episodes: ``ret_bc_all_vs_data``, the issue's "BC on all labels
                   reaches 0.6 x the data" (study_bc measured that 32 episodes cap it near 0.3 whatever the
                   budget; the three rows show how the same preset scales with data)
  bc_labels        BC on the 80 labelled transitions only
  idm_bc           a pixel IDM trained on the labels relabels every transition, then BC
  lapo_bc          latent BC on LAPO's latents, decoder trained on the labels (IDM-latent mode)
  laof_bc          latent BC on LAOF's latents, the same
  laof_lafp        LAFP: flow-matching policy on LAOF's latents, decoder by inference-time interpolation
  laof_action_lafp LAFP on LAOF-Action's latents (action-decoder regularisation in pretraining)
  random           uniform random actions (the floor; no training)

Seed s of a method uses a latent model of seed s on this dataset (the lam stage's defaults at 1000 steps: LAOF on
the library's default flow tier, ``lam_flow_tier`` in the JSON; trained here if missing) and imitation seed s.
Each policy is evaluated on the EnvPool pixel env with the data's distractors (``ret_*``) and with held-out
background videos (``ret_heldout_*``) over eval_seeds x eval_episodes episodes. Returns
are divided by the data's mean return (the expert's, with its action noise), so ``ret_bc_all_512`` is
``ret_bc_all_vs_data``; each figure is the mean over seeds with its 95 % bootstrap interval
(``rl_laof.stats``). ``action_mse_*``: the policy's action MSE on the held-out episodes over the
mean-action MSE. ``spread_*``: the per-dimension std of the actions the policy executed on its own states (the
data's backgrounds' evaluation episodes), averaged, over the same of the data's actions (0: one action
whatever the state; ``rl_laof.imitation.evaluation.spread_ratio``). ``ms_bc`` / ``ms_lafp``: median ms per
action (one observation, policy + decoder) of laof_bc / laof_lafp (seed 0), measured here, interleaved.
Targets: ret_bc_all_512 >= 0.6; ret_laof_lafp >= ret_laof_bc >= ret_lapo_bc, decided only where the intervals
separate; ms_lafp < 2 x ms_bc. Writes ``benchmarks/results/imitation.json`` (a full run; ``--methods`` re-runs
those rows and keeps the others' per-seed values from the committed JSON, ``rows_kept``); the last line is one
JSON object.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

import numpy as np  # noqa: E402
from bench_args import seed_count, subset  # noqa: E402

import envs  # noqa: E402,F401  (loads EGL before anything imports envpool)
from envs.config import DistractorConfig  # noqa: E402
from envs.rollout import policy_returns  # noqa: E402
from rl_laof import stats  # noqa: E402
from rl_laof.data.config import COLLECT_PRESETS, CollectConfig  # noqa: E402
from rl_laof.data.dataset import VideoDataset  # noqa: E402
from rl_laof.imitation.config import IMITATION_PRESETS, ImitationConfig  # noqa: E402
from rl_laof.imitation.evaluation import latency_ms, plot_normalised_returns, run_spread  # noqa: E402
from rl_laof.imitation.policy import load_latent_policy  # noqa: E402
from rl_laof.imitation.training import imitate  # noqa: E402
from rl_laof.lam.config import LAMConfig  # noqa: E402
from rl_laof.presets import from_preset  # noqa: E402
from rl_laof.runs import atomic_path, dataset_dir, read_json, runs_root, write_json  # noqa: E402

TASK = "cheetah-run"
METHODS = {  # name -> (ImitationConfig fields, latent-quality run providing the latents)
    "bc_all": (dict(latent="none", labels=1.0), None),
    "bc_all_128": (dict(latent="none", labels=1.0), None),
    "bc_all_512": (dict(latent="none", labels=1.0), None),
    "bc_labels": (dict(latent="none"), None),
    "idm_bc": (dict(latent="none", relabel="idm"), None),
    "lapo_bc": (dict(latent="lapo", policy="bc"), "lapo"),
    "laof_bc": (dict(latent="laof", policy="bc"), "laof"),
    "laof_lafp": (dict(latent="laof", policy="lafp"), "laof"),
    "laof_action_lafp": (dict(latent="laof-action", policy="lafp"), "laof_action_1pct"),
}
BIG_DATA_METHODS = {"bc_all_128": 128, "bc_all_512": 512}  # method -> training episodes of its big_dataset()
BC_ALL_TARGET = "bc_all_512"  # the row that decides "BC on all labels reaches 0.6 x the data"
QUICK = dict(steps=400, decoder_steps=400, idm_steps=400, eval_episodes=4, eval_seeds=1)
RESULTS = Path(__file__).resolve().parent / "results" / "imitation.json"
BACKGROUNDS = (("train", "ret"), ("eval", "ret_heldout"))


#: the latent models the policies stand on: the lam stage's defaults at the 1000-step budget this benchmark's figures
#: were measured with (issue 18), before the latent-quality study moved to per-seed datasets (issue 30)
LAM_FIELDS = {"lapo": dict(method="lapo"), "laof": dict(method="laof"),
              "laof_action_1pct": dict(method="laof-action", labels=0.01)}
LAM_BUDGET = dict(steps=1000, eval_every=250, checkpoint_every=500, mlp_probe_steps=500)
LAM_QUICK_BUDGET = dict(steps=60, eval_every=30, checkpoint_every=30, mlp_probe_steps=50, eval_windows=256)


def dataset(level: str, quick: bool, progress: bool = True) -> Path:
    """The benchmark's dataset at distractor ``level``: the quick collection preset (a smoke run: 8 + 4 + 2
    episodes), with exact flow, collected if missing."""
    from rl_laof import pipeline
    from rl_laof.flow.targets import fill_flow

    size = dict(episodes=8, eval_episodes=4, heldout_bg_episodes=2) if quick else {}
    cfg = from_preset(CollectConfig, COLLECT_PRESETS, "quick", task=TASK, distractors=DistractorConfig.parse(level),
                      **size)
    path = dataset_dir(TASK, cfg.name + ("-smoke" if quick else ""))
    pipeline.dataset(cfg, path, progress=progress)
    fill_flow(path, LAMConfig().flow_method, progress=progress)
    return path


def lam_run(name: str, data, quick: bool, progress: bool = True, seed: int = 0, level: str = "hard") -> dict:
    """The latent action model ``name`` of :data:`LAM_FIELDS` at ``seed`` on ``data`` (trained if missing)."""
    from rl_laof.lam.training import train_lam

    cfg = LAMConfig(seed=seed, **LAM_FIELDS[name], **(LAM_QUICK_BUDGET if quick else LAM_BUDGET))
    tag = f"{name}-{cfg.flow_tier}" if cfg.base == "laof" else name  # each flow tier its own run
    out = runs_root() / "bench" / "imitation-lam" / ("quick" if quick else "full") / level / f"{tag}-s{seed}"
    return train_lam(cfg, data, out, progress=progress)


def big_dataset(level: str, quick: bool, episodes: int, progress: bool = True) -> Path:
    """The benchmark's dataset with ``episodes`` training episodes (the smoke run: its own small one),
    collected if missing; no flow (only BC uses it)."""
    from rl_laof import pipeline

    if quick:
        return dataset(level, quick, progress)
    cfg = from_preset(CollectConfig, COLLECT_PRESETS, "quick", task=TASK, distractors=DistractorConfig.parse(level),
                      episodes=episodes)
    path = dataset_dir(TASK, f"{level}-ar{cfg.action_repeat}-{episodes}ep-s{cfg.seed}")
    pipeline.dataset(cfg, path, progress=progress)
    return path


def random_returns(data, cfg: ImitationConfig, root: Path, progress: bool) -> dict:
    """Returns of uniform random actions under the same evaluation protocol (cached beside the runs)."""
    path = root / f"random-{cfg.eval_seeds}x{cfg.eval_episodes}.json"
    if path.exists():
        return read_json(path)
    ds = VideoDataset(data)
    rng = np.random.default_rng(0)
    out = policy_returns(lambda obs: rng.uniform(-1, 1, (len(obs), ds.action_dim)), **ds.env_settings,
                         frame_stack=cfg.frame_stack, backgrounds=cfg.eval_backgrounds, seeds=cfg.eval_seeds,
                         episodes=cfg.eval_episodes, progress=progress)
    write_json(path, out)
    return out


def latencies(reports: dict[str, dict], frame_stack: int) -> dict[str, float]:
    """Median ms per action of laof_bc, laof_lafp and bc_labels (seed 0), interleaved in this process."""
    loaded = {k: load_latent_policy(reports[k]["run_dir"]) for k in ("laof_bc", "laof_lafp", "bc_labels")
              if k in reports}
    if not loaded:
        return {}
    size = next(iter(loaded.values()))[1]["image_size"]
    shape = (3 * frame_stack, size, size)
    times: dict[str, list[float]] = {k: [] for k in loaded}
    for _ in range(5):
        for k, (agent, _) in loaded.items():
            times[k].append(latency_ms(agent, shape, 100))
    return {k: float(np.median(v)) for k, v in times.items()}


def previous_result() -> dict:
    """The committed imitation.json (empty if there is none)."""
    return read_json(RESULTS) if RESULTS.exists() else {}


def kept_rows(old: dict, methods: list[str], args: argparse.Namespace, data: Path, seeds: int
              ) -> dict[str, dict[str, list]]:
    """The per-seed values of the methods this run does not re-run, from the committed JSON, so that re-running
    some rows (``--methods``: e.g. the latent rows after the default flow tier changed) rewrites the table
    without re-running the rest. Only from ``old`` (the committed JSON) of the same dataset, level and seeds."""
    if args.quick or set(methods) == set(METHODS) or not old:
        return {}
    same_data = Path(old.get("dataset", "")).parts[-2:] == Path(data).parts[-2:]
    if not same_data or (old.get("level"), old.get("seeds")) != (args.level, seeds):
        raise SystemExit(f"--methods re-runs some rows of {RESULTS.name}, which was made on {old.get('dataset')} "
                         f"(level {old.get('level')}, {old.get('seeds')} seeds), not {data} ({args.level}, {seeds}): "
                         "run every method")
    keys = ("ret", "raw_ret", "ret_heldout", "raw_ret_heldout", "action_mse", "spread")  # spread: since issue 31
    return {name: {k: old[f"{k}_{name}_seeds"] for k in keys if f"{k}_{name}_seeds" in old}
            for name in METHODS if name not in methods}


def main() -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: tiny data, 400 training steps per stage, 4 evaluation episodes, 2 seeds")
    p.add_argument("--level", default="laom", help="distractor level of the data and the evaluation")
    p.add_argument("--seeds", type=int, default=None, help="seeds per method (default 3; --quick 2)")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated, from " + ", ".join(METHODS))
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args()
    methods = subset(p, args.methods, METHODS, "methods")
    seeds = seed_count(p, args.seeds, args.quick)
    progress = not args.no_progress
    t0 = time.perf_counter()
    data = dataset(args.level, args.quick, progress)
    ds = VideoDataset(data)
    data_return = float(np.mean([e.ret for e in ds.episodes["train"]]))
    big = {n: big_dataset(args.level, args.quick, BIG_DATA_METHODS[n], progress)
           for n in methods if n in BIG_DATA_METHODS}
    big_return = {n: float(np.mean([e.ret for e in VideoDataset(path).episodes["train"]])) for n, path in big.items()}
    root = runs_root() / "bench" / "imitation" / ("quick" if args.quick else "full") / args.level
    base = from_preset(ImitationConfig, IMITATION_PRESETS, "quick", **(QUICK if args.quick else {}))
    result: dict = {"task": TASK, "quick": args.quick, "level": args.level, "dataset": str(data), "seeds": seeds,
                    "data_return": round(data_return, 1), "big_datasets": {n: str(path) for n, path in big.items()},
                    "big_data_returns": {n: round(r, 1) for n, r in big_return.items()},
                    "episodes_per_background": base.eval_seeds * base.eval_episodes}
    per_seed: dict[str, dict[str, list[float]]] = {}
    reports0: dict[str, dict] = {}
    for name in methods:
        fields, lam_name = METHODS[name]
        for seed in range(seeds):
            lam = lam_run(lam_name, data, args.quick, progress, seed=seed, level=args.level)["run_dir"] \
                if lam_name else None
            cfg = dataclasses.replace(base, lam_run=lam, normalise=False, seed=seed, **fields)
            if progress:
                print(f"== {name} seed {seed}: {cfg.tag}", flush=True)
            rep = imitate(cfg, big.get(name, data), root / f"{name}-s{seed}", progress=progress)
            if seed == 0:
                reports0[name] = rep
            row = per_seed.setdefault(name, {})
            for bg, key in BACKGROUNDS:
                row.setdefault(key, []).append(rep["returns"][bg]["mean"] / big_return.get(name, data_return))
                row.setdefault(f"raw_{key}", []).append(rep["returns"][bg]["mean"])
            row.setdefault("action_mse", []).append(rep["action_mse"]["eval"])
            spread = rep.get("spread")  # a report made before reports kept it: measured now, the same protocol
            if spread is None:
                spread = run_spread(rep["run_dir"], cfg.eval_seeds, cfg.eval_episodes)
            row.setdefault("spread", []).append(spread)
    previous = previous_result()
    kept = kept_rows(previous, methods, args, data, seeds)
    per_seed.update(kept)
    if kept:
        if abs(previous["data_return"] - result["data_return"]) > 0.1:
            raise SystemExit(f"the dataset's return is {result['data_return']}, the kept rows were normalised by "
                             f"{previous['data_return']}: the data changed, run every method")
        for key in ("big_datasets", "big_data_returns"):
            result[key] = {**{n: v for n, v in previous[key].items() if n in kept}, **result[key]}
    result["rows_rerun"] = methods
    if kept:
        result["rows_kept"] = {n: "per-seed values of the previous imitation.json" for n in kept}
    result["lam_flow_tier"] = LAMConfig().flow_tier
    summary: dict[str, dict] = {}
    for name, row in per_seed.items():
        for key, values in row.items():
            s = summary[f"{key}_{name}"] = stats.interval(values)
            digits = 1 if key.startswith("raw_") else 3
            result[f"{key}_{name}"] = round(s["mean"], digits)
            if len(values) > 1:
                result[f"{key}_{name}_lo"] = round(s["lo"], digits)
                result[f"{key}_{name}_hi"] = round(s["hi"], digits)
            result[f"{key}_{name}_seeds"] = [round(v, digits) for v in values]
    rand = random_returns(data, base, root, progress)
    for bg, key in BACKGROUNDS:
        result[f"{key}_random"] = round(rand[bg]["mean"] / data_return, 3)
        result[f"raw_{key}_random"] = round(rand[bg]["mean"], 1)
    if BC_ALL_TARGET in per_seed:
        result["ret_bc_all_vs_data"] = result[f"ret_{BC_ALL_TARGET}"]
    ms = latencies(reports0, base.frame_stack)
    if "laof_bc" in ms and "laof_lafp" in ms:
        result["ms_bc"], result["ms_lafp"] = round(ms["laof_bc"], 3), round(ms["laof_lafp"], 3)
        result["lafp_vs_bc_latency"] = round(ms["laof_lafp"] / ms["laof_bc"], 2)
    if "bc_labels" in ms:
        result["ms_bc_pixels"] = round(ms["bc_labels"], 3)
    for key in ("ms_bc", "ms_lafp", "lafp_vs_bc_latency", "ms_bc_pixels"):  # the kept rows' latencies
        if key not in result and kept and key in previous:
            result[key] = previous[key]

    def verdict(a: str, b: str) -> str | None:
        return stats.verdict(summary[f"ret_{a}"], summary[f"ret_{b}"]) if f"ret_{a}" in summary and \
            f"ret_{b}" in summary else None

    result["targets"] = {
        "bc_all_ge_0.6_data": ((summary[f"ret_{BC_ALL_TARGET}"]["lo"] >= 0.6 if seeds > 1 else
                                result[f"ret_{BC_ALL_TARGET}"] >= 0.6) if f"ret_{BC_ALL_TARGET}" in summary else None),
        "laof_lafp_vs_laof_bc": verdict("laof_lafp", "laof_bc"),
        "laof_bc_vs_lapo_bc": verdict("laof_bc", "lapo_bc"),
        "ms_lafp_lt_2x_ms_bc": result["ms_lafp"] < 2 * result["ms_bc"] if "ms_lafp" in result else None,
    }
    rows = {name: {bg: {"mean": summary[f"{key}_{name}"]["mean"],
                        "std": float(np.std(per_seed[name][key]))} for bg, key in BACKGROUNDS}
            for name in per_seed}
    rows["random"] = {bg: {"mean": rand[bg]["mean"] / data_return, "std": 0.0} for bg, _ in BACKGROUNDS}
    plot = RESULTS.parent / "imitation_returns.png" if not args.quick else root / "returns.png"
    plot_normalised_returns(rows, plot, f"{TASK}, {args.level} distractors, 1 % labels: return / data's return",
                            ylabel="return / data's return")
    result["plot"] = os.path.relpath(plot, RESULTS.parents[2])  # repo-relative: the JSON is committed
    result["seconds"] = round(time.perf_counter() - t0, 1)
    if not args.quick and set(per_seed) == set(METHODS):
        with atomic_path(RESULTS) as tmp:
            Path(tmp).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
