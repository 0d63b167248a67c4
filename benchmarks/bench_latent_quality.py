"""Do optical-flow constraints make latent actions carry the action under distractors — on video, without
the simulator's oracle? Held-out probes, five seeds each with its own dataset, choices on ``val``.

    python benchmarks/bench_latent_quality.py [--quick] [--cells cheetah_laom,cheetah_hard,hopper_laom]
                                               [--seeds 5] [--methods ...] [--report-only]

Cells (task at a distractor level): ``cheetah_laom`` (cheetah-run at LAOM's setting: camera and colour 0.1,
every training video, dynamic — the primary cell), ``cheetah_hard`` (scale 0.3, occluders) and ``hopper_laom``
(hopper-hop, one of LAOM's tasks). Data per cell and seed s: its own dataset, collected with data seed s by the
task's PPO expert (action noise 0.1, the task's pixel action repeat, 64 px, 3 stacked frames): 32 train, 8 val,
16 eval and 16 heldout_bg (held-out background videos) episodes, with exact flow (the oracle) and TV-L1 flow
from RGB beside it (``python -m rl_laof.flow --method estimate``).

Methods (every one at the same number of unlabelled training windows, label methods' labelled batches on top
(``lam_config``); ``lam``'s defaults otherwise):

  lapo                              LAPO (VQ latent, pixel FDM)
  laom                              LAOM as published (dunnolab/laom: shared IMPALA encoder, IDM MLP on
                                    [E(o_t), E(o_t+k)], latent FDM on a detached E(o_t) vs its EMA, per-image
                                    augmentation)
  laof_rgb / laof_estimated /       LAOF on the three flow tiers (rl_laof.flow.tiers): RGB flow and no mask;
  laof_oracle                       RGB flow inside the agent mask; the simulator's exact flow and mask
  laof_action_1pct, laom_action_1pct   with an action head on 1 % labelled transitions (LAOF at the default tier)
  laof_action_<p>pct, laom_action_<p>pct  the label-budget curve, p = 5 / 10 (primary cell only)
  untrained                         the step-0 model of every LAOF run: the floor
  laom_h256, laom_h1024             pilots, only by name (``--methods``): LAOM at head width 256 / 1024

Metrics (``rl_laof.lam.quality``): the linear probe z -> a_t fit on every training transition (``probe``) and
on the 1 % labelled ones only (``probe_few``: what a user with 1 % labels gets), scored on held-out episodes,
over the mean action's MSE on them (1.0 = no information). Choices read ``val`` only: the default flow tier is
the most realistic tier whose LAOF beats LAPO on val with separated intervals (``tier_choice``). Reported figures
read ``eval`` (and ``heldout_bg_*``) only. Each figure: mean over seeds with a 95 % bootstrap interval (rliable;
with fewer than 5 seeds the JSON calls it a seed range); each claim a one-sided exact permutation test over
seeds (and Welch's t-test beside it), Holm-adjusted within its family (the issue's target claims on the two
LAOM-level cells; every other test: ``claim_family``). Keys of a cell other than cheetah-run at the
LAOM level lead with its prefix (``hopper_probe_laof``, ``hard_probe_few_lapo``, ``hopper_p_laof_vs_lapo``,
``hopper_flow_vs_zero_rgb``).

Resumes run by run: each finished model leaves a small record in ``benchmarks/results/latent_quality_runs/``
(committed, so a later session on a fresh clone continues where this one stopped); ``--report-only`` aggregates
the records there without training. A complete full run writes ``benchmarks/results/latent_quality.json``; an
incomplete one ``latent_quality_partial.json``. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np  # noqa: E402
from bench_args import alone, subset, write_result  # noqa: E402

import envs  # noqa: E402,F401  (loads EGL before anything imports envpool)
from envs.config import DistractorConfig  # noqa: E402
from rl_laof import stats  # noqa: E402
from rl_laof.data.config import COLLECT_PRESETS, CollectConfig  # noqa: E402
from rl_laof.lam import quality  # noqa: E402
from rl_laof.lam.config import LAMConfig  # noqa: E402
from rl_laof.presets import from_preset  # noqa: E402
from rl_laof.runs import atomic_path, dataset_dir, runs_root  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
RECORDS = RESULTS / "latent_quality_runs"
#: cell -> (task, distractor level, prefix of its keys in the JSON)
CELLS: dict[str, tuple[str, str, str]] = {
    "cheetah_laom": ("cheetah-run", "laom", ""),
    "cheetah_hard": ("cheetah-run", "hard", "hard_"),
    "hopper_laom": ("hopper-hop", "laom", "hopper_"),
}
PRIMARY = "cheetah_laom"
TIERS = ("rgb", "estimated", "oracle")  # most realistic first
#: the study's LAOF tier: val's choice (``tier_choice``: at 3 seeds rgb 0.588 vs LAPO 0.930 on val, intervals
#: separated); the label methods and the "laof" keys use it. The library's default (``LAMConfig().flow_tier``)
#: follows it once the choice stands at 5 seeds; the JSON says whether the two agree (``library_flow_tier``).
DEFAULT_TIER = "rgb"
METHODS: dict[str, dict] = {
    "lapo": dict(method="lapo"),
    "laom": dict(method="laom"),
    **{f"laof_{t}": dict(method="laof", flow_tier=t) for t in TIERS},
    "laof_action_1pct": dict(method="laof-action", labels=0.01, flow_tier=DEFAULT_TIER),
    "laom_action_1pct": dict(method="laom-action", labels=0.01),
}
CURVE = {f"{m}_action_{p}pct": dict(method=f"{m}-action", labels=p / 100, **({"flow_tier": DEFAULT_TIER} if m == "laof"
                                                                             else {}))
         for p in (5, 10) for m in ("laof", "laom")}
#: pilots (``--methods`` only; never in the table's plan): LAOM's quick head width, chosen on val
VARIANTS = {f"laom_h{w}": dict(method="laom", head_width=w) for w in (256, 1024)}
#: the data of every cell and seed: the quick collection preset with a val split and 16 + 16 reported episodes
DATA = dict(episodes=32, val_episodes=8, eval_episodes=16, heldout_bg_episodes=16)
QUICK_DATA = dict(episodes=6, val_episodes=2, eval_episodes=2, heldout_bg_episodes=2, episode_steps=60, expert="random")
#: equal samples for every method: steps x batch (LAOM's own batch and schedule inside the same sample count)
SAMPLES = 64_000
BUDGET = dict(eval_every=250, checkpoint_every=250, mlp_probe_steps=500)
QUICK_SAMPLES = 64 * 30
QUICK_BUDGET = dict(eval_every=15, checkpoint_every=15, mlp_probe_steps=30, eval_windows=128)


def dataset(cell: str, seed: int, quick: bool, progress: bool = True) -> Path:
    """The cell's dataset of data seed ``seed``, collected with exact and RGB-estimated flow if missing."""
    from rl_laof import pipeline
    from rl_laof.flow.targets import fill_flow

    task, level, _ = CELLS[cell]
    cfg = from_preset(CollectConfig, COLLECT_PRESETS, "quick", task=task, distractors=DistractorConfig.parse(level),
                      seed=seed, **(QUICK_DATA if quick else DATA))
    path = dataset_dir(task, cfg.name + ("-lq-smoke" if quick else "-lq"))
    pipeline.dataset(cfg, path, progress=progress)
    for method in ("exact", "estimate"):
        fill_flow(path, method, progress=progress)
    return path


