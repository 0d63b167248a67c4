"""Imitation from video with 1 % action labels: do latent policies beat BC on the labels? Five seeds, each with
its own dataset, bootstrap intervals and Holm-adjusted permutation tests.

    python benchmarks/bench_imitation.py [--quick] [--level laom] [--seeds 5] [--methods ...]

On cheetah-run at the benchmark's distractor level, seed s trains on data seed s's dataset of the latent-quality
study (``bench_latent_quality.dataset``: 32 training episodes of 250 steps at action repeat 4 by the task's
expert, 80 labelled transitions = 1 %), with the same encoder, budget (the ``quick`` imitation preset) and
labels for every method:

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

The latent BC rows choose their decoder on the ``val`` episodes (ImitationConfig's ``decoder`` "val", bc's default:
the IDM-latent decoder or the one fit on the policy's own outputs, whichever returns more there; ``decoder_<method>``
counts the choices over seeds). Variant rows (:data:`VARIANTS`: ``laof_bc_idm`` / ``laof_bc_sample``, latent BC on
LAOF with one decoder mode fixed) run only when ``--methods`` names them; they are not in the default plan.

What seed s uses: its dataset (``datasets[s]``), the latent-quality study's model of seed s on it
(``bench_latent_quality.lam_run_dir``: ``lapo``, LAOF at the study's default flow tier ``laof_<tier>`` and
``laof_action_1pct``; trained there if missing) and imitation seed s. The big-data BC rows (``bc_all_128`` /
``bc_all_512``) keep their one big dataset (data seed 0; no flow): their seeds vary training only. Each policy
is evaluated on the pixel env (``eval_backend`` auto: dm_control at action repeat 4) with the data's distractors
(``ret_*``) and with held-out background
videos (``ret_heldout_*``) over eval_seeds x eval_episodes episodes. Each seed's returns are divided by its own
dataset's mean training return (the expert's, with its action noise; ``data_returns`` per seed, ``data_return``
their mean; a big-data row by its dataset's), so ``ret_bc_all_512`` is ``ret_bc_all_vs_data``; each figure is
the mean over seeds with its 95 % bootstrap interval (``rl_laof.stats``; ``_lo`` / ``_hi``; per seed
``_seeds``). ``action_mse_*``: the policy's action MSE on the held-out episodes over the mean-action MSE.
``spread_*``: the per-dimension std of the actions the policy executed on its own states (the data's backgrounds'
evaluation episodes), averaged, over the same of the data's actions (0: one action whatever the state;
``rl_laof.imitation.evaluation.spread_ratio``). ``ms_bc`` / ``ms_lafp``: median ms per action (one
observation, policy + decoder) of laof_bc / laof_lafp (seed 0), measured here, interleaved. ``p_<a>_vs_<b>``:
one-sided exact permutation test over seeds (unpaired) that ret_a > ret_b, Holm-adjusted across the three
claims (``p_raw_*`` unadjusted).

Targets (``targets``): ret_laof_bc_lo > ret_lapo_bc_hi; ret_laof_bc_lo > ret_bc_labels_hi; spread_laof_bc >= 0.7;
ret_laof_lafp >= 0.5 x ret_bc_all; ms_lafp < 2 x ms_bc; and ret_bc_all_vs_data >= 0.6. Runs go seed-major (every
method of seed 0, then seed 1, ...: a stopped run leaves whole seeds) into ``runs/bench/imitation/full-lq/<level>``
and resume run by run; each finished run also leaves a small record in ``benchmarks/results/imitation_runs/<level>/``
(committed: a later session on a fresh clone, without ``runs/``, continues where this one stopped, and a seed whose
every run has its record needs neither its dataset nor its models again), as do the random policy's returns and the
latencies. A full run (every default method, >= 5 seeds) writes ``benchmarks/results/imitation.json``,
any other non-smoke run ``imitation_partial.json`` (``--methods`` re-runs those rows and keeps the others' per-seed
values from the committed JSON, ``rows_kept``, when it was made on the same datasets); the last line is one JSON
object.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import bench_latent_quality as lq  # noqa: E402
import numpy as np  # noqa: E402
from bench_args import alone, recorded, seed_count, subset, write_result  # noqa: E402

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
from rl_laof.presets import from_preset  # noqa: E402
from rl_laof.runs import dataset_dir, read_json, runs_root, write_json  # noqa: E402

TASK = "cheetah-run"
#: the default rows: name -> ImitationConfig fields (a latent one's latents: the study model of :data:`LAMS`)
METHODS: dict[str, dict] = {
    "bc_all": dict(latent="none", labels=1.0),
    "bc_all_128": dict(latent="none", labels=1.0),
    "bc_all_512": dict(latent="none", labels=1.0),
    "bc_labels": dict(latent="none"),
    "idm_bc": dict(latent="none", relabel="idm"),
    "lapo_bc": dict(latent="lapo", policy="bc"),
    "laof_bc": dict(latent="laof", policy="bc"),
    "laof_lafp": dict(latent="laof", policy="lafp"),
    "laof_action_lafp": dict(latent="laof-action", policy="lafp"),
}
#: rows run only by name (``--methods``), never in the default plan: one field changed against a default row
VARIANTS: dict[str, dict] = {
    "laof_bc_idm": dict(latent="laof", policy="bc", decoder="idm"),
    "laof_bc_sample": dict(latent="laof", policy="bc", decoder="sample"),
}
ALL_METHODS = {**METHODS, **VARIANTS}
#: ImitationConfig.latent -> the latent-quality study's method whose models give the latents ("laof": its tier)
LAMS = {"lapo": "lapo", "laof": "laof", "laof-action": "laof_action_1pct"}
BIG_DATA_METHODS = {"bc_all_128": 128, "bc_all_512": 512}  # method -> training episodes of its big_dataset()
BC_ALL_TARGET = "bc_all_512"  # the row that decides "BC on all labels reaches 0.6 x the data"
DEFAULT_SEEDS = 5
QUICK = dict(steps=400, decoder_steps=400, idm_steps=400, eval_episodes=4, eval_seeds=1)
RESULTS = Path(__file__).resolve().parent / "results" / "imitation.json"
RECORDS = RESULTS.parent / "imitation_runs"  # <level>/<method>-s<seed>.json: one finished run each (committed)
BACKGROUNDS = (("train", "ret"), ("eval", "ret_heldout"))
#: one-sided claims over seeds (ret of the first > ret of the second), one Holm family
CLAIMS = {"laof_bc_vs_lapo_bc": ("laof_bc", "lapo_bc"), "laof_bc_vs_bc_labels": ("laof_bc", "bc_labels"),
          "laof_lafp_vs_laof_bc": ("laof_lafp", "laof_bc")}


def cell(level: str) -> str:
    """The latent-quality cell of this benchmark's task at distractor ``level`` (its datasets and models)."""
    for name, (task, cell_level, _) in lq.CELLS.items():
        if task == TASK and cell_level == level:
            return name
    raise ValueError(f"no latent-quality cell of {TASK} at level {level!r} (bench_latent_quality.CELLS): "
                     f"use one of {sorted(lv for t, lv, _ in lq.CELLS.values() if t == TASK)}")


