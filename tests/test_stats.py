"""Seeds and intervals: the bootstrap interval and the separation rule every benchmark uses."""

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