def lam_config(name: str, seed: int, quick: bool, samples: int | None = None) -> LAMConfig:
    """Method ``name``'s config at ``seed`` with the study's budget of unlabelled video windows (``samples``: the
    budget study's), the same for every method; a label method's labelled batches come on top of it, as each
    reference schedules them: LAOM-Action a labelled batch beside every step ("joint"), LAOF-/LAPO-Action a
    labelled step between unlabelled ones ("alternate": twice the steps, half of them on the labelled 1 %).
    Counting labelled steps against the budget would halve LAOF-Action's video (its labelled steps weigh
    lambda = 0.01) but not LAOM-Action's (measured with 64k windows in all, 5 seeds: LAOF-Action's few-label probe
    0.80 against LAOF's 0.70)."""
    fields = {**METHODS, **CURVE, **VARIANTS}[name]
    resolved = LAMConfig(**fields).resolved()
    samples = samples or (QUICK_SAMPLES if quick else SAMPLES)
    budget = QUICK_BUDGET if quick else BUDGET
    steps = max(1, samples // resolved.batch_size) * (2 if resolved.label_schedule == "alternate" else 1)
    # the floor (untrained) is read from the LAOF runs (their IDM is LAPO's); LAOM's 8192-d step-0 probes would
    # add ~2.5 min to each of its runs for a figure the table does not use
    return LAMConfig(seed=seed, steps=steps, untrained_probes=resolved.base != "laom", **fields, **budget)


def unlabelled_windows(config: dict) -> int:
    """The unlabelled video windows a run of resolved ``config`` (a report's) trains on: its budget here."""
    return config["steps"] * config["batch_size"] // (2 if config.get("label_schedule") == "alternate" else 1)


#: how a run was executed, not what it is: "auto" precision resolves per CPU (bf16 where it is native), so records
#: made on another machine stand (each record's ``resolved`` keeps the precision it trained at)
EXECUTION_FIELDS = frozenset({"precision", "threads"})


def same_config(rec: dict, cfg: LAMConfig) -> bool:
    """A record is of ``cfg`` when every resolved field both know agrees (a field added to LAMConfig later, at a
    default that keeps the old behaviour, does not void the records made before it; fields resolved from the data,
    sigma and lambda, are the record's own; ``EXECUTION_FIELDS`` are not compared)."""
    saved = rec.get("trained_config")
    if saved is None:
        return False
    now = json.loads(json.dumps(cfg.resolved().to_dict()))
    keys = saved.keys() & now.keys() - set(cfg.unused_fields) - EXECUTION_FIELDS
    return all(saved[k] == now[k] for k in keys if now[k] is not None)


def budget_dir(samples: int | None) -> str:
    """Where a budget-study run lives beside the table's (``""``: the table's own budget)."""
    return "" if samples is None else f"samples-{samples}"


def record_path(cell: str, name: str, seed: int, quick: bool, samples: int | None = None) -> Path:
    root = runs_root() / "bench" / "latent_quality" / "quick-records" if quick else RECORDS
    return root / cell / budget_dir(samples) / f"{name}-s{seed}.json"


def run(cell: str, name: str, seed: int, quick: bool, progress: bool = True, samples: int | None = None) -> dict:
    """The record of one model (trained, or found, first): :func:`rl_laof.lam.quality.run_record` + identity."""
    from rl_laof.lam.training import train_lam

    path = record_path(cell, name, seed, quick, samples)
    cfg = lam_config(name, seed, quick, samples)
    out = (runs_root() / "bench" / "latent_quality" / ("quick" if quick else "full") / cell / budget_dir(samples)
           / f"{name}-s{seed}")
    old = json.loads(path.read_text()) if path.exists() else None
    if old is not None and same_config(old, cfg):
        if old.get("record_version") == quality.RECORD_VERSION:
            return old
        (out / "report.json").unlink(missing_ok=True)  # a finished model, older probes: evaluate it again
    data = dataset(cell, seed, quick, progress)
    try:
        rep = train_lam(cfg, data, out, progress=progress)
    except ValueError as exc:
        if "another config" not in str(exc):
            raise
        shutil.rmtree(out)  # a run of an older config of the method: this study's record is the current one's
        rep = train_lam(cfg, data, out, progress=progress)
    if rep.get("train_samples_per_s") is None and old is not None:  # re-evaluated only: the speed it trained at
        rep = {**rep, "train_samples_per_s": old.get("samples_per_s"), "train_seconds": old.get("train_seconds")}
    task, level, _ = CELLS[cell]
    rec = {"cell": cell, "task": task, "level": level, "method": name, "seed": seed, "data_seed": seed,
           "samples": unlabelled_windows(rep["config"]),
           "dataset": str(Path(data).name), "config": json.loads(json.dumps(cfg.to_dict())),
           "trained_config": rep["config"],
           "resolved": {k: rep["config"][k] for k in ("flow_tier", "label_share", "label_schedule", "latent_dim",
                                                      "batch_size", "steps", "precision") if k in rep["config"]},
           **quality.run_record(rep)}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(rec, indent=1) + "\n")
    return rec