def dataset(level: str, seed: int, quick: bool, progress: bool = True) -> Path:
    """Seed ``seed``'s dataset: the latent-quality study's of data seed ``seed`` (collected if missing)."""
    return lq.dataset(cell(level), seed, quick, progress)


def big_dataset(level: str, quick: bool, episodes: int, progress: bool = True) -> Path:
    """The big-data BC rows' one dataset with ``episodes`` training episodes (data seed 0, the quick collection
    preset at ``level``), collected if missing; no flow (only BC uses it). The smoke run: seed 0's small one."""
    from rl_laof import pipeline

    if quick:
        return dataset(level, 0, quick, progress)
    cfg = from_preset(CollectConfig, COLLECT_PRESETS, "quick", task=TASK, distractors=DistractorConfig.parse(level),
                      episodes=episodes)
    path = dataset_dir(TASK, f"{level}-ar{cfg.action_repeat}-{episodes}ep-s{cfg.seed}")
    pipeline.dataset(cfg, path, progress=progress)
    return path


def training_data(name: str, seed: int, level: str, quick: bool, progress: bool = True) -> Path:
    """The dataset method ``name`` trains on at ``seed``: the big one of a big-data row, else seed's own."""
    if name in BIG_DATA_METHODS:
        return big_dataset(level, quick, BIG_DATA_METHODS[name], progress)
    return dataset(level, seed, quick, progress)


