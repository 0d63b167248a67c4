"""The latent-quality study reads val for choices and eval / heldout_bg for what it reports, never the other way."""

from __future__ import annotations

import copy

import pytest

from rl_laof.lam import quality


def _report(probe: dict[str, float], few: dict[str, float]) -> dict:
    """A lam report's fields the study reads, with probes of each split (mean action MSE 2.0)."""
    return {
        "probes": {split: {"linear_action_mse": 2 * p, "mean_action_mse": 2.0,
                           "budget_curve": {"frac-0.01": 2 * few[split], "all": 2 * p}}
                   for split, p in probe.items()},
        "untrained_probes": {split: {"linear_action_mse": 1.9, "mean_action_mse": 2.0, "budget_curve": {}}
                             for split in probe},
        "final_eval": {"eval/flow": 0.1, "eval/flow_zero": 0.4},
        "history": [{"step": 0, "eval/linear_probe_action_mse": 1.0, "eval/mean_action_mse": 2.0},
                    {"step": 10, "eval/linear_probe_action_mse": 0.5, "eval/mean_action_mse": 2.0}],
        "config": {"batch_size": 64}, "flow_tier": "estimated", "train_samples_per_s": 100.0,
        "selection_split": "val",
    }


def _records(val_offset: float) -> list[dict]:
    out = []
    for method, level in (("lapo", 0.9), ("laof_estimated", 0.3), ("laof_rgb", 0.8)):
        for seed in range(5):
            probe = {"val": level + val_offset + 0.01 * seed, "eval": level + 0.01 * seed,
                     "heldout_bg": level + 0.05 + 0.01 * seed}
            rec = quality.run_record(_report(probe, {k: v + 0.1 for k, v in probe.items()}))
            out.append({"method": method, "seed": seed, **rec})
    return out


def test_run_record_normalises_by_the_mean_action():
    rec = quality.run_record(_report({"val": 0.5, "eval": 0.25}, {"val": 0.7, "eval": 0.6}))
    assert rec["splits"]["eval"] == {"probe": 0.25, "probe_few": 0.6, "untrained": 0.95}
    assert rec["flow_vs_zero"] == pytest.approx(0.25)
    assert rec["curve"] == [[0, 1.0], [640, 0.5]]
    assert rec["curve_normalised"] == [[0, 0.5], [640, 0.25]]  # over the periodic evaluation's mean action


def test_val_never_reaches_a_reported_figure():
    base = _records(0.0)
    moved = _records(5.0)  # every val figure changed, nothing else
    assert quality.reported_figures(base) == quality.reported_figures(moved)
    assert quality.selection_figures(base) != quality.selection_figures(moved)
    scrambled = copy.deepcopy(base)
    for r in scrambled:
        r["splits"]["val"] = {"probe": float("nan")}
    assert quality.reported_figures(scrambled) == quality.reported_figures(base)
    assert not any(k.startswith("val/") for k in quality.reported_figures(base))
    assert all(k.startswith("val/") for k in quality.selection_figures(base))


def test_the_tier_is_chosen_on_val_most_realistic_first():
    def below(a, b):
        return max(a) < min(b)

    fig = quality.selection_figures(_records(0.0))["val/probe"]
    val = {name: quality.per_method(fig, name) for name in ("lapo", "laof_estimated", "laof_rgb")}
    val = {k.removeprefix("laof_"): v for k, v in val.items()}
    assert quality.choose_tier(val, ("rgb", "estimated", "oracle"), "lapo", below) == "rgb"
    val["rgb"] = [1.0] * 5  # rgb no longer beats LAPO on val: the next tier
    assert quality.choose_tier(val, ("rgb", "estimated", "oracle"), "lapo", below) == "estimated"
    val["estimated"] = [1.0] * 5
    assert quality.choose_tier(val, ("rgb", "estimated", "oracle"), "lapo", below) is None