def lam_run_dir(cell: str, name: str, seed: int, quick: bool = False, progress: bool = True) -> Path:
    """The run folder of method ``name``'s model at ``seed`` in ``cell`` (``"laof"``: the study's default tier,
    ``laof_<DEFAULT_TIER>``), trained through :func:`run` if its record is missing or stale, so that other
    benchmarks stand on exactly this study's models. A record whose folder lacks the model (a fresh clone with
    the committed records) has the model trained again in that folder, at the record's config."""
    from rl_laof.lam.training import train_lam

    name = f"laof_{DEFAULT_TIER}" if name == "laof" else name
    run(cell, name, seed, quick, progress)
    out = runs_root() / "bench" / "latent_quality" / ("quick" if quick else "full") / cell / f"{name}-s{seed}"
    if not (out / "model.pt").exists() or not (out / "report.json").exists():
        train_lam(lam_config(name, seed, quick), dataset(cell, seed, quick, progress), out, progress=progress)
    return out


def load_records(cells: list[str], names: list[str], seeds: list[int], quick: bool) -> list[dict]:
    out = []
    for cell in cells:
        for name in names:
            for seed in seeds:
                path = record_path(cell, name, seed, quick)
                if path.exists():
                    rec = json.loads(path.read_text())
                    if (same_config(rec, lam_config(name, seed, quick))
                            and rec.get("record_version") == quality.RECORD_VERSION):
                        out.append(rec)
    return out