def mean_return(data: Path) -> float:
    """The mean return of a dataset's training episodes (what its seed's returns are divided by)."""
    return float(np.mean([e.ret for e in VideoDataset(data).episodes["train"]]))


def base_config(quick: bool) -> ImitationConfig:
    return from_preset(ImitationConfig, IMITATION_PRESETS, "quick", **(QUICK if quick else {}))


def lam_dir(name: str, seed: int, level: str, quick: bool, progress: bool = True) -> Path | None:
    """The latent model method ``name`` imitates at ``seed`` (None for the methods on actions)."""
    latent = ALL_METHODS[name]["latent"]
    return None if latent == "none" else lq.lam_run_dir(cell(level), LAMS[latent], seed, quick, progress)


def method_config(name: str, seed: int, level: str, quick: bool, progress: bool = True) -> ImitationConfig:
    """Method ``name``'s imitation config at ``seed`` (its latent model found or trained first)."""
    lam = lam_dir(name, seed, level, quick, progress)
    return dataclasses.replace(base_config(quick), lam_run=None if lam is None else str(lam), normalise=False,
                               seed=seed, **ALL_METHODS[name])


def run_root(level: str, quick: bool) -> Path:
    return runs_root() / "bench" / "imitation" / ("quick-lq" if quick else "full-lq") / level


def run_dir(name: str, seed: int, level: str = "laom", quick: bool = False) -> Path:
    """Where method ``name``'s imitation run of seed ``seed`` lives (``bench_train``'s PPO seed s acts around
    seed s's)."""
    return run_root(level, quick) / f"{name}-s{seed}"


def imitation_run(name: str, seed: int, level: str = "laom", quick: bool = False, progress: bool = True) -> dict:
    """The report of method ``name``'s imitation run of seed ``seed`` (trained, resumed, or found finished)."""
    cfg = method_config(name, seed, level, quick, progress)
    if progress:
        print(f"== {name} seed {seed}: {cfg.tag}", flush=True)
    return imitate(cfg, training_data(name, seed, level, quick, progress), run_dir(name, seed, level, quick),
                   progress=progress)


def records_dir(level: str, quick: bool) -> Path:
    """Where the runs' records live: committed for a full run, beside the runs for a smoke run."""
    return run_root(level, quick) / "records" if quick else RECORDS / level


def record_config(name: str, seed: int, quick: bool) -> dict:
    """What a record must match to stand for method ``name``'s run of ``seed``: its imitation config (the latent
    model's folder left out: a fresh clone trains it again elsewhere) and the latent-quality config of that model."""
    cfg = dataclasses.replace(base_config(quick), lam_run=None, normalise=False, seed=seed, **ALL_METHODS[name])
    latent = ALL_METHODS[name]["latent"]
    lam = None if latent == "none" else lq.lam_config(lq_method(latent), seed, quick)
    return json.loads(json.dumps({"imitation": cfg.to_dict(), "lam": None if lam is None else lam.to_dict()}))


def lq_method(latent: str) -> str:
    """The latent-quality study's method name of an ImitationConfig latent ("laof": ``laof_<DEFAULT_TIER>``)."""
    name = LAMS[latent]
    return f"laof_{lq.DEFAULT_TIER}" if name == "laof" else name