def test_few_label_probe_chooses_its_ridge_by_leave_one_out_on_the_labels_alone():
    import numpy as np

    from rl_laof.lam import probes

    rng = np.random.default_rng(0)
    z = rng.normal(size=(40, 64))
    y = z[:, :3] @ rng.normal(size=(3, 2)) * 0.2 + 0.3 * rng.normal(size=(40, 2))
    # the n x n dual (fewer samples than dimensions) gives the primal's weights
    w, b = probes.fit_linear(z, y, 0.1)
    zc = z - z.mean(0)
    cov = zc.T @ zc / 40
    primal = np.linalg.solve(cov + 0.1 * np.trace(cov) / 64 * np.eye(64), zc.T @ (y - y.mean(0)) / 40)
    np.testing.assert_allclose(w, primal, atol=1e-10)
    # the closed-form leave-one-out error ranks the grid as refitting without each sample does
    def brute(ridge):
        errs = []
        for i in range(40):
            keep = np.arange(40) != i
            wi, bi = probes.fit_linear(z[keep], y[keep], ridge)
            errs.append(np.mean((z[i] @ wi + bi - y[i]) ** 2))
        return np.mean(errs)

    grid = (1e-3, 1.0, 1000.0)
    assert probes.loo_ridge(z, y, grid) == min(grid, key=brute)


def test_the_periodic_evaluation_and_sweeps_read_val_where_a_dataset_has_it():
    """HeldOutEvaluation (budgets, sweeps' pruning and objective) scores the val episodes; eval only for datasets
    collected before the val split existed."""
    from types import SimpleNamespace

    from rl_laof.lam.evaluation import selection_split

    assert selection_split(SimpleNamespace(episodes={"train": [0], "val": [0], "eval": [0]})) == "val"
    assert selection_split(SimpleNamespace(episodes={"train": [0], "val": [], "eval": [0]})) == "eval"


def test_a_latent_wider_than_half_its_training_pairs_gets_a_chosen_ridge():
    """LAOM's 8192-d latent on ~8000 transitions: a fixed tiny ridge interpolates the training actions and the
    held-out probe explodes; the chosen ridge keeps it near or below the mean action."""
    import numpy as np

    from rl_laof.lam import probes

    rng = np.random.default_rng(0)
    # about as many dimensions as pairs: the interpolation threshold, where a tiny ridge's variance peaks
    z, zt = rng.normal(size=(100, 104)), rng.normal(size=(200, 104))
    w = rng.normal(size=(104, 2)) * 0.05
    y, yt = z @ w + 0.5 * rng.normal(size=(100, 2)), zt @ w + 0.5 * rng.normal(size=(200, 2))
    zs, zts = probes._standardise(z, zt)
    wf, bf = probes.fit_linear(zs, y)
    fixed = float(np.mean((zts @ wf + bf - yt) ** 2))
    chosen = probes.linear_probe(z, y, zt, yt)
    assert chosen < 0.5 * fixed
    assert chosen < 1.1 * probes.mean_action_mse(y, yt) < fixed


@pytest.mark.parametrize("n,d", [(300, 40), (60, 200)])  # primal (d x d) and dual (n x n) decompositions
def test_one_decomposition_fits_every_target_as_separate_fits_do(n, d):
    """LinearProbe: the eigendecomposition shared by the leave-one-out choice and the fits of several targets
    gives fit_linear's weights at the chosen ridge, and a probe reusing another's decomposition equals its own."""
    import numpy as np

    from rl_laof.lam import probes

    rng = np.random.default_rng(1)
    z = rng.normal(size=(n, d)) * rng.uniform(0.2, 3.0, d)
    y1 = z[:, :3] @ rng.normal(size=(3, 2)) + 0.2 * rng.normal(size=(n, 2))
    y2 = z[:, 3:7] @ rng.normal(size=(4, 5)) + 0.5 * rng.normal(size=(n, 5))
    zt = rng.normal(size=(50, d))
    (zs,) = probes._standardise(z)
    for ridge in (None, 0.1):
        own = probes.LinearProbe.fit(z, y1, ridge)
        expected = ridge if ridge is not None and n >= 2 * d else probes.loo_ridge(zs, y1)
        assert own.ridge == expected
        w, b = probes.fit_linear(zs, y1, expected)
        np.testing.assert_allclose(own.w, w, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(own.b, b, rtol=1e-6, atol=1e-9)
        shared = probes.LinearProbe.fit(z, y2, ridge, basis=own)
        alone = probes.LinearProbe.fit(z, y2, ridge)
        assert shared.ridge == alone.ridge
        np.testing.assert_allclose(shared.predict(zt), alone.predict(zt), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(own.predict(zt), probes.LinearProbe.fit(z, y1, ridge).predict(zt))  # untouched
