"""Tables made from the committed benchmark results (``benchmarks/results/<name>.json``).

    python benchmarks/tables.py readme              # the README's results table: one row per headline figure
    python benchmarks/tables.py latent_quality      # held-out probes per method and level (docs/lam.md)
    python benchmarks/tables.py lam_speed           # where a LAOF step's time goes (lam_speed.json)
    python benchmarks/tables.py imitation           # policies with 1 % labels (docs/imitation.md)
    python benchmarks/tables.py train               # the main job: PPO in latent action spaces (docs/train.md)
    python benchmarks/tables.py skills              # SOF skills vs single-step latents (docs/skills.md)
    python benchmarks/tables.py --write             # rewrite every generated table in README.md and docs/*.md
    python benchmarks/tables.py --check             # exit 1 if any of them differs from what the results give

A figure in the README or the docs is always one of these files' numbers, so it has its command and its data
beside it. Generated tables sit between marker comments, ``<!-- results:NAME -->`` and ``<!-- /results:NAME -->``
(NAME is one of the tables above); ``--write`` replaces what is between them and leaves the rest of the page
alone. A results file that does not exist yet (a benchmark that has not been run) is skipped: the README table
lists it as missing, and a per-benchmark table says which command makes it. ``tests/test_docs.py`` fails when a
committed table differs from what this script makes, so run ``--write`` after a benchmark writes its JSON.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"

LATENT_ROWS = [  # (key, label)
    ("untrained", "untrained model (step 0: the floor)"),
    ("lapo", "LAPO"),
    ("laom", "LAOM"),
    ("laof", "**LAOF**"),
    ("laom_action_1pct", "LAOM-Action, 1 % labels"),
    ("laof_action_1pct", "LAOF-Action, 1 % labels"),
    ("laom_action_5pct", "LAOM-Action, 5 %"),
    ("laof_action_5pct", "LAOF-Action, 5 %"),
    ("laom_action_10pct", "LAOM-Action, 10 %"),
    ("laof_action_10pct", "LAOF-Action, 10 %"),
    ("lapo_clean", "LAPO, no distractors (reference)"),
]


def _cell(r: dict, key: str, digits: int = 3) -> str:
    if key not in r:
        return "–"
    if key + "_lo" not in r or r[key + "_lo"] != r[key + "_lo"]:  # one seed: no interval (absent or NaN)
        return f"{r[key]:.{digits}f}"
    return f"{r[key]:.{digits}f} [{r[key + '_lo']:.{digits}f}, {r[key + '_hi']:.{digits}f}]"


LATENT_CELL_ROWS = [  # (key, label) of the per-seed-dataset study (issue 30)
    ("untrained", "untrained model (step 0: the floor)"),
    ("lapo", "LAPO"),
    ("laom", "LAOM (as published, dunnolab/laom)"),
    ("laof_rgb", "LAOF, `rgb` tier (RGB flow, no mask: no simulator information)"),
    ("laof_estimated", "LAOF, `estimated` tier (RGB flow × agent mask)"),
    ("laof_oracle", "LAOF, `oracle` tier (exact flow × agent mask: privileged)"),
    ("laom_action_1pct", "LAOM-Action, 1 % labels"),
    ("laof_action_1pct", "LAOF-Action, 1 % labels (default tier)"),
    ("laom_action_5pct", "LAOM-Action, 5 %"),
    ("laof_action_5pct", "LAOF-Action, 5 %"),
    ("laom_action_10pct", "LAOM-Action, 10 %"),
    ("laof_action_10pct", "LAOF-Action, 10 %"),
]
CELL_LABELS = {"cheetah_laom": "cheetah-run, LAOM level", "cheetah_hard": "cheetah-run, hard",
               "hopper_laom": "hopper-hop, LAOM level"}
CELL_PREFIX = {"cheetah_laom": "", "cheetah_hard": "hard_", "hopper_laom": "hopper_"}


def latent_quality_cells(r: dict) -> str:
    """Per method and cell: the probe fit on all labels and on the 1 % only (eval episodes), over the mean action."""
    cells = r["cells"]
    head = ["method"]
    for c in cells:
        head += [f"{CELL_LABELS.get(c, c)}: probe", "probe from 1 % labels", "held-out backgrounds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, label in LATENT_CELL_ROWS:
        row = [label]
        for c in cells:
            p = CELL_PREFIX.get(c, f"{c}_")
            row += [_cell(r, f"{p}probe_{key}"), _cell(r, f"{p}probe_few_{key}"),
                    _cell(r, f"{p}probe_heldout_bg_{key}")]
        if any(x != "–" for x in row[1:]):
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def latent_quality(r: dict) -> str:
    if "cells" in r:
        return latent_quality_cells(r)
    levels = r["levels"]
    prefixes = {lv: "" if lv == r.get("primary_level", levels[0]) else f"{lv}_" for lv in levels}
    head = ["method"]
    for lv in levels:
        head += [f"{lv}: held-out episodes", f"{lv}: held-out backgrounds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, label in LATENT_ROWS:
        row = [label]
        for lv in levels:
            p = prefixes[lv]
            if key == "lapo_clean":
                row += [_cell(r, f"probe_{p}lapo_clean"), _cell(r, f"probe_heldout_bg_{p}lapo_clean")]
            elif key == "untrained":
                row += [_cell(r, f"probe_{p}untrained"), _cell(r, f"probe_heldout_bg_{p}untrained")]
            else:
                row += [_cell(r, f"probe_{p}{key}"), _cell(r, f"probe_heldout_bg_{p}{key}")]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def lam_speed(r: dict) -> str:
    """Where a LAOF training step's time goes, before and after (``lam_speed.json``)."""
    sp = {"before": r["before"], "after": r["after"]}
    lines = ["| per step (batch 64) | before | after |", "|---|---|---|"]
    for k in ("data", "forward", "backward", "optimiser"):
        lines.append(f"| {k} | {1000 * sp['before']['seconds_per_step'][k]:.1f} ms | "
                     f"{1000 * sp['after']['seconds_per_step'][k]:.1f} ms |")
    lines.append(f"| evaluation, amortised | {1000 * sp['before']['eval_seconds_per_step']:.1f} ms | "
                 f"{1000 * sp['after']['eval_seconds_per_step']:.1f} ms |")
    lines.append(f"| **samples/s** | {sp['before']['samples_per_s']:.0f} | **{sp['after']['samples_per_s']:.0f}** "
                 f"({r['speedup']:.2f}x) |")
    lines.append(f"| GFLOP per step (forward + backward) | {sp['before']['gflop_per_step']:.1f} | "
                 f"{sp['after']['gflop_per_step']:.1f} |")
    mm = r["matmul_gflop_per_s"]
    lines.append(f"| achieved GFLOP/s (share of dense matmul: fp32 {mm['fp32']:.0f}, bf16 {mm['bf16']:.0f}) | "
                 f"{sp['before']['achieved_gflop_per_s']:.0f} ({sp['before']['share_of_matmul_peak']:.0%}) | "
                 f"{sp['after']['achieved_gflop_per_s']:.0f} ({sp['after']['share_of_matmul_peak']:.0%}) |")
    cfg = sp["after"]["config"]
    lines.append(f"| set-up | fp32, VQ, 64-px flow decoder and FDM, target encoded per batch | {cfg['precision']}, "
                 f"{cfg['latent']}, {cfg['flow_resolution']}-px flow decoder, {cfg['fdm_resolution']}-px FDM, "
                 "targets encoded once |")
    return "\n".join(lines)