def record(rep: dict, data: Path, data_return: float) -> dict:
    """What the table reads of one finished run (``rep``: its report), with the return it is normalised by."""
    return {"dataset": str(data), "data_return": round(float(data_return), 3), "lam_run": rep["config"].get("lam_run"),
            "decoder_mode": rep.get("decoder_mode"),
            "returns": {bg: round(float(rep["returns"][bg]["mean"]), 3) for bg, _ in BACKGROUNDS},
            "action_mse": rep["action_mse"]["eval"], "spread": rep.get("spread"),
            "ms_per_action": rep.get("ms_per_action"), "seconds": rep.get("seconds"), "run_dir": rep["run_dir"]}


def method_record(name: str, seed: int, level: str, quick: bool, progress: bool, data: Callable[[], Path],
                  data_return: Callable[[Path], float]) -> dict:
    """Method ``name``'s record at ``seed`` (``bench_args.recorded``): the committed one, or its run trained
    (resumed, found), evaluated and recorded. ``data`` gives the seed's dataset (collected only when a run is
    needed); ``data_return`` the return the run is normalised by."""
    def make() -> dict:
        rep = imitation_run(name, seed, level, quick, progress)
        if rep.get("spread") is None:  # a report made before reports kept it: measured now, the same protocol
            base = base_config(quick)
            rep = {**rep, "spread": run_spread(rep["run_dir"], base.eval_seeds, base.eval_episodes)}
        path = training_data(name, seed, level, quick, progress) if name in BIG_DATA_METHODS else data()
        return {"method": name, "seed": seed, "level": level, **record(rep, path, data_return(path))}

    return recorded(records_dir(level, quick) / f"{name}-s{seed}.json", record_config(name, seed, quick), make)


def random_returns(data: Callable[[], Path], cfg: ImitationConfig, root: Path, progress: bool) -> dict:
    """Returns of uniform random actions under the same evaluation protocol (cached in ``root``, the records'
    folder; ``data`` gives the dataset whose env it runs, only when not cached)."""
    path = root / f"random-{cfg.eval_backend}-{cfg.eval_seeds}x{cfg.eval_episodes}.json"  # before eval_backend: EnvPool
    if path.exists():
        return read_json(path)
    ds = VideoDataset(data())
    rng = np.random.default_rng(0)
    out = policy_returns(lambda obs: rng.uniform(-1, 1, (len(obs), ds.action_dim)), **ds.env_settings,
                         frame_stack=cfg.frame_stack, backgrounds=cfg.eval_backgrounds, seeds=cfg.eval_seeds,
                         episodes=cfg.eval_episodes, progress=progress, backend=cfg.eval_backend)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, out)
    return out


LATENCY_METHODS = ("laof_bc", "laof_lafp", "bc_labels")


def latencies(records0: dict[str, dict], frame_stack: int, root: Path) -> dict[str, float]:
    """Median ms per action of laof_bc, laof_lafp and bc_labels (seed 0), interleaved in one process: measured
    where seed 0's three policies are on disk, and kept in ``root``/latency.json for a fresh clone whose runs
    are gone (the figure of the same three records: their run times say which)."""
    recs = {k: records0[k] for k in LATENCY_METHODS if k in records0}
    key = {k: rec.get("seconds") for k, rec in recs.items()}
    path = root / "latency.json"
    on_disk = all((Path(rec["run_dir"]) / "report.json").exists() for rec in recs.values())
    if not recs:
        return {}
    if not on_disk or len(recs) < len(LATENCY_METHODS):
        cached = read_json(path) if path.exists() else {}
        return cached.get("ms", {}) if cached.get("records") == key else {}
    loaded = {k: load_latent_policy(rec["run_dir"]) for k, rec in recs.items()}
    size = next(iter(loaded.values()))[1]["image_size"]
    shape = (3 * frame_stack, size, size)
    times: dict[str, list[float]] = {k: [] for k in loaded}
    for _ in range(5):
        for k, (agent, _) in loaded.items():
            times[k].append(latency_ms(agent, shape, 100))
    ms = {k: float(np.median(v)) for k, v in times.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, {"records": key, "ms": ms})
    return ms


