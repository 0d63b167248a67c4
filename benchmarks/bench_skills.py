"""SOF skills vs single-step latent BC / LAFP vs BC on labels (per task and averaged), and PPO over skills vs
LAOF's latent space vs raw-action residuals, over five seeds, each with its own data.

    python benchmarks/bench_skills.py [--quick] [--seeds 5]

Multi-task walker (walker-stand, walker-walk, walker-run), LAOM-level distractors, 64 px, action repeat 2. Seed s uses
only its own runs, built first and cached under ``runs/`` (a rerun resumes them):

1. data seed s: per task, a dataset collected with seed s (16 train + 4 eval + 2 held-out-background episodes of
   250 steps; ``--quick``: 6 + 2 + 0 of 100) by the task's expert (state PPO of seed 0, 1M agent steps;
   ``--quick``: 300k; one expert per task for every seed), exact and RGB-estimated flow, merged into one multi-task
   dataset;
2. the label budget, the same for every method: 2 whole labelled trajectories per task (``traj-2``);
3. SOF (``rl_laof.skills``, quick preset, seed s) on the multi-task video, twice: ``sof`` on the library's default
   flow tier (``SkillsConfig().flow_tier``, ``rgb``: RGB flow, no mask, nothing from the simulator) and
   ``sof_oracle`` on the oracle tier (the simulator's exact flow x agent mask: privileged, the upper bound). Each
   tokenizer is checked on the held-out
   (eval split) windows first: a collapsed one (``collapsed`` in its report: one code, or a code usage below
   ``rl_laof.skills.evaluation.COLLAPSE_FLOOR``) stops the benchmark with an error naming the run and its usage;
4. LAOF (``rl_laof.lam``, quick preset, seed s, the library's default flow tier) on the same multi-task video, then
   per task latent BC
   (``laof_bc``) and LAFP (``laof_lafp``) with their decoders on the task's labels, and BC on the labels only
   (``bc_labels``), each imitation seed s;
5. each policy evaluated per task on the pixel env (backend auto: dm_control at action repeat 2) with the data's
   backgrounds (``ret_*``) and held-out background
   videos (``ret_heldout_*``), 8 episodes of 500 steps, the same env seeds for every method;
6. PPO on walker-walk, PPO seed s on seed s's models, every row at the same env frames (60k agent steps at action
   repeat 2, the main job's budget and PPO's val-chosen settings, rollouts of 8 x 256 steps; ``--quick``: 2000):
   ``sof`` (``--latent sof``, skills ``sof-s{seed}``),
   ``sof_kl`` (the same with SPiRL's KL to the skill prior, ``kl_coef`` 0.01), ``laof`` (LAOF's residual latent
   space around seed s's walker-walk ``laof_bc``) and ``action_residual`` (raw-action residuals around the same
   decoded policy).

Reported: each figure is the mean over seeds with its 95 % bootstrap interval (``rl_laof.stats.interval``: ``_lo``
/ ``_hi``; per seed ``_seeds``): ``sof_code_usage``, ``sof_perplexity``, ``sof_recon_vs_zero``,
``sof_recon_vs_mean`` (held-out windows; ``sof_oracle_*`` the same for the oracle tier), ``ret_<method>`` (mean over
the three tasks; per task ``ret_<method>_<task>``; ``ret_heldout_*`` the same on held-out backgrounds) for sof,
sof_oracle, laof_bc, laof_lafp and bc_labels, ``ppo_<row>`` (final return, 8 episodes) with
``ppo_<row>_first_eval`` (at step 0). ``p_sof_vs_laof_bc`` and ``p_ppo_sof_vs_action_residual``: one-sided exact
permutation tests over seeds, Holm-adjusted together
(``bench_imitation.one_sided_claims``). Targets: sof_code_usage >= 0.5; ret_sof_lo > ret_laof_bc_hi;
ppo_sof_lo > ppo_action_residual_hi; ppo_sof >= 1.25 x ppo_sof_first_eval.

Runs go seed-major (everything of seed 0, then seed 1, ...: a stopped run leaves whole seeds) into
``runs/bench/skills/<full|quick>``; each finished seed leaves a record in ``benchmarks/results/skills_runs/``
(committed: a fresh clone, without ``runs/``, continues from them). A run of >= 5 seeds writes
``benchmarks/results/skills.json``, one of fewer ``skills_partial.json``; ``--quick`` (2 seeds, a smoke run) writes
nothing. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from bench_args import alone, recorded, seed_count, write_result
from bench_imitation import one_sided_claims

import envs  # noqa: F401  (loads EGL before anything imports envpool)
from agents.config import TRAIN_PRESETS, ExpertConfig, TrainConfig
from rl_laof import stats
from rl_laof.data.config import CollectConfig
from rl_laof.imitation.config import IMITATION_PRESETS, ImitationConfig
from rl_laof.lam.config import LAM_PRESETS, LAMConfig
from rl_laof.presets import from_preset
from rl_laof.runs import read_json, runs_root
from rl_laof.skills.config import SKILLS_PRESETS, SkillsConfig

TASKS = ("walker-stand", "walker-walk", "walker-run")
PPO_TASK = "walker-walk"
LEVEL = "laom"  # issue 32: the LAOM level, as the latent-quality benchmark's primary cell
ACTION_REPEAT = 2
LABEL_TRAJECTORIES = 2
DEFAULT_SEEDS = 5
KL_COEF = 0.01
RECORDS = Path(__file__).resolve().parent / "results" / "skills_runs"  # s<seed>.json: one finished seed (committed)
EVAL = dict(eval_episodes=8, eval_seeds=1, eval_backgrounds=("train", "eval"))
BACKGROUNDS = (("train", "ret"), ("eval", "ret_heldout"))
FULL = dict(expert_steps=1_000_000, episodes=16, eval_episodes=4, heldout=2, episode_steps=250, ppo_steps=60_000,
            skills={}, imitation={}, lam={})
QUICK = dict(expert_steps=300_000, episodes=6, eval_episodes=2, heldout=0, episode_steps=100, ppo_steps=2000,
             skills=dict(tokenizer_steps=300, prior_steps=300, translator_steps=300, eval_episodes=4),
             imitation=dict(steps=300, decoder_steps=300, eval_episodes=4), lam=dict(steps=300))
#: imitation rows per task: name -> ImitationConfig changes
IMITATION = {"laof_bc": dict(latent="laof", policy="bc"), "laof_lafp": dict(latent="laof", policy="lafp"),
             "bc_labels": dict(latent="none", policy="bc")}
#: SOF rows: name -> the flow tier its skills learn from (the library's default; the oracle, privileged, beside it)
SOF_TIERS = {"sof": SkillsConfig().flow_tier, "sof_oracle": "oracle"}
METHODS = (*SOF_TIERS, *IMITATION)
#: PPO rows on walker-walk: name -> TrainConfig changes ("{seed}" folders filled with PPO seed s)
PPO_ROWS = {"sof": dict(latent="sof"), "sof_kl": dict(latent="sof", kl_coef=KL_COEF),
            "laof": dict(latent="laof", policy="bc"), "action_residual": dict(latent="action_residual")}
#: one-sided claims over seeds (the first key's values > the second's), one Holm family
CLAIMS = {"sof_vs_laof_bc": ("ret_sof", "ret_laof_bc"),
          "ppo_sof_vs_action_residual": ("ppo_sof", "ppo_action_residual")}


class CollapsedTokenizer(RuntimeError):
    """A skills run whose tokenizer collapsed: its returns are BC from the frame, not a skills result."""


def refuse_collapsed(tokens: dict, run_dir: str | Path) -> None:
    """Stop on a collapsed tokenizer (its token report's ``collapsed``), naming the run and its code usage."""
    if tokens.get("collapsed"):
        raise CollapsedTokenizer(
            f"{run_dir}: the SOF tokenizer collapsed: code usage {tokens['code_usage']:.4f} "
            f"({tokens['codes_used']} of {tokens['codebook_size']} codes, {tokens.get('code_usage_over', 'pooled')}, "
            f"on {tokens.get('eval_windows', '?')} held-out windows; floor {tokens.get('collapse_floor')}); its "
            "returns would be BC from the frame, so the benchmark reports nothing. Retrain the skills "
            "(see docs/skills.md, 'What went wrong first').")


def steps_tag(steps: int) -> str:
    return f"{steps // 1_000_000}m" if steps % 1_000_000 == 0 else f"{steps // 1000}k"


def build_data(size: dict, tag: str, seed: int, progress: bool) -> tuple[dict[str, Path], Path]:
    """Data seed ``seed``: per task a dataset (with exact flow) by the task's expert, merged; returns (per-task
    dataset dirs, merged dir)."""
    from rl_laof import pipeline
    from rl_laof.data.multitask import merge_datasets
    from rl_laof.flow.targets import fill_flow

    datasets = {}
    for task in TASKS:
        steps = size["expert_steps"]
        expert = runs_root() / "experts" / task / f"ppo-ar{ACTION_REPEAT}-{steps_tag(steps)}-s0"
        every = min(500_000, steps // 2)
        pipeline.trained_expert(ExpertConfig(task=task, action_repeat=ACTION_REPEAT, total_steps=steps,
                                             eval_every=every, checkpoint_every=every, final_eval_episodes=8),
                                expert, progress=progress)  # the shipped one where it ships
        ccfg = CollectConfig(task=task, expert=str(expert), episodes=size["episodes"],
                             eval_episodes=size["eval_episodes"], heldout_bg_episodes=size["heldout"],
                             episode_steps=size["episode_steps"], action_repeat=ACTION_REPEAT,
                             label_fractions=(0.0,), label_trajectories=(1, 2, 4), seed=seed)
        out = runs_root() / "datasets" / task / f"{LEVEL}-ar{ACTION_REPEAT}-skills-{tag}-s{seed}"
        pipeline.dataset(ccfg, out, progress=progress)
        for method in ("exact", "estimate"):  # the oracle tier's, and the default (rgb) tier's
            fill_flow(out, method, progress=progress)
        datasets[task] = out
    merged = merge_datasets(list(datasets.values()), runs_root() / "datasets" / "walker-multitask" /
                            f"{LEVEL}-ar{ACTION_REPEAT}-skills-{tag}-s{seed}", progress=progress)
    return datasets, merged


def skills_config(size: dict, seed: int, row: str) -> SkillsConfig:
    """SOF row ``row``'s skills config at seed ``seed``."""
    return from_preset(SkillsConfig, SKILLS_PRESETS, "quick", label_trajectories=LABEL_TRAJECTORIES, seed=seed,
                       flow_tier=SOF_TIERS[row], **{**EVAL, **size["skills"]})


def lam_config(size: dict, seed: int) -> LAMConfig:
    """Seed ``seed``'s LAOF config on the multi-task video."""
    return from_preset(LAMConfig, LAM_PRESETS, "quick", method="laof", seed=seed, **size["lam"])


def imitation_config(size: dict, seed: int) -> ImitationConfig:
    """Seed ``seed``'s imitation config before a row's changes (``IMITATION``)."""
    return from_preset(ImitationConfig, IMITATION_PRESETS, "quick", label_trajectories=LABEL_TRAJECTORIES,
                       normalise=False, seed=seed, **{**EVAL, **size["imitation"]})


def seed_identity(size: dict, base: TrainConfig, seed: int) -> dict:
    """What a seed's record must match (``bench_args.recorded``): the benchmark's sizes and every config seed
    ``seed`` trains (skills per SOF row, LAOF, imitation, PPO)."""
    return {"size": size, "tasks": TASKS, "level": LEVEL, "action_repeat": ACTION_REPEAT,
            "skills": {row: skills_config(size, seed, row).to_dict() for row in SOF_TIERS},
            "lam": lam_config(size, seed).to_dict(), "imitation": imitation_config(size, seed).to_dict(),
            "imitation_rows": IMITATION, "ppo": {row: ppo_config(base, row, seed, Path("runs")).to_dict()
                                                  for row in PPO_ROWS}}


def seed_record(size: dict, tag: str, root: Path, base: TrainConfig, seed: int, progress: bool) -> dict:
    """Seed ``seed``'s values and timings: its committed record (``results/skills_runs/``), or everything of the
    seed built (resumed) and recorded."""
    def make() -> dict:
        timings: dict[str, float] = {}
        values = seed_values(size, tag, root, base, seed, timings, progress)
        return {"seed": seed, "values": values, "timings": timings}

    where = root / "records" if tag == "quick" else RECORDS
    return recorded(where / f"s{seed}.json", seed_identity(size, base, seed), make)


def sof_run(size: dict, merged: Path, root: Path, seed: int, progress: bool, row: str = "sof") -> dict:
    """Seed ``seed``'s skills run of SOF row ``row`` (``<row>-s<seed>``, on the row's flow tier) and its report
    (cached as its report.json); refused when its tokenizer collapsed."""
    from rl_laof.skills.evaluation import token_report, write_report
    from rl_laof.skills.training import SkillRun

    cfg = skills_config(size, seed, row)
    run = SkillRun(cfg, merged, root / f"{row}-s{seed}")
    path = run.dir / "report.json"
    if path.exists() and read_json(path).get("config") == json.loads(json.dumps(cfg.to_dict())):
        report = read_json(path)
    else:  # the tokenizer is checked before the skill policy's returns are measured
        refuse_collapsed(token_report(run, run.tokenizer(progress), None), run.dir)
        report = write_report(run, progress)
    refuse_collapsed(report["tokens"], run.dir)
    return report


def imitation_runs(size: dict, datasets: dict[str, Path], merged: Path, root: Path, seed: int,
                   progress: bool) -> tuple[dict, dict[str, dict[str, dict]]]:
    """Seed ``seed``'s LAOF model on the multi-task video and, per task, its imitation runs: (the LAOF report,
    task -> method -> the imitation report)."""
    from rl_laof.imitation.training import imitate
    from rl_laof.lam.training import train_lam

    lam = train_lam(lam_config(size, seed), merged, root / f"laof-s{seed}", progress=progress)
    base = imitation_config(size, seed)
    reports: dict[str, dict[str, dict]] = {}
    for task in TASKS:
        for name, changes in IMITATION.items():
            cfg = dataclasses.replace(base, **changes, lam_run=lam["run_dir"] if changes["latent"] != "none" else None)
            reports.setdefault(task, {})[name] = imitate(cfg, datasets[task], root / task / f"{name}-s{seed}",
                                                         progress=progress)
    return lam, reports


def ppo_config(base: TrainConfig, row: str, seed: int, root: Path) -> TrainConfig:
    """PPO seed ``seed``'s config of ``row``, on seed ``seed``'s skills or walker-walk LAOF latent BC policy."""
    cfg = dataclasses.replace(base, **PPO_ROWS[row], seed=seed)
    if cfg.latent == "sof":
        return dataclasses.replace(cfg, skills=str(root / "sof-s{seed}"))
    return dataclasses.replace(cfg, latent_policy=str(root / PPO_TASK / "laof_bc-s{seed}"), latent_seed=seed)


def seed_values(size: dict, tag: str, root: Path, base: TrainConfig, seed: int, timings: dict,
                progress: bool) -> dict[str, float]:
    """Everything of seed ``seed`` (built or resumed), as result key -> this seed's value."""
    t = time.perf_counter()
    datasets, merged = build_data(size, tag, seed, progress)
    lap = _lap(timings, "data_s", t)
    sof = {row: sof_run(size, merged, root, seed, progress, row) for row in SOF_TIERS}
    lap = _lap(timings, "sof_s", lap)
    out = {f"{row}_{k}": float(sof[row]["tokens"][k]) for row in SOF_TIERS
           for k in ("code_usage", "perplexity", "recon_vs_zero", "recon_vs_mean")}
    lam, imitation = imitation_runs(size, datasets, merged, root, seed, progress)
    lap = _lap(timings, "laof_imitation_s", lap)
    out["laof_probe_linear_action_mse"] = float(lam["probes"]["eval"]["linear_action_mse"])
    out["laof_probe_mean_action_mse"] = float(lam["probes"]["eval"]["mean_action_mse"])
    for bg, prefix in BACKGROUNDS:
        for method in METHODS:
            per_task = {task: (sof[method]["returns"][task] if method in sof else imitation[task][method]["returns"])
                        [bg]["mean"] for task in TASKS}
            out.update({f"{prefix}_{method}_{task}": float(v) for task, v in per_task.items()})
            out[f"{prefix}_{method}"] = float(sum(per_task.values()) / len(TASKS))
    from rl_laof.pipeline import agent as train

    for row in PPO_ROWS:
        if progress:
            print(f"== PPO {row} seed {seed}", flush=True)
        rep = train(ppo_config(base, row, seed, root), root / "ppo" / f"{row}-s{seed}", resume=True, progress=progress)
        hist = rep["eval_history"]
        out[f"ppo_{row}"] = float(rep["final"]["mean"])
        out[f"ppo_{row}_first_eval"] = float(hist[0]["mean"]) if hist and hist[0]["step"] == 0 else float("nan")
        out[f"ppo_{row}_steps"] = float(rep["steps"])
        out[f"ppo_{row}_sps"] = float(rep["steps_per_s"])
    _lap(timings, "ppo_s", lap)
    return out


def _lap(timings: dict, key: str, since: float) -> float:
    now = time.perf_counter()
    timings[key] = round(timings.get(key, 0.0) + now - since, 1)
    return now


def summarise(per_seed: list[dict[str, float]]) -> tuple[dict, dict]:
    """(result keys: the mean over seeds, ``_lo`` / ``_hi``, ``_seeds``; key -> its interval)."""
    result: dict = {}
    summary: dict = {}
    for key in per_seed[0]:
        values = [s[key] for s in per_seed]
        finite = [v for v in values if v == v]
        if not finite:
            continue
        s = summary[key] = stats.interval(finite)
        digits = 4 if key.startswith("sof_") or "probe" in key else 1
        result[key] = round(s["mean"], digits)
        result[f"{key}_lo"] = round(s["lo"], digits)
        result[f"{key}_hi"] = round(s["hi"], digits)
        result[f"{key}_seeds"] = [round(v, digits) for v in values]
    return result, summary


def targets(result: dict, summary: dict) -> dict[str, bool | None]:
    def lo_gt_hi(a: str, b: str) -> bool | None:  # None: one seed (no interval)
        lo, hi = summary[a]["lo"], summary[b]["hi"]
        return bool(lo > hi) if lo == lo and hi == hi else None

    first = result.get("ppo_sof_first_eval")
    return {"sof_code_usage_ge_0.5": result["sof_code_usage"] >= 0.5,
            "ret_sof_lo_gt_ret_laof_bc_hi": lo_gt_hi("ret_sof", "ret_laof_bc"),
            "ppo_sof_lo_gt_ppo_action_residual_hi": lo_gt_hi("ppo_sof", "ppo_action_residual"),
            "ppo_sof_ge_1.25_ppo_sof_first_eval": result["ppo_sof"] >= 1.25 * first if first is not None else None}


def main() -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a smoke run (2 seeds, small data and budgets)")
    p.add_argument("--seeds", type=int, default=None, help=f"seeds (default {DEFAULT_SEEDS}; --quick 2)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args()
    seeds = seed_count(p, DEFAULT_SEEDS if args.seeds is None and not args.quick else args.seeds, args.quick)
    progress = not args.no_progress
    size = QUICK if args.quick else FULL
    tag = "quick" if args.quick else "full"
    root = runs_root() / "bench" / "skills" / tag
    base = from_preset(TrainConfig, TRAIN_PRESETS, "quick", task=PPO_TASK, distractors=LEVEL,
                       action_repeat=ACTION_REPEAT, total_steps=size["ppo_steps"],
                       eval_every=size["ppo_steps"] // 6, checkpoint_every=size["ppo_steps"] // 6)
    t0 = time.perf_counter()
    records = [seed_record(size, tag, root, base, seed, progress) for seed in range(seeds)]  # seed-major
    per_seed = [rec["values"] for rec in records]
    timings = {k: round(sum(rec["timings"].get(k, 0.0) for rec in records), 1)
               for k in sorted({k for rec in records for k in rec["timings"]})}
    result: dict = {"tasks": list(TASKS), "quick": args.quick, "seeds": seeds, "distractors": LEVEL,
                    "labels": f"traj-{LABEL_TRAJECTORIES} per task", "ppo_task": PPO_TASK,
                    "ppo_frames": base.total_steps * ACTION_REPEAT, "kl_coef_sof_kl": KL_COEF,
                    "flow_tier": SOF_TIERS["sof"], "sof_flow_tiers": SOF_TIERS, "laof_flow_tier": LAMConfig().flow_tier,
                    "privileged": {"sof_oracle": "the simulator's exact flow and agent mask (the upper bound)",
                                   "labels": f"{LABEL_TRAJECTORIES} whole labelled trajectories per task"}}
    values, summary = summarise(per_seed)
    result.update(values)
    result.update(one_sided_claims({k: [s[k] for s in per_seed] for pair in CLAIMS.values() for k in pair}, CLAIMS))
    result["targets"] = targets(result, summary)
    result["timings"] = timings
    result["seconds"] = round(time.perf_counter() - t0, 1)
    if not args.quick:
        write_result("skills" if seeds >= DEFAULT_SEEDS else "skills_partial", result)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    alone(main)
