"""Seeds, intervals and tests: the bootstrap intervals, the separation rule, the tests per claim and Holm."""

import numpy as np
import pytest

from rl_laof import stats


def test_interval_brackets_the_mean_and_is_reproducible():
    s = stats.interval([0.50, 0.55, 0.60])
    assert s["lo"] <= s["mean"] <= s["hi"] and s["mean"] == pytest.approx(0.55)
    assert 0.5 <= s["lo"] < 0.55 < s["hi"] <= 0.6
    assert stats.interval([0.50, 0.55, 0.60]) == s
    assert s["values"] == [0.50, 0.55, 0.60]


def test_separated_intervals_decide_and_overlapping_ones_tie():
    low, high = stats.interval([0.30, 0.32, 0.31]), stats.interval([0.60, 0.62, 0.61])
    assert stats.below(low, high) and stats.verdict(low, high) == "below" and stats.verdict(high, low) == "above"
    a, b = stats.interval([0.40, 0.60, 0.50]), stats.interval([0.45, 0.65, 0.55])
    assert stats.verdict(a, b) == "tie"
    one = stats.interval([0.1])  # one seed: no interval, never decided
    assert np.isnan(one["lo"]) and stats.verdict(one, high) == "tie"


def test_bad_values_are_refused():
    with pytest.raises(ValueError, match="finite"):
        stats.interval([0.1, float("nan")])
    with pytest.raises(ValueError, match="non-empty"):
        stats.interval([])


# --------------------------------------------------------------------------- stratified intervals

def test_stratified_interval_keeps_the_between_task_gap_out_of_the_interval():
    easy, hard = [10.0, 10.5, 9.5, 10.2, 9.8], [0.10, 0.12, 0.11, 0.13, 0.09]
    s = stats.stratified_interval({"easy": easy, "hard": hard})
    want = (np.mean(easy) + np.mean(hard)) / 2
    assert s["mean"] == pytest.approx(want) and s["lo"] <= want <= s["hi"]
    assert s["stratum_means"] == {"easy": pytest.approx(10.0), "hard": pytest.approx(0.11)}
    pooled = stats.interval(easy + hard)  # resampling across tasks: the gap between them widens it
    assert s["hi"] - s["lo"] < 0.2 * (pooled["hi"] - pooled["lo"])
    assert stats.stratified_interval({"easy": easy, "hard": hard}) == s  # seeded
    # unequal runs per stratum (NumPy path): the mean of stratum means, not of all runs
    u = stats.stratified_interval({"easy": easy[:3], "hard": hard})
    want = (np.mean(easy[:3]) + np.mean(hard)) / 2
    assert u["mean"] == pytest.approx(want) and u["lo"] <= want <= u["hi"] and u["hi"] - u["lo"] < 1.0
    one = stats.stratified_interval({"a": [1.0], "b": [2.0]})
    assert one["mean"] == 1.5 and np.isnan(one["lo"]) and stats.verdict(one, s) == "tie"
    with pytest.raises(ValueError, match="stratum 'b'"):
        stats.stratified_interval({"a": [1.0], "b": []})


def test_seed_range_note_names_small_samples_a_seed_range():
    assert stats.seed_range_note(3) == stats.seed_range_note(4) == "seed range"
    assert stats.seed_range_note(5) == stats.seed_range_note(20) == "95 % bootstrap interval"
    assert "no interval" in stats.seed_range_note(1)
    # why: with 3 seeds the percentile interval is exactly [min, max]
    s = stats.interval([0.2, 0.5, 0.9])
    assert (s["lo"], s["hi"]) == (pytest.approx(0.2), pytest.approx(0.9))


# --------------------------------------------------------------------------- tests per claim

def test_permutation_test_exact_p_values_by_hand():
    a, b = [1.0, 2.0, 3.0], [4.0, 5.0, 6.0]
    # 20 ways to pick 3 of 6; only the observed one has a mean difference as low as -3
    assert stats.permutation_test(a, b, alternative="less") == pytest.approx(1 / 20)
    assert stats.permutation_test(a, b, alternative="greater") == 1.0
    assert stats.permutation_test(a, b, alternative="two-sided") == pytest.approx(2 / 20)
    assert stats.permutation_test(b, a, alternative="greater") == pytest.approx(1 / 20)
    # 1+2 vs 3: of the 3 splits, {1,2} (diff -1.5) is the lowest; {1,3} gives 0, {2,3} gives 1.5
    assert stats.permutation_test([1.0, 2.0], [3.0], alternative="less") == pytest.approx(1 / 3)
    # paired: the differences are all -3; of the 8 sign flips only "no flip" reaches -3
    assert stats.permutation_test(a, b, alternative="less", paired=True) == pytest.approx(1 / 8)
    assert stats.permutation_test(a, b, alternative="two-sided", paired=True) == pytest.approx(2 / 8)
    # differences -1, +2, -4 (mean -1): flips with mean <= -1: (-1,-2,-4) -7/3, (-1,+2,-4) -1, (+1,-2,-4) -5/3
    assert stats.permutation_test([0.0, 5.0, 0.0], [1.0, 3.0, 4.0], alternative="less",
                                  paired=True) == pytest.approx(3 / 8)
    with pytest.raises(ValueError, match="paired"):
        stats.permutation_test(a, b[:2], paired=True)
    with pytest.raises(ValueError, match="alternative"):
        stats.permutation_test(a, b, alternative="lower")