def one_sided_claims(values: dict[str, list[float]], pairs: dict[str, tuple[str, str]]) -> dict[str, float]:
    """``p_<claim>``: the one-sided exact permutation test over seeds (unpaired) that mean(values[a]) >
    mean(values[b]) for each claim (a, b) of ``pairs`` with two or more seeds on both sides, Holm-adjusted across
    those claims; ``p_raw_<claim>`` unadjusted. (Paired by dataset, 5 seeds could not go below p = 1/32.)"""
    raw = {k: stats.permutation_test(values[a], values[b], alternative="greater")
           for k, (a, b) in pairs.items() if a in values and b in values and min(len(values[a]), len(values[b])) > 1}
    adjusted = stats.holm(raw) if raw else {}
    out: dict[str, float] = {}
    for k in raw:
        out[f"p_{k}"] = float(f"{adjusted[k]:.3g}")
        out[f"p_raw_{k}"] = float(f"{raw[k]:.3g}")
    return out


def previous_result() -> dict:
    """The committed imitation.json (empty if there is none)."""
    return read_json(RESULTS) if RESULTS.exists() else {}


def same_datasets(a: list[str] | None, b: list[str]) -> bool:
    """Whether two runs' per-seed datasets are the same (by their task and name; the runs root may differ)."""
    return a is not None and [Path(p).parts[-2:] for p in a] == [Path(p).parts[-2:] for p in b]


def kept_rows(old: dict, methods: list[str], args: argparse.Namespace, datasets: list[str], seeds: int
              ) -> dict[str, dict[str, list]]:
    """The per-seed values of the methods this run does not re-run, from the committed JSON, so that re-running
    some rows (``--methods``: e.g. the latent rows after the default flow tier changed) rewrites the table
    without re-running the rest. Only from ``old`` (the committed JSON) of the same per-seed datasets, level
    and seeds: a JSON of other data (the one-dataset rows before issue 31, with no ``datasets``) gives none."""
    if args.quick or set(METHODS) <= set(methods) or not old:
        return {}
    if not same_datasets(old.get("datasets"), datasets) or (old.get("level"), old.get("seeds")) != (args.level,
                                                                                                   seeds):
        print(f"{RESULTS.name} was made on {old.get('datasets') or old.get('dataset')} (level {old.get('level')}, "
              f"{old.get('seeds')} seeds), not {datasets} ({args.level}, {seeds}): none of its rows is kept",
              flush=True)
        return {}
    keys = ("ret", "raw_ret", "ret_heldout", "raw_ret_heldout", "action_mse", "spread")
    return {name: {k: old[f"{k}_{name}_seeds"] for k in keys if f"{k}_{name}_seeds" in old}
            for name in ALL_METHODS if name not in methods and f"ret_{name}_seeds" in old}


def targets(result: dict, summary: dict) -> dict:
    """The issue's targets, each True / False (None where a figure, or an interval, is missing)."""
    def lo_gt_hi(a: str, b: str) -> bool | None:
        if f"ret_{a}" not in summary or f"ret_{b}" not in summary:
            return None
        lo, hi = summary[f"ret_{a}"]["lo"], summary[f"ret_{b}"]["hi"]
        return bool(lo > hi) if np.isfinite(lo) and np.isfinite(hi) else None  # one seed: no interval

    def both(a: str, b: str) -> bool:
        return a in result and b in result

    return {
        "ret_laof_bc_lo_gt_ret_lapo_bc_hi": lo_gt_hi("laof_bc", "lapo_bc"),
        "ret_laof_bc_lo_gt_ret_bc_labels_hi": lo_gt_hi("laof_bc", "bc_labels"),
        "spread_laof_bc_ge_0.7": result["spread_laof_bc"] >= 0.7 if "spread_laof_bc" in result else None,
        "ret_laof_lafp_ge_0.5_ret_bc_all": (result["ret_laof_lafp"] >= 0.5 * result["ret_bc_all"]
                                            if both("ret_laof_lafp", "ret_bc_all") else None),
        "ms_lafp_lt_2x_ms_bc": result["ms_lafp"] < 2 * result["ms_bc"] if both("ms_lafp", "ms_bc") else None,
        "ret_bc_all_vs_data_ge_0.6": (result["ret_bc_all_vs_data"] >= 0.6 if "ret_bc_all_vs_data" in result
                                      else None),
    }