IMITATION_ROWS = [  # (key, label)
    ("bc_all_512", "BC on all labels, 512 episodes (the target's figure)"),
    ("bc_all_128", "BC on all labels, 128 episodes"),
    ("bc_all", "BC on all labels, the same 32 episodes (the ceiling)"),
    ("bc_labels", "BC on the 1 % labels"),
    ("idm_bc", "IDM relabelling + BC"),
    ("lapo_bc", "latent BC (LAPO)"),
    ("laof_bc", "latent BC (LAOF)"),
    ("laof_lafp", "**LAFP (LAOF)**"),
    ("laof_action_lafp", "LAFP (LAOF-Action)"),
]


def _decoders(r: dict, key: str) -> str:
    """The decoder modes ``val`` chose over the seeds of one method (``decoder_<method>``: mode -> count)."""
    counts = r.get(f"decoder_{key}")
    if not isinstance(counts, dict) or not counts:
        return "–"
    return ", ".join(f"{mode} {n}" if len(counts) > 1 else mode for mode, n in counts.items())


def _claims(r: dict, claims: list[tuple[str, str]], what: str) -> list[str]:
    """A line of the Holm-adjusted one-sided tests the results file holds (``p_<claim>`` and ``p_raw_<claim>``)."""
    shown = [f"{label} p = {r[f'p_{key}']:.3g} (raw {r[f'p_raw_{key}']:.3g})" for key, label in claims
             if f"p_{key}" in r and f"p_raw_{key}" in r]
    if not shown:
        return []
    return ["", f"{what}: " + "; ".join(shown) + "."]


IMITATION_CLAIMS = [("laof_bc_vs_lapo_bc", "latent BC LAOF > LAPO"), ("laof_bc_vs_bc_labels", "LAOF latent BC > BC on "
                    "the 1 % labels"), ("laof_lafp_vs_laof_bc", "LAFP > latent BC (LAOF)")]