def budget_study(cells: list[str]) -> dict:
    """Probe against training samples, per cell and method: every record of the table's budget and of each
    ``--samples`` budget (``samples-<N>/``), val (where choices are made: the budget) and eval (reported), and
    each run's normalised val curve. Any record version: the probes of a record do not depend on its version."""
    out: dict = {}
    for cell in cells:
        for path in sorted((RECORDS / cell).glob("**/*.json")):
            rec = json.loads(path.read_text())
            samples = unlabelled_windows(rec["trained_config"])
            row = out.setdefault(cell, {}).setdefault(rec["method"], {}).setdefault(str(samples), {
                "seeds": [], "val_probe": [], "eval_probe": [], "curves": []})
            row["seeds"].append(rec["seed"])
            row["val_probe"].append(round(rec["splits"]["val"]["probe"], 4))
            row["eval_probe"].append(round(rec["splits"]["eval"]["probe"], 4))
            if rec.get("curve_normalised"):
                row["curves"].append(rec["curve_normalised"])
    return out


def interval(values: list[float]) -> dict:
    return stats.interval(values) if values else {"mean": float("nan"), "lo": float("nan"), "hi": float("nan")}


def flat(key: str, values: list[float]) -> dict:
    """``key``: the mean over seeds, ``_lo`` / ``_hi`` its interval, ``_n`` the seeds it is over."""
    s = interval(values)
    return {key: round(s["mean"], 4), f"{key}_lo": round(s["lo"], 4), f"{key}_hi": round(s["hi"], 4),
            f"{key}_n": len(values)}


def cell_figures(records: list[dict], cell: str) -> tuple[dict, dict]:
    """(flat figures, each key led by the cell's prefix: ``probe_laof`` on cheetah-run at the LAOM level,
    ``hopper_probe_laof``, ``hard_probe_laof``; per-method per-seed values) from the reported splits only."""
    prefix = CELLS[cell][2]
    recs = [r for r in records if r["cell"] == cell]
    fig = quality.reported_figures(recs)
    out: dict = {}
    values: dict = {}
    names = sorted({r["method"] for r in recs})
    for split, tag in (("eval", ""), ("heldout_bg", "heldout_bg_")):
        for figure, key in (("probe", "probe"), ("probe_few", "probe_few"), ("mlp", "mlp_probe")):
            for name in names:
                v = quality.per_method(fig.get(f"{split}/{figure}", {}), name)
                if v:
                    values[f"{tag}{key}_{name}"] = v
                    out.update(flat(f"{prefix}{key}_{tag}{name}", v))
        # the floor: the untrained model of the default LAOF runs (the same IDM as LAPO's)
        for figure, key in (("untrained", "probe"), ("untrained_few", "probe_few")):
            v = quality.per_method(fig.get(f"{split}/{figure}", {}), f"laof_{DEFAULT_TIER}")
            if v:
                values[f"{tag}{key}_untrained"] = v
                out.update(flat(f"{prefix}{key}_{tag}untrained", v))
    # the default tier's LAOF is "laof"
    for key in list(out):
        for part in ("probe_", "probe_few_", "mlp_probe_", "probe_heldout_bg_", "probe_few_heldout_bg_",
                     "mlp_probe_heldout_bg_"):
            stem = f"{prefix}{part}laof_{DEFAULT_TIER}"
            if key.startswith(stem) and key[len(stem):] in ("", "_lo", "_hi", "_n"):
                out[f"{prefix}{part}laof{key[len(stem):]}"] = out[key]
    for tier in TIERS:
        v = [r["flow_vs_zero"] for r in sorted(recs, key=lambda r: r["seed"])
             if r["method"] == f"laof_{tier}" and "flow_vs_zero" in r]
        if v:
            out.update(flat(f"{prefix}flow_vs_zero_{tier}", v))
    return out, values


