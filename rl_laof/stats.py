"""Seeds, intervals and tests: how every benchmark decides a claim.

A figure is the mean over seeds with its 95 % bootstrap confidence interval from the ``rliable``
library (Agarwal et al. 2021: percentile bootstrap over runs, ``get_interval_estimates``). Over
several tasks / datasets the interval is *stratified* (:func:`stratified_interval`): runs are
resampled within each task, so the spread between tasks, which is not noise, does not widen it.

A claim (a < b) gets a p-value from a test over seeds: :func:`permutation_test` (exact where the
splits can be enumerated; assumes only exchangeable seeds), with :func:`welch_test` beside it as the
textbook check; several claims of one table are corrected together with :func:`holm`. Where intervals
are used alone, a comparison counts as decided only where the two intervals do not overlap
(:func:`verdict`); otherwise it is a tie, and is reported as one.

With fewer than 5 seeds a 95 % percentile interval is (about) the [min, max] of the seeds: a report
names it a seed range (:func:`seed_range_note`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

CONFIDENCE = 0.95
REPS = 2000
#: random splits of a Monte Carlo permutation test: its smallest p-value is 1 / (PERMUTATION_REPS + 1)
PERMUTATION_REPS = 20_000
#: a permutation test enumerates every split when there are at most this many, else it samples them
MAX_EXACT = 20_000
#: seeds from which a 95 % percentile interval is more than the seeds' [min, max] (see seed_range_note)
MIN_SEEDS_FOR_INTERVAL = 5

Alternative = Literal["less", "greater", "two-sided"]
_ALTERNATIVES = ("less", "greater", "two-sided")


def _finite(values: Sequence[float], what: str = "per-seed values") -> np.ndarray:
    x = np.asarray(values, np.float64)
    if x.ndim != 1 or len(x) == 0 or not np.isfinite(x).all():
        raise ValueError(f"need a non-empty list of finite {what}, got {values!r}")
    return x


def interval(values: Sequence[float], reps: int = REPS, seed: int = 0) -> dict[str, Any]:
    """Mean of per-seed ``values`` and its 95 % bootstrap interval: {"mean", "lo", "hi", "values"}."""
    from rliable import library as rly  # deferred: rliable (with arch and pandas) only for benchmark intervals

    x = _finite(values)
    if len(x) == 1:  # no interval from one seed
        return {"mean": float(x[0]), "lo": float("nan"), "hi": float("nan"), "values": x.tolist()}
    np.random.seed(seed)  # rliable draws from NumPy's global generator: make the interval reproducible
    point, ci = rly.get_interval_estimates({"m": x[:, None]}, lambda s: np.array([np.mean(s)]), reps=reps,
                                           confidence_interval_size=CONFIDENCE)
    return {"mean": float(point["m"][0]), "lo": float(ci["m"][0, 0]), "hi": float(ci["m"][1, 0]),
            "values": x.tolist()}


def stratified_interval(values_by_stratum: Mapping[str, Sequence[float]], reps: int = REPS,
                        seed: int = 0) -> dict[str, Any]:
    """Mean over strata (tasks, datasets) of the per-stratum mean over seeds, and its 95 % stratified
    bootstrap interval: {"mean", "lo", "hi", "values" (per stratum), "stratum_means"}.

    Why stratified: pooling the runs of several tasks and resampling them together would let a resample draw
    more runs of the easy task than of the hard one, so the between-task difference (fixed by the choice of
    tasks, not noise) would widen the interval. Resampling runs *within* each task (rliable's
    ``StratifiedBootstrap``, Agarwal et al. 2021) leaves only the seed-to-seed noise. Every stratum weighs the
    same. With the same number of runs in every stratum this is rliable's own bootstrap; with unequal numbers
    (which rliable's (runs x tasks) matrix cannot hold) the same resampling is done here with NumPy. No stratum
    with two or more runs: no interval (NaN), as :func:`interval` gives for one seed.
    """
    if not values_by_stratum:
        raise ValueError("need at least one stratum of per-seed values")
    strata = {str(k): _finite(v, f"per-seed values of stratum {k!r}") for k, v in values_by_stratum.items()}
    means = {k: float(x.mean()) for k, x in strata.items()}
    mean = float(np.mean(list(means.values())))
    out: dict[str, Any] = {"mean": mean, "lo": float("nan"), "hi": float("nan"),
                           "values": {k: x.tolist() for k, x in strata.items()}, "stratum_means": means}
    sizes = {len(x) for x in strata.values()}
    if max(sizes) == 1:
        return out
    if len(sizes) == 1:
        from rliable import library as rly  # deferred: rliable only for benchmark intervals

        scores = np.stack(list(strata.values()), axis=1)  # (runs, tasks): rliable resamples runs per task
        np.random.seed(seed)  # rliable draws from NumPy's global generator
        _, ci = rly.get_interval_estimates({"m": scores}, lambda s: np.array([np.mean(s)]), reps=reps,
                                           confidence_interval_size=CONFIDENCE)
        out.update(lo=float(ci["m"][0, 0]), hi=float(ci["m"][1, 0]))
        return out
    rng = np.random.default_rng(seed)
    boot = np.zeros(reps)
    for x in strata.values():
        boot += x[rng.integers(len(x), size=(reps, len(x)))].mean(1)
    boot /= len(strata)
    tail = 100 * (1 - CONFIDENCE) / 2
    lo, hi = np.percentile(boot, [tail, 100 - tail])
    out.update(lo=float(lo), hi=float(hi))
    return out


def seed_range_note(n: int) -> str:
    """What a report calls the interval of ``n`` seeds (for a stratified interval: the fewest runs of a stratum).

    Why: a percentile bootstrap of a mean over n seeds can only move within [min, max] of the seeds, and with
    few seeds its 2.5 % / 97.5 % percentiles sit at the ends: all n resamples hit the smallest seed with
    probability n^-n (3.7 % for n = 3, above the 2.5 % tail, so the lower bound *is* the minimum; 0.4 % for
    n = 4, still within a hair of it). Such an interval is a seed range, not a 95 % confidence interval, and
    is named so. From 5 seeds on (the project's rule) it is called a 95 % bootstrap interval.
    """
    if n < 1:
        raise ValueError(f"n={n}: need at least one seed")
    if n == 1:
        return "single seed (no interval)"
    return "95 % bootstrap interval" if n >= MIN_SEEDS_FOR_INTERVAL else "seed range"


#: the name benchmarks may ask for (``stats.interval_label``)
interval_label = seed_range_note


def _check_alternative(alternative: str) -> None:
    if alternative not in _ALTERNATIVES:
        raise ValueError(f"alternative={alternative!r}: use one of {', '.join(_ALTERNATIVES)}")


def _p_value(null: np.ndarray, observed: float, alternative: str, scale: float) -> tuple[int, int]:
    """How many statistics of the null distribution are at least as extreme as ``observed``, and how many there
    are. A relative tolerance keeps float round-off from turning a tie into a miss (the observed split itself
    must always count)."""
    tol = 1e-9 * max(1.0, scale)
    if alternative == "less":
        hits = null <= observed + tol
    elif alternative == "greater":
        hits = null >= observed - tol
    else:
        hits = np.abs(null) >= abs(observed) - tol
    return int(hits.sum()), len(null)


def permutation_test(a: Sequence[float], b: Sequence[float], alternative: Alternative = "two-sided",
                     reps: int = PERMUTATION_REPS, seed: int = 0, paired: bool = False,
                     max_exact: int = MAX_EXACT) -> float:
    """p-value of the difference of means mean(a) - mean(b) over seeds, by permutation.

    ``alternative``: "less" tests mean(a) < mean(b), "greater" mean(a) > mean(b), "two-sided" either (|T|).

    Why a permutation test: it assumes only that, were the methods alike, the seeds' labels could be swapped
    (no normality, which a handful of seeds cannot show), and it is exact. Unpaired, the null distribution is
    every way of splitting the pooled values into groups of len(a) and len(b); ``paired=True`` (when seed i of
    a and of b share a dataset, so their difference removes the dataset's effect) flips the signs of the
    per-seed differences a_i - b_i instead. Every split is enumerated when there are at most ``max_exact``
    (C(n_a + n_b, n_a), or 2^n paired): the p-value is then exact (a=[1,2,3], b=[4,5,6], "less": 1/20).
    Otherwise ``reps`` random splits from ``seed`` give the Monte Carlo p-value (1 + hits) / (1 + reps),
    which never understates p (and is never 0).
    """
    _check_alternative(alternative)
    x, y = _finite(a, "values of a"), _finite(b, "values of b")
    if reps < 1:
        raise ValueError(f"reps={reps}: need at least 1")
    rng = np.random.default_rng(seed)
    if paired:
        if len(x) != len(y):
            raise ValueError(f"paired=True needs one value of a and of b per seed; got {len(x)} and {len(y)}")
        d = x - y
        observed = float(d.mean())
        n = len(d)
        if 2 ** n <= max_exact:
            signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
            exact = True
        else:
            signs = rng.choice((1.0, -1.0), size=(reps, n))
            exact = False
        null = (signs * d).mean(1)
        scale = float(np.abs(d).max())
    else:
        pooled = np.concatenate([x, y])
        n, k = len(pooled), len(x)
        if math.comb(n, k) <= max_exact:
            idx = np.array(list(itertools.combinations(range(n), k)), np.int64).reshape(-1, k)
            exact = True
        else:
            idx = np.argsort(rng.random((reps, n)), axis=1)[:, :k]
            exact = False
        sum_a = pooled[idx].sum(1)
        null = sum_a / k - (pooled.sum() - sum_a) / (n - k)
        observed = float(x.mean() - y.mean())
        scale = float(np.abs(pooled).max())
    hits, total = _p_value(null, observed, alternative, scale)
    if exact:  # the observed split is among the enumerated ones
        return min(1.0, hits / total)
    return min(1.0, (hits + 1) / (total + 1))


def welch_test(a: Sequence[float], b: Sequence[float], alternative: Alternative = "two-sided") -> float:
    """p-value of Welch's t-test (unequal variances; ``scipy.stats.ttest_ind(equal_var=False)``) of mean(a) vs
    mean(b); ``alternative`` as in :func:`permutation_test`.

    Why beside the permutation test: it is the test a reader knows, and its p-value is not bounded below by the
    number of splits (with 3 + 3 seeds a permutation test cannot go under 0.05), but it leans on normal
    means, which few seeds cannot check: report it as a check, decide on the permutation test. Seeds that share
    datasets are paired: use ``permutation_test(..., paired=True)``.
    """
    from scipy import stats as st  # deferred: scipy only for benchmark statistics

    _check_alternative(alternative)
    x, y = _finite(a, "values of a"), _finite(b, "values of b")
    if len(x) < 2 or len(y) < 2:
        raise ValueError(f"Welch's t-test needs at least 2 values per group; got {len(x)} and {len(y)}")
    if np.ptp(x) == 0 and np.ptp(y) == 0:  # no variance at all: t is undefined (scipy: NaN and a warning)
        if x[0] == y[0]:
            return 1.0
        less = x[0] < y[0]
        return {"less": 0.0 if less else 1.0, "greater": 1.0 if less else 0.0, "two-sided": 0.0}[alternative]
    return float(st.ttest_ind(x, y, equal_var=False, alternative=alternative).pvalue)


def holm(pvalues: Mapping[str, float]) -> dict[str, float]:
    """Holm-Bonferroni adjusted p-values of a family of claims, by name (the same names back).

    Why: testing m claims at 0.05 each finds a false one with up to m x 0.05 probability; Holm's step-down
    correction keeps that family-wise error at 0.05 and is uniformly more powerful than Bonferroni. With the
    raw p-values sorted p_(1) <= ... <= p_(m): adjusted p_(i) = max over j <= i of min(1, (m - j + 1) p_(j)),
    so the adjusted values keep the order of the raw ones (monotone), are capped at 1, and do not depend on
    the order the claims are given in (ties get equal values). Compare each with 0.05.
    """
    items = {str(k): float(v) for k, v in pvalues.items()}
    bad = {k: v for k, v in items.items() if not 0.0 <= v <= 1.0}  # NaN fails too
    if bad:
        raise ValueError(f"p-values must lie in [0, 1]: {bad}")
    m = len(items)
    out: dict[str, float] = {}
    running = 0.0
    for j, (name, p) in enumerate(sorted(items.items(), key=lambda kv: (kv[1], kv[0]))):
        running = max(running, min(1.0, (m - j) * p))
        out[name] = running
    return {name: out[name] for name in items}


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