def test_permutation_test_matches_scipy_exactly_and_when_sampled():
    from scipy import stats as st

    a = [0.1, 0.5, 0.3, 0.9, 0.2, 0.7, 0.4, 0.6]
    b = [0.6, 0.8, 0.5, 1.1, 0.3, 0.9, 0.75, 0.4]  # C(16, 8) = 12870 splits, 2^8 sign flips
    exact = stats.permutation_test(a, b, alternative="less")
    diff = lambda x, y, axis=-1: np.mean(x, axis) - np.mean(y, axis)  # noqa: E731
    assert exact == pytest.approx(st.permutation_test((a, b), diff, alternative="less", n_resamples=np.inf).pvalue)
    sampled = stats.permutation_test(a, b, alternative="less", max_exact=100, reps=20_000, seed=1)
    assert 0.01 < exact < 0.5 and sampled == pytest.approx(exact, abs=0.01)
    assert stats.permutation_test(a, b, alternative="less", max_exact=100, reps=20_000, seed=1) == sampled
    # never 0 when sampled: the smallest p is 1 / (reps + 1)
    far = stats.permutation_test(np.zeros(12) + np.arange(12) * 1e-3, np.ones(12), alternative="less", reps=999)
    assert far == pytest.approx(1 / 1000)
    paired = stats.permutation_test(a, b, alternative="less", paired=True)
    want = st.permutation_test((a, b), diff, permutation_type="samples", alternative="less",
                               n_resamples=np.inf).pvalue
    assert paired == pytest.approx(want) and paired < exact  # pairing removes the shared per-seed offsets
    sampled = stats.permutation_test(a, b, alternative="less", paired=True, max_exact=10, reps=20_000)
    assert sampled == pytest.approx(paired, abs=0.01)


def test_welch_test_agrees_with_its_formula():
    from scipy import stats as st

    a, b = np.array([0.31, 0.35, 0.29, 0.40, 0.33]), np.array([0.45, 0.52, 0.38, 0.61])
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    t = (a.mean() - b.mean()) / np.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))  # Welch-Satterthwaite
    assert stats.welch_test(a, b, alternative="less") == pytest.approx(st.t.cdf(t, df), rel=1e-9)
    assert stats.welch_test(a, b, alternative="greater") == pytest.approx(st.t.sf(t, df), rel=1e-9)
    assert stats.welch_test(a, b) == pytest.approx(2 * st.t.cdf(-abs(t), df), rel=1e-9)
    assert stats.welch_test(a, b) == pytest.approx(st.ttest_ind(a, b, equal_var=False).pvalue)
    assert stats.welch_test([1.0, 1.0], [2.0, 2.0], alternative="less") == 0.0  # no variance: t is infinite
    with pytest.raises(ValueError, match="at least 2"):
        stats.welch_test([1.0], [2.0, 3.0])


def test_holm_by_hand_monotone_and_order_free():
    p = {"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.005}
    # sorted d, a, c, b: 4 x 0.005 = 0.02, 3 x 0.01 = 0.03, 2 x 0.03 = 0.06, 1 x 0.04 = 0.04 -> max(0.06, 0.04)
    adj = stats.holm(p)
    assert list(adj) == list(p)
    assert adj == {"a": pytest.approx(0.03), "b": pytest.approx(0.06), "c": pytest.approx(0.06),
                   "d": pytest.approx(0.02)}
    assert stats.holm(dict(reversed(list(p.items())))) == adj
    order = sorted(p, key=p.get)
    assert all(adj[x] <= adj[y] for x, y in zip(order, order[1:], strict=False))  # monotone
    assert all(adj[k] >= p[k] for k in p)
    assert stats.holm({"x": 0.6, "y": 0.7}) == {"x": 1.0, "y": 1.0}  # capped at 1
    assert stats.holm({"x": 0.01, "y": 0.01}) == {"x": 0.02, "y": 0.02}  # ties: equal, whichever comes first
    assert stats.holm({}) == {}
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        stats.holm({"x": float("nan")})