def tier_choice(records: list[dict], cell: str) -> dict:
    """The default tier as the val split decides it (the most realistic that beats LAPO, intervals separated)."""
    fig = quality.selection_figures([r for r in records if r["cell"] == cell]).get("val/probe", {})
    val = {t: quality.per_method(fig, f"laof_{t}") for t in TIERS}
    val["lapo"] = quality.per_method(fig, "lapo")
    val = {k: v for k, v in val.items() if v}
    if "lapo" not in val:
        return {"chosen": None, "val_probe": {}}
    chosen = quality.choose_tier(val, TIERS, "lapo",
                                 lambda a, b: len(a) > 1 and stats.below(stats.interval(a), stats.interval(b)))
    return {"chosen": chosen, "default": DEFAULT_TIER, "agrees": chosen == DEFAULT_TIER,
            "val_probe": {k: round(float(np.mean(v)), 4) for k, v in val.items()}}


#: Holm families, fixed before the hard cell's seeds 3-4 were in (and after the LAOM-level cells' figures were
#: known: docs/lam.md says so). "targets": the claims the issue's targets test (LAOF on a non-oracle tier vs
#: LAPO, LAOM vs LAPO, few-label LAOF-Action vs LAOM-Action) on the two LAOM-level cells; "reported": every
#: other test (the oracle tier, the hard cell), adjusted within its own family. One family of all the claims
#: is reported beside (``holm_one_family``), so the reader sees what the split changes.
TARGET_CELLS = ("cheetah_laom", "hopper_laom")
TARGET_CLAIMS = ("laof_vs_lapo", "laof_estimated_vs_lapo", "laom_vs_lapo", "few_laof_action_vs_few_laom_action")


def claim_family(cell: str, claim: str) -> str:
    """The Holm family a test belongs to: "targets" or "reported" (see ``TARGET_CLAIMS``)."""
    return "targets" if cell in TARGET_CELLS and claim in TARGET_CLAIMS else "reported"


def claims(values_by_cell: dict[str, dict]) -> dict:
    """One-sided tests of the issue's claims over seeds (exact permutation; Welch beside), Holm-adjusted within
    their family (``claim_family``)."""
    family: dict[str, tuple[list, list]] = {}  # "<cell prefix><claim>" -> (values a, values b)
    named: dict[str, tuple[str, str, str]] = {}  # the same key -> (cell prefix, claim, Holm family)
    pairs = {"laof_vs_lapo": ("probe_laof", "probe_lapo"), "laom_vs_lapo": ("probe_laom", "probe_lapo"),
             "few_laof_action_vs_few_laom_action": ("probe_few_laof_action_1pct", "probe_few_laom_action_1pct"),
             # every other tier against LAPO too: the target names any tier but the oracle, so each is a claim
             **{f"laof_{t}_vs_lapo": (f"probe_laof_{t}", "probe_lapo") for t in TIERS if t != DEFAULT_TIER}}
    for cell, values in values_by_cell.items():
        prefix = CELLS[cell][2]
        v = {**values, **{k.replace(f"laof_{DEFAULT_TIER}", "laof"): x for k, x in values.items()
                          if f"laof_{DEFAULT_TIER}" in k}}
        for claim, (a, b) in pairs.items():
            if a in v and b in v and min(len(v[a]), len(v[b])) >= 2:
                key = f"{prefix}{claim}"
                family[key], named[key] = (v[a], v[b]), (prefix, claim, claim_family(cell, claim))
    raw = {k: stats.permutation_test(a, b, alternative="less") for k, (a, b) in family.items()}
    welch = {k: stats.welch_test(a, b, alternative="less") for k, (a, b) in family.items()}
    adjusted: dict[str, float] = {}
    members: dict[str, list[str]] = {}
    for fam in ("targets", "reported"):
        keys = [k for k, n in named.items() if n[2] == fam]
        if keys:
            adjusted.update(stats.holm({k: raw[k] for k in keys}))
            members[fam] = keys
    one = stats.holm(raw) if raw else {}
    out: dict = {"holm_families": members,
                 "holm_one_family": {k: float(f"{one[k]:.3g}") for k in named}}
    for k, (prefix, claim, _) in named.items():  # p_laof_vs_lapo, hopper_p_laof_vs_lapo (p_raw_ / p_welch_ beside)
        out[f"{prefix}p_{claim}"] = float(f"{adjusted[k]:.3g}")  # three significant digits: a tiny p stays readable
        out[f"{prefix}p_raw_{claim}"] = float(f"{raw[k]:.3g}")
        out[f"{prefix}p_welch_{claim}"] = float(f"{welch[k]:.3g}")
    return out