def imitation(r: dict) -> str:
    """Per method: return / data's return on the data's and held-out backgrounds (mean [95 % CI] over seeds),
    the raw return, the held-out action MSE / mean action, the action spread on the policy's own states / the
    data's, and the decoder the ``val`` episodes chose (``imitation.json``), then the claims' tests."""
    spread = any(f"spread_{key}" in r for key, _ in IMITATION_ROWS)
    head = ["method", "return / data, data's backgrounds", "held-out backgrounds", "raw return",
            "held-out action MSE / mean action"] + (["action spread / data's (own states)", "decoder (val)"]
                                                    if spread else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, label in IMITATION_ROWS:
        if f"ret_{key}" not in r:
            continue
        row = [label, _cell(r, f"ret_{key}"), _cell(r, f"ret_heldout_{key}"), f"{r[f'raw_ret_{key}']:.1f}",
               _cell(r, f"action_mse_{key}")]
        if spread:
            row += [_cell(r, f"spread_{key}"), _decoders(r, key)]
        lines.append("| " + " | ".join(row) + " |")
    random = ["uniform random actions", f"{r['ret_random']:.3f}", f"{r['ret_heldout_random']:.3f}",
              f"{r['raw_ret_random']:.1f}", "–"] + (["–", "–"] if spread else [])
    lines.append("| " + " | ".join(random) + " |")
    lines += _claims(r, IMITATION_CLAIMS, "One-sided exact permutation tests over seeds, Holm-adjusted")
    return "\n".join(lines)


TRAIN_ROWS = [  # (key, label, what it starts from)
    ("none", "raw actions, PPO from scratch", "–"),
    ("drq", "raw actions, DrQ-v2 from scratch", "–"),
    ("labels_residual", "raw-action residual around BC on the 80 labels", "BC on the labels"),
    ("lapo", "LAPO's residual latent space", "LAPO latent BC"),
    ("action_residual", "raw-action residual around the decoded LAOF policy", "LAOF latent BC"),
    ("laof_lafp", "LAFP noise space (LAOF)", "LAOF LAFP"),
    ("laof", "**LAOF's residual latent space** (the main job)", "LAOF latent BC"),
]
TRAIN_CLAIMS = [(f"laof_vs_{row}", f"LAOF > {row}") for row in ("action_residual", "drq", "none", "lapo")]


def train(r: dict) -> str:
    """The main job's benchmark: per action space, step-0 / final / best return and steps/s (``train.json``),
    then the claims' tests and the start the ``val`` evaluations chose."""
    lines = ["| action space | start | return at step 0 | final return | best evaluation | agent steps/s |",
             "|---|---|---|---|---|---|"]
    for key, label, start in TRAIN_ROWS:
        if f"ret_{key}" not in r:
            continue
        lines.append(f"| {label} | {start} | {_cell(r, f'first_eval_{key}', 1)} | {_cell(r, f'ret_{key}', 1)} | "
                     f"{_cell(r, f'best_{key}', 1)} | {_cell(r, f'sps_{key}', 1)} |")
    lines.append(f"| the pixel env alone (random actions) | – | – | – | – | {r['sps_env_only']:.1f} |")
    lines += _claims(r, TRAIN_CLAIMS, "One-sided exact permutation tests over seeds that LAOF's final return is "
                     "higher, Holm-adjusted")
    held = [(key, label) for key, label, _ in TRAIN_ROWS if f"heldout_{key}" in r]
    if held:  # bench_train's replays of every run on the same 32 held-out episodes (train.json's newer key)
        lines += ["", "| on 32 held-out episodes | start | final | final − start (per seed) |", "|---|---|---|---|"]
        for key, label in held:
            lines.append(f"| {label} | {_cell(r, f'start_heldout_{key}', 1)} | {_cell(r, f'heldout_{key}', 1)} | "
                         f"{_cell(r, f'gain_heldout_{key}', 1)} |")
    choice = r.get("start_choice")
    if isinstance(choice, dict) and choice.get("chosen"):
        lines += ["", f"The main job's start, chosen on the `val` evaluations: `{choice['chosen']}`."]
    return "\n".join(lines)


SKILL_METHODS = [  # (key, label)
    ("sof", "**SOF skill policy** (`rgb` flow)"),
    ("sof_oracle", "SOF skill policy, `oracle` flow (privileged)"),
    ("laof_lafp", "LAFP (LAOF)"),
    ("laof_bc", "latent BC (LAOF)"),
    ("bc_labels", "BC on the labels"),
]
SKILL_PPO_ROWS = [  # (key, label)
    ("action_residual", "raw-action residual around the decoded LAOF latent BC policy"),
    ("laof", "LAOF's residual latent space (the same start)"),
    ("sof", "**SOF skill tokens**"),
    ("sof_kl", "SOF skill tokens + KL to the skill prior (SPiRL)"),
]
SKILL_CLAIMS = [("sof_vs_laof_bc", "SOF > LAOF latent BC"),
                ("ppo_sof_vs_action_residual", "skill PPO > raw-action residual")]


def skills(r: dict) -> str:
    """SOF vs single-step latents (per task and the mean over tasks) and PPO on walker-walk (``skills.json``)."""
    tasks = r["tasks"]
    head = ["method", "mean over tasks", *tasks, "held-out backgrounds (mean)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, label in SKILL_METHODS:
        if f"ret_{key}" not in r:
            continue
        lines.append("| " + " | ".join([label, _cell(r, f"ret_{key}", 1),
                                        *(_cell(r, f"ret_{key}_{t}", 1) for t in tasks),
                                        _cell(r, f"ret_heldout_{key}", 1)]) + " |")
    lines += ["", "| PPO on " + str(r.get("ppo_task", "walker-walk")) + " | return at step 0 | final return | "
              "agent steps/s |", "|---|---|---|---|"]
    for key, label in SKILL_PPO_ROWS:
        if f"ppo_{key}" not in r:
            continue
        lines.append(f"| {label} | {_cell(r, f'ppo_{key}_first_eval', 1)} | {_cell(r, f'ppo_{key}', 1)} | "
                     f"{_cell(r, f'ppo_{key}_sps', 1)} |")
    tok = [f"{label} {_cell(r, key)}" for key, label in (
        ("sof_code_usage", "share of codes used"), ("sof_perplexity", "perplexity"),
        ("sof_recon_vs_zero", "flow error / no motion"), ("sof_recon_vs_mean", "/ the mean window"))
        if key in r]
    if tok:
        lines += ["", "SOF tokenizer on held-out windows (`rgb`): " + "; ".join(tok) + "."]
    lines += _claims(r, SKILL_CLAIMS, "One-sided exact permutation tests over seeds, Holm-adjusted")
    return "\n".join(lines)


def latent_quality_partial(r: dict) -> str:
    """The study while it runs (``latent_quality_partial.json``): per cell and method, how many seeds are done and
    the eval-episode figures over them, and the tier the val split chooses so far."""
    lines = ["| cell | method | seeds | probe (all labels) | probe from the 1 % labels | held-out backgrounds |",
             "|---|---|---|---|---|---|"]
    for c in r["cells"]:
        p = CELL_PREFIX.get(c, f"{c}_")
        for key, label in LATENT_CELL_ROWS:
            values = r.get("per_seed", {}).get(c, {}).get(f"probe_{key}")
            if not values:
                continue
            seeds = f"{len(values)}" + (" ‡" if len(values) < 5 else "")
            lines.append(f"| {CELL_LABELS.get(c, c)} | {label} | {seeds} | {_cell(r, f'{p}probe_{key}')} | "
                         f"{_cell(r, f'{p}probe_few_{key}')} | {_cell(r, f'{p}probe_heldout_bg_{key}')} |")
        choice = r.get(f"tier_choice_{c}", {})
        if choice.get("val_probe"):
            val = ", ".join(f"{k} {v:.3f}" for k, v in choice["val_probe"].items())
            lines.append(f"| {CELL_LABELS.get(c, c)} | *val probe (choices only)*: {val} | | tier chosen on val: "
                         f"{choice.get('chosen') or 'none yet (needs separated intervals)'} | | |")
    lines.append("")
    lines.append(f"{r['runs_done']} of {r['runs_expected']} runs of the invocation done. Intervals: the 95 % "
                 "bootstrap interval over seeds (rliable); ‡ fewer than 5 seeds: read it as a seed range (a single "
                 "seed: no interval).")
    return "\n".join(lines)


TABLES = {"latent_quality": latent_quality, "latent_quality_partial": latent_quality_partial, "lam_speed": lam_speed,
          "imitation": imitation, "train": train, "skills": skills}
SOURCE = {"latent_quality": "latent_quality", "latent_quality_partial": "latent_quality_partial",  # table -> file
          "lam_speed": "lam_speed", "imitation": "imitation", "train": "train", "skills": "skills"}

# --- the README's single results table ---------------------------------------------------------------------

COMMANDS = {  # results file -> the command that writes it; a file's own ``source.command`` wins
    "envs": "python benchmarks/bench_envs.py",
    "data": "python benchmarks/bench_data.py",
    "flow": "python benchmarks/bench_flow.py",
    "latent_quality": "python benchmarks/bench_latent_quality.py",
    "lam_speed": "python benchmarks/bench_lam_speed.py",
    "imitation": "python benchmarks/bench_imitation.py",
    "train": "python benchmarks/bench_train.py",
    "skills": "python benchmarks/bench_skills.py",
    "sweeps": "python benchmarks/bench_sweeps.py",
    "study_bc": "python benchmarks/study_bc.py",
    "study_decoder": "python benchmarks/study_decoder.py",
    "study_ppo_start": "python benchmarks/study_ppo_start.py",
    "study_ppo_val": "python benchmarks/study_ppo_val.py",
    "study_residual_scale": "python benchmarks/study_residual_scale.py",
    "study_drq_budget": "python benchmarks/study_drq_budget.py",
}
STUDY_BC_128 = ("python benchmarks/study_bc.py --arms bf16,steps8k_bf16,steps16k_bf16 "
                "--dataset runs/datasets/cheetah-run/laom-ar4-128ep-s0")


@dataclass(frozen=True)
class Headline:
    """One row of the README's results table: a figure of one results file.

    ``key`` is a top-level key, or a path into nested values; a path element ``"field=value"`` picks the item
    of a list whose ``field`` equals ``value``. The 95 % interval is read from ``<key>_lo`` / ``<key>_hi``
    beside the value, where the file has them. ``figure`` may name top-level numbers of the file in braces
    (``{total_steps}``), so that a budget it states is the file's own: they are written as counts (``60k``).
    """

    source: str
    figure: str
    key: str | tuple[str, ...]
    digits: int = 3
    unit: str = ""
    command: str | None = None


HEADLINES = [
    Headline("envs", "frames/s, ours with hard distractors (16 envs, 64×64, 3 frames)", "fps_ours", 0),
    Headline("envs", "ours / plain EnvPool pixels (target ≥ 5)", "ratio_vs_envpool_default", 1, "×"),
    Headline("envs", "ours with / without distractors (target ≥ 0.85)", "distractor_cost", 2),
    Headline("envs", "ours / dm_control `AsyncVectorEnv` with the same distractors (target ≥ 3)",
             "ratio_vs_dmc_vector", 1, "×"),
    Headline("data", "collection frames/s (2 workers, 3 render passes, HDF5)", "collect_fps", 0),
    Headline("data", "collection / dm_control's own single-process render", "collect_vs_plain_render", 1, "×"),
    Headline("data", "window loader / what a quick LAM step consumes (target ≥ 3)", "loader_vs_train_ratio", 0),
    Headline("flow", "EPE on agent pixels (px), predicting no motion", "epe_zero", 2),
    Headline("flow", "EPE on agent pixels (px), ours (TV-L1, Numba)", "epe_ours", 2),
    Headline("flow", "EPE ours / OpenCV TV-L1 (target ≤ 1.1)", "ours_vs_tvl1_epe", 2),
    Headline("flow", "pairs/s ours / OpenCV TV-L1 (target ≥ 20)", "ours_vs_tvl1_speed", 0, "×"),
    Headline("flow", "exact flow pairs/s, Numba / NumPy (target ≥ 10)", "exact_numba_vs_numpy", 1, "×"),
    Headline("latent_quality", "held-out probe / mean action (1.0: no information), cheetah-run LAOM level: LAPO",
             "probe_lapo"),
    Headline("latent_quality", "the same, **LAOF, `rgb` tier** (the default: TV-L1 flow from pixels, no simulator "
             "information)",
             "probe_laof"),
    Headline("latent_quality", "the same, LAOF, `estimated` tier (pixel flow × the simulator's agent mask: "
             "privileged mask)",
             "probe_laof_estimated"),
    Headline("latent_quality", "the same, LAOF, `oracle` tier (exact flow and mask: privileged, the upper bound)",
             "probe_laof_oracle"),
    Headline("latent_quality", "the same, LAOM (as published, dunnolab/laom)", "probe_laom"),
    Headline("latent_quality", "the same, untrained model (step 0: the floor)", "probe_untrained"),
    Headline("latent_quality", "the same, LAOF-Action (`rgb`), 1 % labels", "probe_laof_action_1pct"),
    Headline("latent_quality", "probe fit on the 1 % labels only: LAOF-Action (`rgb`), 1 % labels",
             "probe_few_laof_action_1pct"),
    Headline("latent_quality", "the same (1 % only): LAOM-Action, 1 % labels", "probe_few_laom_action_1pct"),
    Headline("latent_quality", "LAOF (`rgb`) < LAPO: one-sided permutation p over 5 seeds, Holm over the target claims",
             "p_laof_vs_lapo"),
    Headline("latent_quality", "LAOF (`rgb`) on held-out backgrounds", "probe_heldout_bg_laof"),
    Headline("latent_quality", "hopper-hop, LAOM level: LAPO", "hopper_probe_lapo"),
    Headline("latent_quality", "the same, LAOF (`rgb`)", "hopper_probe_laof"),
    Headline("latent_quality", "the same, LAOM", "hopper_probe_laom"),
    Headline("latent_quality", "cheetah-run, hard level: LAPO", "hard_probe_lapo"),
    Headline("latent_quality", "the same, LAOF (`rgb`)", "hard_probe_laof"),
    Headline("latent_quality", "the same, LAOF (`estimated`)", "hard_probe_laof_estimated"),
    Headline("latent_quality", "LAOF's flow decoder / predicting no motion, `rgb` tier", "flow_vs_zero_rgb"),
    Headline("lam_speed", "LAOF training samples/s, now / before issue 17", "speedup", 2, "×"),
    Headline("imitation", "BC on all labels, 512 episodes, return / data's return (target ≥ 0.6)", "ret_bc_all_512"),
    Headline("imitation", "BC on all labels, 128 episodes, the same", "ret_bc_all_128"),
    Headline("imitation", "BC on all labels, the 1 % methods' 32 episodes, the same", "ret_bc_all"),
    Headline("imitation", "**LAFP (LAOF)**, 1 % labels, return / data's return", "ret_laof_lafp"),
    Headline("imitation", "latent BC (LAOF), the same", "ret_laof_bc"),
    Headline("imitation", "latent BC (LAPO), the same", "ret_lapo_bc"),
    Headline("imitation", "BC on the 1 % labels, the same", "ret_bc_labels"),
    Headline("imitation", "latent BC (LAOF): decoded action spread on its own states / the data's (target ≥ 0.7)",
             "spread_laof_bc"),
    Headline("imitation", "latent BC LAOF > LAPO: one-sided permutation p over seeds, Holm", "p_laof_bc_vs_lapo_bc"),
    Headline("imitation", "ms per action, LAFP / latent BC (target < 2)", "lafp_vs_bc_latency", 2, "×"),
    Headline("train", "PPO in LAOF's residual latent space: return at step 0", "first_eval_laof", 1),
    Headline("train", "the same: **final return** after {total_steps} agent steps", "ret_laof", 1),
    Headline("train", "final return, raw-action residual around the same decoded LAOF policy", "ret_action_residual",
             1),
    Headline("train", "final return, LAFP noise space (LAOF)", "ret_laof_lafp", 1),
    Headline("train", "final return, raw-action residual around BC on the 80 labels", "ret_labels_residual", 1),
    Headline("train", "final return, LAPO's residual latent space", "ret_lapo", 1),
    Headline("train", "final return, raw actions (PPO from scratch)", "ret_none", 1),
    Headline("train", "final return, DrQ-v2 from scratch (CPU preset), the same frames", "ret_drq", 1),
    Headline("train", "LAOF > raw-action residual: one-sided permutation p over seeds, Holm",
             "p_laof_vs_action_residual"),
    Headline("train", "LAOF > DrQ-v2: the same", "p_laof_vs_drq"),
    Headline("train", "agent steps/s in LAOF's space / the env alone (target ≥ 0.7)", "sps_laof_vs_env_only", 3),
    Headline("skills", "mean return over walker stand / walk / run, SOF skill policy", "ret_sof", 1),
    Headline("skills", "the same, LAFP (LAOF)", "ret_laof_lafp", 1),
    Headline("skills", "the same, LAOF latent BC", "ret_laof_bc", 1),
    Headline("skills", "the same, BC on the labels", "ret_bc_labels", 1),
    Headline("skills", "SOF > LAOF latent BC: one-sided permutation p over seeds, Holm", "p_sof_vs_laof_bc"),
    Headline("skills", "PPO on walker-walk, {ppo_sof_steps} env steps, over SOF skill tokens: return at step 0",
             "ppo_sof_first_eval", 1),
    Headline("skills", "PPO on walker-walk, {ppo_sof_steps} env steps, over SOF skill tokens", "ppo_sof", 1),
    Headline("skills", "the same with SPiRL's KL to the skill prior", "ppo_sof_kl", 1),
    Headline("skills", "the same in LAOF's residual latent space", "ppo_laof", 1),
    Headline("skills", "the same on raw actions", "ppo_raw", 1),
    Headline("skills", "the same, raw-action residuals around the decoded LAOF latent BC policy",
             "ppo_action_residual", 1),
    Headline("skills", "SOF tokenizer: share of the codebook used on held-out windows (target ≥ 0.5)",
             "sof_code_usage", 3),
    Headline("skills", "SOF tokenizer: flow error on held-out windows / predicting no motion", "sof_recon_vs_zero", 3),
    Headline("skills", "skill PPO > raw-action residual: one-sided permutation p over seeds, Holm",
             "p_ppo_sof_vs_action_residual"),
    Headline("sweeps", "trials/h, 2 workers / 1 worker (target ≥ 1.6)", "scaling", 2),
    Headline("sweeps", "LAOF-Action probe MSE, tuned config", "probe_tuned"),
    Headline("sweeps", "the same, default config", "probe_default"),
    Headline("study_bc", "BC on all labels, 32 episodes, quick: return", ("arms", "quick-s0", "ret_envpool"), 1,
             command="python benchmarks/study_bc.py --arms quick,bf16,steps8k_bf16"),
    Headline("study_bc", "BC on all labels, 128 episodes, 8000 steps: return",
             ("arms", "steps8k_bf16-laom-ar4-128ep-s0-s0", "ret_envpool"), 1, command=STUDY_BC_128),
    Headline("study_bc", "the same: held-out action MSE / mean action",
             ("arms", "steps8k_bf16-laom-ar4-128ep-s0-s0", "heldout_mse"), command=STUDY_BC_128),
    Headline("study_decoder", "LAOF latents, 80 labels: MLP decoder, MSE / mean action",
             ("runs", "laof-bc-laom", "decoders", "mlp")),
    Headline("study_decoder", "the same, ridge decoder (penalty 10)", ("runs", "laof-bc-laom", "decoders", "ridge_10")),
    Headline("study_decoder", "LAPO latents, best decoder (ridge, penalty 100)",
             ("runs", "lapo-bc-laom", "decoders", "ridge_100")),
    Headline("study_ppo_start", "hard-level LAOF latent BC: decoded action deviation (RMS), latent noise std 0.37 "
             "in all 128 dims",
             ("all_dims", "rows", "std=0.37", "action_noise")),
    Headline("study_ppo_start", "the same, noise in the 8 leading principal directions at the data's spread",
             ("pcs8", "rows", "std=1.0", "action_noise"), command="python benchmarks/study_ppo_start.py --pcs 8"),
    Headline("study_ppo_val", "PPO from the main job's start, 60k steps: final − start on 32 val episodes, mean of 3 "
             "seeds, the earlier preset (std 0.37, minibatch 256, 4 epochs)",
             ("variants", "base", "summary", "gain_mean"), 1),
    Headline("study_ppo_val", "the same, std 0.61, minibatch 64, 10 epochs (the preset since)",
             ("variants", "std06_epochs10", "summary", "gain_mean"), 1),
    Headline("study_residual_scale", "raw-action residual scale at which PPO's initial exploration moves the executed "
             "actions as the latent residual's does (std 0.61; the default is 0.45)",
             ("by_log_std", "-0.5", "matching_scale")),
    Headline("study_drq_budget", "DrQ-v2, cheetah-run, 80k frames, LAOM distractors: final return, CPU preset (one "
             "seed; uniform random 14.2)", ("variants", "cpu", "ret"), 1),
    Headline("study_drq_budget", "the same at the paper's batch, update rate and MLPs",
             ("variants", "paper", "ret"), 1),
    Headline("study_drq_budget", "the CPU preset without distractors", ("variants", "clean", "ret"), 1),
]


def _lookup(r, path: tuple[str, ...]):
    """The value at ``path`` and the dict that holds it (None, None where the path does not exist)."""
    parent, value = None, r
    for part in path:
        if isinstance(value, list) and "=" in part:
            field, want = part.split("=", 1)
            value = next((it for it in value if isinstance(it, dict) and str(it.get(field)) == want), None)
            continue
        if not isinstance(value, dict) or part not in value:
            return None, None
        parent, value = value, value[part]
    return value, parent


def _headline_value(r: dict, h: Headline) -> str | None:
    path = (h.key,) if isinstance(h.key, str) else h.key
    value, parent = _lookup(r, path)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    text = f"{value:.{h.digits}f}{h.unit}"
    lo, hi = parent.get(path[-1] + "_lo"), parent.get(path[-1] + "_hi")
    if isinstance(lo, (int, float)) and isinstance(hi, (int, float)):
        text += f" [{lo:.{h.digits}f}, {hi:.{h.digits}f}]"
    return text


def _count(n: float) -> str:
    """A budget as the README writes it: 60000 -> ``60k``, 20480 -> ``20.5k``, 512 -> ``512``."""
    if n >= 1000:
        return f"{n / 1000:.1f}".removesuffix(".0") + "k"
    return f"{n:g}"


def _figure(r: dict, h: Headline) -> str:
    """``h.figure`` with its ``{key}`` fields filled from ``r``'s top-level numbers (KeyError: one it lacks)."""
    fields = {k: _count(v) for k, v in r.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return h.figure.format_map(fields) if "{" in h.figure else h.figure


def load_results(results: Path = RESULTS) -> dict[str, dict]:
    """Every ``<name>.json`` in ``results`` that parses, by name (a missing or unreadable file is skipped)."""
    out = {}
    for path in sorted(results.glob("*.json")):
        try:
            out[path.stem] = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
    return out


def _seed_count(r: dict) -> int | None:
    """How many seeds a results file's intervals are over (``seeds``: a count or a list), None if it does not say."""
    seeds = r.get("seeds")
    if isinstance(seeds, bool):
        return None
    if isinstance(seeds, int):
        return seeds
    if isinstance(seeds, list):
        return len(seeds)
    return None


def readme(results: dict[str, dict] | None = None) -> str:
    """The README's results table: one row per headline figure of the results files that exist."""
    results = load_results() if results is None else results
    lines = ["| benchmark | figure | value [95 % interval] | command |", "|---|---|---|---|"]
    seeded: list[str] = []
    ranged: dict[str, set[int]] = {}  # source -> the seed counts of its rows shown with an interval
    for h in HEADLINES:
        r = results.get(h.source)
        if r is None or (value := _headline_value(r, h)) is None:
            continue
        source = r.get("source") if isinstance(r.get("source"), dict) else {}
        command = h.command or source.get("command") or r.get("command") or COMMANDS[h.source]
        name = f"`{h.source}`"
        seeds = r.get(f"{h.key}_n") if isinstance(h.key, str) and f"{h.key}_n" in r else _seed_count(r)
        if "[" in value and seeds is not None and seeds < 5:
            name += " ‡"
            ranged.setdefault(h.source, set()).add(seeds)
        if r.get("seeded_from_readme"):
            name += " †"
            if h.source not in seeded:
                seeded.append(h.source)
        lines.append(f"| {name} | {_figure(r, h)} | {value} | `{command}` |")
    notes = ["", "Values are from `benchmarks/results/<benchmark>.json`; an interval is shown where the file has "
             "one (mean over seeds, 95 % bootstrap interval), otherwise the figure is one run."]
    if seeded:
        commits = ", ".join(f"`{s}` at `{str(results[s].get('source', {}).get('commit', '?'))[:7]}`" for s in seeded)
        notes.append(f"† Seeded from the README's own figures ({commits}); the JSON line a run of the command "
                     "prints replaces them.")
    if ranged:
        notes.append("‡ Fewer than 5 seeds (" + ", ".join(f"`{s}`: {' or '.join(map(str, sorted(n)))}"
                                                         for s, n in ranged.items())
                     + "): with so few the 95 % percentile bootstrap interval is about the seeds' range [min, max] "
                     "(it covers the median 75 % of the time with 3): read it as a seed range.")
    missing = [s for s in COMMANDS if s not in results]
    if missing:
        notes.append("Not in `benchmarks/results/` yet: " + ", ".join(
            f"`{s}.json` (`{COMMANDS[s]}`)" for s in missing) + ".")
    return "\n".join(lines + notes)


# --- generated blocks in README.md and docs/*.md ---------------------------------------------------------

BLOCK = re.compile(r"(<!-- results:(\w+) -->\n)(.*?)(<!-- /results:\2 -->)", re.DOTALL)


def block(name: str, results: dict[str, dict] | None = None) -> str:
    """What belongs between the ``results:<name>`` markers, made from the results that exist now."""
    results = load_results() if results is None else results
    if name == "readme":
        return readme(results)
    if name not in TABLES:
        raise KeyError(f"unknown generated table {name!r}; known: readme, {', '.join(TABLES)}")
    source = SOURCE[name]
    if source not in results:
        command = COMMANDS.get(source, COMMANDS.get(source.removesuffix("_partial"), "its benchmark"))
        return (f"_`benchmarks/results/{source}.json` does not exist yet: `{command}` writes it, "
                f"then `python benchmarks/tables.py --write` fills this table._")
    return TABLES[name](results[source])


def render(text: str, results: dict[str, dict] | None = None, only: str | None = None) -> str:
    """``text`` with every generated block (or only the ``only`` ones) rewritten from the results."""
    results = load_results() if results is None else results

    def sub(m: re.Match) -> str:
        if only is not None and m.group(2) != only:
            return m.group(0)
        return f"{m.group(1)}{block(m.group(2), results)}\n{m.group(4)}"

    return BLOCK.sub(sub, text)


def pages(root: Path = ROOT) -> list[Path]:
    """The pages that may hold generated tables: README.md and docs/*.md."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="With --write or --check and no NAME, every generated table is handled.")
    p.add_argument("name", nargs="?", choices=["readme", *TABLES], help="the table to print (or to write/check)")
    p.add_argument("--write", action="store_true",
                   help="rewrite the generated tables in README.md and docs/*.md from benchmarks/results/")
    p.add_argument("--check", action="store_true", help="exit 1 if a generated table differs from the results")
    args = p.parse_args(argv)
    if args.write or args.check:
        results = load_results()
        stale = []
        for page in pages():
            if not page.exists():
                continue
            text = page.read_text()
            new = render(text, results, args.name)
            if new != text:
                stale.append(page.relative_to(ROOT))
                if args.write:
                    page.write_text(new)
        verb = "rewrote" if args.write else "out of date"
        print(f"{verb}: {', '.join(map(str, stale))}" if stale else "every generated table is up to date")
        return 1 if stale and args.check else 0
    if args.name is None:
        p.error("name a table to print, or pass --write / --check")
    if args.name != "readme":
        path = RESULTS / f"{SOURCE[args.name]}.json"
        if not path.exists():
            p.error(f"{path} does not exist: run {COMMANDS[SOURCE[args.name]]} first")
    print(block(args.name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