def main() -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: tiny data, 400 training steps per stage, 4 evaluation episodes, 2 seeds")
    p.add_argument("--level", default="laom", help="distractor level of the data and the evaluation")
    p.add_argument("--seeds", type=int, default=None,
                   help=f"seeds per method, each with its own dataset (default {DEFAULT_SEEDS}; --quick 2)")
    p.add_argument("--methods", default=",".join(METHODS),
                   help="comma-separated, from " + ", ".join(METHODS) + "; variants (only by name): "
                        + ", ".join(VARIANTS))
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args()
    methods = subset(p, args.methods, ALL_METHODS, "methods")
    seeds = seed_count(p, DEFAULT_SEEDS if args.seeds is None and not args.quick else args.seeds, args.quick)
    try:
        cell(args.level)
    except ValueError as exc:
        p.error(str(exc))
    progress = not args.no_progress
    t0 = time.perf_counter()
    root = run_root(args.level, args.quick)
    base = base_config(args.quick)
    records = records_dir(args.level, args.quick)
    big: dict[str, str] = {}  # big-data method -> its dataset
    big_return: dict[str, float] = {}  # ... and that dataset's return
    datasets: list[str] = []
    data_returns: list[float] = []
    lam_runs: dict[str, list[str]] = {}
    per_seed: dict[str, dict[str, list[float]]] = {}
    decoders: dict[str, list[str]] = {}  # method -> the decoder mode of each seed's run
    records0: dict[str, dict] = {}
    for seed in range(seeds):  # seed-major: a stopped run leaves whole seeds
        found: dict[str, Path] = {}

        def data(seed: int = seed, found: dict = found) -> Path:  # the seed's dataset, collected only if needed
            if "path" not in found:
                found["path"] = dataset(args.level, seed, args.quick, progress)
            return found["path"]

        recs = {name: method_record(name, seed, args.level, args.quick, progress, data, mean_return)
                for name in methods}
        own = [r for n, r in recs.items() if n not in BIG_DATA_METHODS]
        if own:
            datasets.append(own[0]["dataset"])
            data_returns.append(own[0]["data_return"])
        else:  # only big-data rows: the seed's own dataset is still what the random row and the JSON name
            datasets.append(str(data()))
            data_returns.append(mean_return(data()))
        for name, rec in recs.items():
            if rec.get("lam_run") is not None:
                lam_runs.setdefault(LAMS[ALL_METHODS[name]["latent"]], []).append(str(rec["lam_run"]))
            if name in BIG_DATA_METHODS:
                big[name], big_return[name] = rec["dataset"], rec["data_return"]
            if seed == 0:
                records0[name] = rec
            row = per_seed.setdefault(name, {})
            for bg, key in BACKGROUNDS:
                row.setdefault(key, []).append(rec["returns"][bg] / rec["data_return"])
                row.setdefault(f"raw_{key}", []).append(rec["returns"][bg])
            row.setdefault("action_mse", []).append(rec["action_mse"])
            row.setdefault("spread", []).append(rec["spread"])
            if rec.get("decoder_mode") is not None:  # reports before issue 31's val choice do not name it
                decoders.setdefault(name, []).append(rec["decoder_mode"])
    data_return = float(np.mean(data_returns))
    result: dict = {"task": TASK, "quick": args.quick, "level": args.level, "cell": cell(args.level),
                    "datasets": datasets, "seeds": seeds, "data_returns": [round(r, 1) for r in data_returns],
                    "data_return": round(data_return, 1), "big_datasets": dict(big),
                    "big_data_returns": {n: round(r, 1) for n, r in big_return.items()},
                    "lam_runs": {k: sorted(set(v)) for k, v in lam_runs.items()},
                    "episodes_per_background": base.eval_seeds * base.eval_episodes}
    previous = previous_result()
    kept = kept_rows(previous, methods, args, datasets, seeds)
    per_seed.update(kept)
    if kept:
        old = previous.get("data_returns", [])
        if len(old) != len(data_returns) or any(abs(a - b) > 0.1 for a, b in zip(old, result["data_returns"],
                                                                                   strict=False)):
            raise SystemExit(f"the datasets' returns are {result['data_returns']}, the kept rows were normalised by "
                             f"{old}: the data changed, run every method")
        for key in ("big_datasets", "big_data_returns"):
            result[key] = {**{n: v for n, v in previous.get(key, {}).items() if n in kept}, **result[key]}
    result["rows_rerun"] = methods
    if kept:
        result["rows_kept"] = {n: "per-seed values of the previous imitation.json" for n in kept}
    result["lam_flow_tier"] = lq.DEFAULT_TIER
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
    for name, modes in decoders.items():
        result[f"decoder_{name}"] = {m: modes.count(m) for m in sorted(set(modes))}
        result[f"decoder_{name}_seeds"] = modes
    result.update(one_sided_claims({name: row["ret"] for name, row in per_seed.items() if "ret" in row}, CLAIMS))
    rand = random_returns(lambda: dataset(args.level, 0, args.quick, progress), base, records, progress)
    for bg, key in BACKGROUNDS:
        result[f"{key}_random"] = round(rand[bg]["mean"] / data_return, 3)
        result[f"raw_{key}_random"] = round(rand[bg]["mean"], 1)
    if BC_ALL_TARGET in per_seed:
        result["ret_bc_all_vs_data"] = result[f"ret_{BC_ALL_TARGET}"]
    ms = latencies(records0, base.frame_stack, records)
    if "laof_bc" in ms and "laof_lafp" in ms:
        result["ms_bc"], result["ms_lafp"] = round(ms["laof_bc"], 3), round(ms["laof_lafp"], 3)
        result["lafp_vs_bc_latency"] = round(ms["laof_lafp"] / ms["laof_bc"], 2)
    if "bc_labels" in ms:
        result["ms_bc_pixels"] = round(ms["bc_labels"], 3)
    for key in ("ms_bc", "ms_lafp", "lafp_vs_bc_latency", "ms_bc_pixels"):  # the kept rows' latencies
        if key not in result and kept and key in previous:
            result[key] = previous[key]
    result["targets"] = targets(result, summary)
    rows = {name: {bg: {"mean": summary[f"{key}_{name}"]["mean"],
                        "std": float(np.std(per_seed[name][key]))} for bg, key in BACKGROUNDS}
            for name in per_seed}
    rows["random"] = {bg: {"mean": rand[bg]["mean"] / data_return, "std": 0.0} for bg, _ in BACKGROUNDS}
    full = not args.quick and set(METHODS) <= set(per_seed) and seeds >= DEFAULT_SEEDS
    plot = (RESULTS.parent / ("imitation_returns.png" if full else "imitation_partial_returns.png")
            if not args.quick else root / "returns.png")
    plot_normalised_returns(rows, plot, f"{TASK}, {args.level} distractors, 1 % labels: return / data's return",
                            ylabel="return / data's return")
    result["plot"] = os.path.relpath(plot, RESULTS.parents[2])  # repo-relative: the JSON is committed
    result["seconds"] = round(time.perf_counter() - t0, 1)
    if not args.quick:
        write_result("imitation" if full else "imitation_partial", result)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    alone(main)