def targets(r: dict) -> dict:
    """The issue's targets, each "met" / "not met" (and what decided it), on the cells that have the figures."""
    out = {}
    for cell, (_, _, prefix) in CELLS.items():
        def g(key: str, prefix: str = prefix) -> float | None:
            return r.get(key.replace("{p}", prefix))

        if g("{p}probe_laof") is None or g("{p}probe_lapo") is None:
            continue
        # "with a tier other than oracle": each non-oracle tier on its own figures and its own Holm-adjusted test
        verdicts = []
        for tier in TIERS[:-1]:
            claim = "laof" if tier == DEFAULT_TIER else f"laof_{tier}"
            hi, p = g(f"{{p}}probe_laof_{tier}_hi"), r.get(f"{prefix}p_{claim}_vs_lapo")
            if hi is None:
                continue
            met = hi < 0.5 * g("{p}probe_lapo_lo") and p is not None and p < 0.05
            verdicts.append(f"{tier}: {'met' if met else 'not met'} (hi {hi} vs 0.5 x LAPO lo "
                            f"{0.5 * g('{p}probe_lapo_lo'):.4f}, p {p})")
        if verdicts:
            out[f"{cell}/laof_half_lapo_non_oracle"] = ("met" if any(v.split(":")[1].startswith(" met")
                                                               for v in verdicts) else "not met") + \
                " -- " + "; ".join(verdicts)
        if g("{p}probe_laom_hi") is not None:
            out[f"{cell}/laom_below_lapo"] = "met" if g("{p}probe_laom_hi") < g("{p}probe_lapo_lo") else "not met"
        if g("{p}probe_laof_action_1pct") is not None:
            out[f"{cell}/labels_do_not_hurt"] = ("met" if g("{p}probe_laof_action_1pct") <= g("{p}probe_laof")
                                                 else "not met")
        if g("{p}probe_few_laof_action_1pct") is not None and g("{p}probe_few_laom_action_1pct") is not None:
            out[f"{cell}/few_laof_action_below_few_laom_action"] = (
                "met" if g("{p}probe_few_laof_action_1pct") < g("{p}probe_few_laom_action_1pct") else "not met")
    return out


