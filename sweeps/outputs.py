"""What a study leaves for people and for the next command: trials.csv, PNG plots, best.json."""

from __future__ import annotations

import csv
import json
import math
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from rl_laof.config_file import write_config_file
from rl_laof.runs import atomic_path, write_json
from sweeps.config import SweepConfig
from sweeps.spaces import TARGET_STAGE, Param, apply
from sweeps.study import RETRY, SURPLUS, WORKER, is_retry

#: fields of the trial budget and machine: a best config is for a full run at the preset, without them
_BUDGET_FIELDS = ("threads", "seed", "steps", "checkpoint_every", "eval_every", "mlp_probe_steps", "total_steps",
                  "decoder_steps", "tokenizer_steps", "prior_steps", "translator_steps", "lam_run", "latent_policy",
                  "task", "normalise", "eval_backgrounds", "latent", "policy")


def decode(space: list[Param], params: dict[str, Any]) -> dict[str, Any]:
    """Trial params as config values (list choices travel as JSON strings)."""
    kinds = {p.name: p for p in space}
    out = {}
    for k, v in params.items():
        p = kinds.get(k)
        out[k] = json.loads(v) if p is not None and p.choices is not None and isinstance(v, str) and v.startswith("[") \
            else v
    return out


def value_names(cfg: SweepConfig) -> list[str]:
    return {"probe": ["probe_mse"], "return": ["return"], "both": ["probe_mse", "return"]}[cfg.objective]


def write_csv(study: optuna.Study, cfg: SweepConfig, path: Path) -> int:
    trials = study.get_trials(deepcopy=False)
    names = sorted({k for t in trials for k in t.params})
    vnames = value_names(cfg)
    header = ["number", "state", *vnames, *names, "duration_s", "last_step", "retry_of", "worker", "fail_reason"]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for t in trials:
            values = t.values or [None] * len(vnames)
            dur = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete and \
                t.datetime_start else None
            state = "SURPLUS" if t.system_attrs.get(SURPLUS) else t.state.name
            w.writerow([t.number, state, *values, *[t.params.get(n) for n in names],
                        None if dur is None else round(dur, 1), t.last_step,
                        t.system_attrs.get("failed_trial") if is_retry(t) else None, t.system_attrs.get(WORKER),
                        t.user_attrs.get("fail_reason")])
    return len(trials)


def best_trials(study: optuna.Study, cfg: SweepConfig) -> list[optuna.trial.FrozenTrial]:
    """The best trial (single objective), or the Pareto front ordered by the first objective."""
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    if not done:
        return []
    if len(cfg.directions) == 1:
        return [study.best_trial]
    front = study.best_trials
    return sorted(front, key=lambda t: t.values[0])


def export_best(study: optuna.Study, cfg: SweepConfig, space: list[Param], fixed: dict[str, Any], out: Path,
                defaults: dict[str, Any]) -> list[Path]:
    """best.json (and best-<n>.json per Pareto trial): config files for ``--config``."""
    section = TARGET_STAGE[cfg.target]
    paths = []
    for i, t in enumerate(best_trials(study, cfg)):
        values = {k: v for k, v in {**defaults, **fixed}.items() if k not in _BUDGET_FIELDS}
        values.update(decode(space, t.params))
        source = {"study": cfg.name, "trial": t.number, "values": t.values, "objective": cfg.objective,
                  "value_names": value_names(cfg), "target": cfg.target, "task": cfg.task, "preset": cfg.preset,
                  "trial_budget": list(cfg.budget)}
        path = out / ("best.json" if i == 0 else f"best-{t.number}.json")
        paths.append(write_config_file(path, {section: apply(section, values)}, source))
    return paths


def plot(study: optuna.Study, cfg: SweepConfig, out: Path) -> dict[str, str]:
    """history.png, importance.png, parallel.png (+ pareto.png for two objectives); a plot that cannot be
    drawn yet (too few finished trials) is named with the reason instead."""
    import matplotlib  # deferred: matplotlib only for plots

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # deferred: matplotlib only for plots
    from optuna.visualization import matplotlib as ovm  # deferred: optuna's plots import matplotlib

    names = value_names(cfg)
    target = None if len(names) == 1 else (lambda t: t.values[0])
    kw = {} if target is None else {"target": target, "target_name": names[0]}
    plots = {"history": lambda: ovm.plot_optimization_history(study, **kw),
             "importance": lambda: ovm.plot_param_importances(study, **kw),
             "parallel": lambda: ovm.plot_parallel_coordinate(study, **kw)}
    if len(names) > 1:
        plots["pareto"] = lambda: ovm.plot_pareto_front(study, target_names=names)
    done: dict[str, str] = {}
    for name, draw in plots.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # optuna marks its matplotlib plots experimental
                ax = draw()
            fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
            fig.set_size_inches(9, 5.5)
            fig.tight_layout()
            with atomic_path(out / f"{name}.png") as tmp:
                fig.savefig(tmp, dpi=100, format="png")
            plt.close(fig)
            done[name] = str(out / f"{name}.png")
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:
            done[name] = f"not drawn: {exc}"
            plt.close("all")
    return done


def summary(study: optuna.Study, cfg: SweepConfig) -> dict[str, Any]:
    trials = study.get_trials(deepcopy=False)
    states = {s.name.lower(): sum(1 for t in trials if t.state == s and not t.system_attrs.get(SURPLUS))
              for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)}
    best = best_trials(study, cfg)
    out: dict[str, Any] = {"study": cfg.name, "target": cfg.target, "objective": cfg.objective,
                           "trials": sum(1 for t in trials if not is_retry(t) and not t.system_attrs.get(SURPLUS)),
                           "retries": sum(1 for t in trials if t.system_attrs.get(RETRY)), **states}
    if best:
        v = best[0].values
        out["best_trial"] = best[0].number
        out["best_value"] = v[0] if len(v) == 1 else v
        out["best_params"] = best[0].params
    return out


def write_outputs(study: optuna.Study, cfg: SweepConfig, space: list[Param], fixed: dict[str, Any], out: Path,
                  defaults: dict[str, Any]) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    write_csv(study, cfg, out / "trials.csv")
    s = summary(study, cfg)
    s["plots"] = plot(study, cfg, out)
    s["best_config"] = [str(p) for p in export_best(study, cfg, space, fixed, out, defaults)]
    s["csv"] = str(out / "trials.csv")
    write_json(out / "study.json", json.loads(json.dumps(s, default=lambda x: None if isinstance(x, float) and
                                                         math.isnan(x) else str(x))))
    return s
