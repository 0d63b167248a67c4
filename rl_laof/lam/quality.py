"""The latent-quality study's bookkeeping: one record per trained model, choices on ``val``, figures on ``eval``.

A lam report (``rl_laof.lam.training.train_lam``) holds probes on every held-out split. The study
(``benchmarks/bench_latent_quality.py``) keeps of each run a small :func:`run_record`, and reads it in two
strictly separate ways:

- :func:`selection_figures` reads ``val`` only: which flow tier becomes the default, which budget is
  enough. Nothing reported is computed from it;
- :func:`reported_figures` reads ``eval`` and ``heldout_bg`` only: the figures of the results table.

So a choice never sees the episodes it is reported on (``tests/test_latent_quality.py`` changes the val
figures of a set of records and checks that no reported figure moves).

Every probe figure is normalised by the mean action's MSE on the same episodes (1.0 = the latent says
nothing about the action). ``probe``: the linear probe fit on every training transition (latent quality);
``probe_few``: fit on the 1 % labelled transitions only (``frac-0.01``), what a user with 1 % labels gets.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

#: bump when what a record holds changes (2: the few-label probe's ridge chosen by leave-one-out)
RECORD_VERSION = 2
REPORTED_SPLITS = ("eval", "heldout_bg")
SELECTION_SPLIT = "val"
FEW_LABELS = "frac-0.01"


def run_record(report: dict[str, Any]) -> dict[str, Any]:
    """The figures of one lam report the study keeps, per held-out split (``val``, ``eval``,
    ``heldout_bg``): probe, probe_few, mlp probe, the untrained model's probe, all normalised; and the flow
    decoder's loss against its trivial predictors, the speed and the probe-vs-steps curve (on ``val``)."""
    out: dict[str, Any] = {"record_version": RECORD_VERSION, "splits": {}}
    for split, p in report["probes"].items():
        if not isinstance(p, dict) or "mean_action_mse" not in p:
            continue
        base = p["mean_action_mse"]
        s = {"probe": p["linear_action_mse"] / base}
        if FEW_LABELS in p.get("budget_curve", {}):
            s["probe_few"] = p["budget_curve"][FEW_LABELS] / base
        if p.get("mlp_action_mse") is not None:
            s["mlp"] = p["mlp_action_mse"] / base
        u = (report.get("untrained_probes") or {}).get(split)
        if u is not None:
            s["untrained"] = u["linear_action_mse"] / u["mean_action_mse"]
            if FEW_LABELS in u.get("budget_curve", {}):
                s["untrained_few"] = u["budget_curve"][FEW_LABELS] / u["mean_action_mse"]
        out["splits"][split] = s
    fe = report.get("final_eval", {})
    if "eval/flow" in fe:  # on the selection split (the periodic evaluation's)
        out["flow_vs_zero"] = fe["eval/flow"] / fe["eval/flow_zero"]
        if "eval/flow_mean" in fe:
            out["flow_vs_mean"] = fe["eval/flow"] / fe["eval/flow_mean"]
    out["flow_tier"] = report.get("flow_tier")
    out["samples_per_s"] = report.get("train_samples_per_s")
    out["train_seconds"] = report.get("train_seconds")
    out["selection_split"] = report.get("selection_split")
    # x: unlabelled video windows seen (an "alternate" label schedule spends every other step on labels)
    samples = report["config"]["batch_size"] / (2 if report["config"].get("label_schedule") == "alternate" else 1)
    out["curve"] = [[h["step"] * samples, h["eval/linear_probe_action_mse"]] for h in report["history"]
                    if "eval/linear_probe_action_mse" in h]
    # the same over its mean action (1.0 = no information), where the report has the baseline
    out["curve_normalised"] = [[h["step"] * samples, h["eval/linear_probe_action_mse"] / h["eval/mean_action_mse"]]
                               for h in report["history"] if "eval/mean_action_mse" in h]
    return out


def _figures(records: Iterable[dict[str, Any]], splits: tuple[str, ...]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for r in records:
        key = (r["method"], r["seed"])
        for split in splits:
            for name, v in r["splits"].get(split, {}).items():
                out.setdefault(f"{split}/{name}", {})[key] = v
    return out


def reported_figures(records: Iterable[dict[str, Any]]) -> dict[str, dict[tuple[str, int], float]]:
    """``{"<split>/<figure>": {(method, seed): value}}`` of the reported splits (eval, heldout_bg) only."""
    return _figures(records, REPORTED_SPLITS)


def selection_figures(records: Iterable[dict[str, Any]]) -> dict[str, dict[tuple[str, int], float]]:
    """The same for the selection split (val) only: what choices read."""
    return _figures(records, (SELECTION_SPLIT,))


def per_method(figures: dict[tuple[str, int], float], method: str) -> list[float]:
    """One figure's values of ``method``, in seed order."""
    return [v for (m, _), v in sorted(figures.items(), key=lambda kv: kv[0][1]) if m == method]


def choose_tier(val_probe: dict[str, list[float]], tiers: tuple[str, ...], baseline: str, separated) -> str | None:
    """The most realistic flow tier (``tiers`` ordered from most to least realistic) whose LAOF beats
    ``baseline`` on val: ``separated(a, b)`` decides "a below b" from per-seed values (intervals that separate).
    None when no tier does."""
    for tier in tiers:
        if tier in val_probe and separated(val_probe[tier], val_probe[baseline]):
            return tier
    return None