def plot_curves(records: list[dict], path: Path) -> None:
    """Probe on val (over the mean action) against training samples, mean over seeds, one panel per cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = sorted({r["cell"] for r in records}, key=list(CELLS).index)
    if not cells:
        return
    fig, axes = plt.subplots(1, len(cells), figsize=(5 * len(cells), 3.8), squeeze=False)
    for ax, cell in zip(axes[0], cells, strict=True):
        by: dict = {}
        for r in records:
            if r["cell"] == cell:
                for samples, v in r["curve"]:
                    by.setdefault(r["method"], {}).setdefault(samples, []).append(v)
        for name, pts in sorted(by.items()):
            xs = sorted(pts)
            ax.plot(xs, [np.mean(pts[x]) for x in xs], "o-", ms=3, label=name)
        ax.axhline(1.0, color="gray", ls="--", lw=0.8)
        ax.set_title(cell)
        ax.set_xlabel("training samples")
        ax.set_ylabel("val linear probe MSE (unnormalised)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def aggregate(records: list[dict], cells: list[str], seeds: list[int], expected: int, quick: bool) -> dict:
    result: dict = {"quick": quick, "seeds": len(seeds), "datasets_per_task": len(seeds),
                    "tasks": sorted({CELLS[c][0] for c in cells}), "cells": cells, "primary_cell": PRIMARY,
                    "selection_split": quality.SELECTION_SPLIT, "reported_splits": list(quality.REPORTED_SPLITS),
                    "flow_tier": DEFAULT_TIER, "library_flow_tier": LAMConfig().flow_tier,
                    "samples_per_method": QUICK_SAMPLES if quick else SAMPLES,
                    "data": QUICK_DATA if quick else DATA, "runs_done": len(records), "runs_expected": expected,
                    "interval": stats.interval_label(len(seeds)) if hasattr(stats, "interval_label") else
                    ("95 % bootstrap interval" if len(seeds) >= 5 else "seed range")}
    values_by_cell = {}
    for cell in cells:
        figs, values = cell_figures(records, cell)
        result.update(figs)
        values_by_cell[cell] = values
        result[f"tier_choice_{cell}"] = tier_choice(records, cell)
    result.update(claims(values_by_cell))
    result["targets"] = targets(result)
    speeds: dict = {}
    for r in records:
        if r.get("samples_per_s"):
            speeds.setdefault(r["method"], []).append(r["samples_per_s"])
    result["train_samples_per_s"] = {k: round(float(np.median(v)), 1) for k, v in sorted(speeds.items())}
    # median: a run that shared the cores with another job trains several times slower; its record keeps that
    default = speeds.get(f"laof_{DEFAULT_TIER}")
    result["samples_per_s"] = round(float(np.median(default)), 1) if default else None
    result["per_seed"] = {cell: values_by_cell[cell] for cell in cells}
    return result


def main() -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a smoke run: tiny datasets, 30 steps a model")
    p.add_argument("--cells", default=",".join(CELLS), help="cells to run, comma-separated")
    p.add_argument("--methods", default=None, help="methods to run (default: all; the curve on the primary cell)")
    p.add_argument("--seeds", type=int, default=5, help="seeds, each with its own dataset (>= 5 for intervals)")
    p.add_argument("--report-only", action="store_true", help="aggregate the records there are; train nothing")
    p.add_argument("--samples", type=int, default=None,
                   help=f"the budget study: train these methods at this many samples (not {SAMPLES}, the table's); "
                        "records beside the table's, results in latent_quality_budget.json")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args()
    if args.seeds < 1:
        p.error(f"--seeds {args.seeds}: need at least 1 (5 or more for intervals that can decide a claim)")
    cells = subset(p, args.cells, CELLS, "cells")
    names = (subset(p, args.methods, {**METHODS, **CURVE, **VARIANTS}, "methods") if args.methods
             else [*METHODS, *CURVE])
    seeds = list(range(args.seeds))
    progress = not args.no_progress
    t0 = time.perf_counter()
    if args.samples is not None:  # the budget study: where does each method stand as samples grow?
        if args.samples < 1 or args.quick:
            p.error(f"--samples {args.samples}: a positive count, without --quick")
        samples = None if args.samples == SAMPLES else args.samples
        if not args.report_only:
            for seed in seeds:
                for cell in cells:
                    for name in names:
                        t = time.perf_counter()
                        run(cell, name, seed, False, progress, samples)
                        print(f"{cell} {name} s{seed} at {args.samples} samples: {time.perf_counter() - t:.0f} s",
                              flush=True)
        result = {"cells": cells, "table_samples": SAMPLES, "selection_split": quality.SELECTION_SPLIT,
                  "budget": budget_study(cells)}
        write_result("latent_quality_budget", result)
        print(json.dumps(result))
        return result
    plan = [(seed, cell, name) for seed in seeds for cell in cells for name in names
            if name in METHODS or cell == PRIMARY]  # seed-major: every method has a seed before any has five
    if not args.report_only:
        for i, (seed, cell, name) in enumerate(plan):
            t = time.perf_counter()
            run(cell, name, seed, args.quick, progress)
            print(f"[{i + 1}/{len(plan)}] {cell} {name} s{seed}: {time.perf_counter() - t:.0f} s", flush=True)
    records = load_records(cells, names, seeds, args.quick)
    result = aggregate(records, cells, seeds, len(plan), args.quick)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    complete = len(records) == len(plan) and set(cells) == set(CELLS) and len(seeds) >= 5
    name = "latent_quality" if complete else "latent_quality_partial"
    plot_curves(records, (RESULTS if not args.quick else runs_root() / "bench" / "latent_quality")
                / f"{name}_curves.png")
    if not args.quick:
        write_result(name, result)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    alone(main)
