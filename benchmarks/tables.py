"""README tables made from the committed benchmark results (``benchmarks/results/<name>.json``).

    python benchmarks/tables.py latent_quality      # prints the markdown table
    python benchmarks/tables.py lam_speed           # where a LAOF step's time goes (from the same file)
    python benchmarks/tables.py imitation           # policies with 1 % labels
    python benchmarks/tables.py train               # the main job: PPO in latent action spaces

A figure in the README is always one of these files' numbers, so it has its command and its data beside it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"

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
    if key + "_lo" not in r:  # one seed: no interval
        return f"{r[key]:.{digits}f}"
    return f"{r[key]:.{digits}f} [{r[key + '_lo']:.{digits}f}, {r[key + '_hi']:.{digits}f}]"


def latent_quality(r: dict) -> str:
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
    """Where a LAOF training step's time goes, before and after (``speed_profile`` of latent_quality.json)."""
    sp = {"before": r["speed_profile"]["before"], "after": r["speed_profile"]["after"]}
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
    ("bc_all", "BC on all labels (the ceiling)"),
    ("bc_labels", "BC on the 1 % labels"),
    ("idm_bc", "IDM relabelling + BC"),
    ("lapo_bc", "latent BC (LAPO)"),
    ("laof_bc", "latent BC (LAOF)"),
    ("laof_lafp", "**LAFP (LAOF)**"),
    ("laof_action_lafp", "LAFP (LAOF-Action)"),
]


def imitation(r: dict) -> str:
    """Per method: return / data's return on the data's and held-out backgrounds (mean [95 % CI] over seeds),
    the raw return, and the held-out action MSE / mean action (``imitation.json``)."""
    lines = ["| method | return / data, data's backgrounds | held-out backgrounds | raw return | "
             "held-out action MSE / mean action |", "|---|---|---|---|---|"]
    for key, label in IMITATION_ROWS:
        if f"ret_{key}" not in r:
            continue
        lines.append(f"| {label} | {_cell(r, f'ret_{key}')} | {_cell(r, f'ret_heldout_{key}')} | "
                     f"{r[f'raw_ret_{key}']:.1f} | {_cell(r, f'action_mse_{key}')} |")
    lines.append(f"| uniform random actions | {r['ret_random']:.3f} | {r['ret_heldout_random']:.3f} | "
                 f"{r['raw_ret_random']:.1f} | – |")
    return "\n".join(lines)


def train(r: dict) -> str:
    """The main job's benchmark: per action space, step-0 / final / best return and steps/s (``train.json``)."""
    lines = ["| action space | return at step 0 | final return | best evaluation | agent steps/s |",
             "|---|---|---|---|---|"]
    for key, label in (("none", "raw actions"), ("lapo", "LAPO latents"), ("laof", "**LAOF latents**")):
        if f"ret_{key}" not in r:
            continue
        lines.append(f"| {label} | {_cell(r, f'first_eval_{key}', 1)} | {_cell(r, f'ret_{key}', 1)} | "
                     f"{_cell(r, f'best_{key}', 1)} | {_cell(r, f'sps_{key}', 1)} |")
    lines.append(f"| the pixel env alone (random actions) | – | – | – | {r['sps_env_only']:.1f} |")
    return "\n".join(lines)


TABLES = {"latent_quality": latent_quality, "lam_speed": lam_speed, "imitation": imitation, "train": train}
SOURCE = {"latent_quality": "latent_quality", "lam_speed": "latent_quality", "imitation": "imitation",
          "train": "train"}  # table -> results file


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("name", choices=list(TABLES))
    args = p.parse_args()
    path = RESULTS / f"{SOURCE[args.name]}.json"
    if not path.exists():
        p.error(f"{path} does not exist: run python benchmarks/bench_{SOURCE[args.name]}.py first")
    print(TABLES[args.name](json.loads(path.read_text())))


if __name__ == "__main__":
    main()
