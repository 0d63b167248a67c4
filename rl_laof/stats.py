"""Seeds and intervals: how every benchmark decides a claim.

A figure is the mean over seeds with its 95 % bootstrap confidence interval from the ``rliable``
library (Agarwal et al. 2021: percentile bootstrap over runs, ``get_interval_estimates``). A
comparison counts as decided only where the two intervals do not overlap; otherwise it is a tie,
and is reported as one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

CONFIDENCE = 0.95
REPS = 2000


def interval(values: Sequence[float], reps: int = REPS, seed: int = 0) -> dict[str, Any]:
    """Mean of per-seed ``values`` and its 95 % bootstrap interval: {"mean", "lo", "hi", "values"}."""
    from rliable import library as rly  # deferred: rliable (with arch and pandas) only for benchmark intervals

    x = np.asarray(values, np.float64)
    if x.ndim != 1 or len(x) == 0 or not np.isfinite(x).all():
        raise ValueError(f"need a non-empty list of finite per-seed values, got {values!r}")
    if len(x) == 1:  # no interval from one seed
        return {"mean": float(x[0]), "lo": float("nan"), "hi": float("nan"), "values": x.tolist()}
    np.random.seed(seed)  # rliable draws from NumPy's global generator: make the interval reproducible
    point, ci = rly.get_interval_estimates({"m": x[:, None]}, lambda s: np.array([np.mean(s)]), reps=reps,
                                           confidence_interval_size=CONFIDENCE)
    return {"mean": float(point["m"][0]), "lo": float(ci["m"][0, 0]), "hi": float(ci["m"][1, 0]),
            "values": x.tolist()}


def below(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """True when interval ``a`` lies entirely below interval ``b`` (the claim a < b is decided)."""
    return bool(np.isfinite(a["hi"]) and np.isfinite(b["lo"]) and a["hi"] < b["lo"])


def verdict(a: dict[str, Any], b: dict[str, Any]) -> str:
    """"below" / "above" when the intervals separate, else "tie"."""
    if below(a, b):
        return "below"
    if below(b, a):
        return "above"
    return "tie"
