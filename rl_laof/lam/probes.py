"""How much of the true action (and state change) a latent action holds, measured on held-out data.

Every probe is fit on latents of *training* episodes and scored on *held-out* episodes (one
reference codebase trained and tested its probe on the same split; we do not):

- linear probe: ridge regression z -> a_t (standardised z, closed form) — LAOM's metric;
- MLP probe: two hidden layers of 256, Adam, z -> a_t;
- state probe: linear z -> s_{t+1} - s_t (standardised per dimension): does z say how the body moved;
- label-budget curve: the linear probe fit on only the transitions of each label split (1 %, 5 %,
  10 %, all): how well a decoder learned from few labels can do. With ~80 labels and a 128-d (or
  8192-d) latent a fixed tiny ridge over-fits; a user would choose the penalty on the labels they
  have, so the curve's probe picks it by leave-one-out error on the labelled transitions alone
  (closed form), from a grid spanning 1e-3 to 1e3 of the mean eigenvalue. No held-out data is read.

The mean-action baseline predicts the training mean for every transition. MSEs are per action
dimension (mean over dimensions and transitions), actions in [-1, 1].
"""

from __future__ import annotations

import numpy as np
import torch

RIDGE = 1e-3  # relative to the mean eigenvalue of the standardised latent's covariance


def _standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    mu, sd = train.mean(0), train.std(0) + 1e-6
    return [(x - mu) / sd for x in (train, *others)]


RIDGE_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)  # leave-one-out choice for the few-label probes


def fit_linear(z: np.ndarray, y: np.ndarray, ridge: float = RIDGE) -> tuple[np.ndarray, np.ndarray]:
    """Ridge regression with an unpenalised bias: returns (W, b) with y ~ z W + b. ``ridge`` is relative to the
    mean eigenvalue of z's covariance. With fewer samples than dimensions (LAOM's 8192-d latent, or a few
    labels) it solves the n x n dual instead of the d x d primal: the same W, far cheaper."""
    z = z.astype(np.float64)
    n = max(len(z), 1)
    zm, ym = z.mean(0), y.mean(0)
    zc = z - zm
    if len(z) < z.shape[1]:
        gram = zc @ zc.T / n
        lam = ridge * max(np.trace(gram) / z.shape[1], 1e-12)
        w = zc.T @ np.linalg.solve(gram + lam * np.eye(len(z)), (y - ym) / n)
        return w, ym - zm @ w
    cov = zc.T @ zc / n
    lam = ridge * max(np.trace(cov) / cov.shape[0], 1e-12)
    w = np.linalg.solve(cov + lam * np.eye(cov.shape[0]), zc.T @ (y - ym) / n)
    return w, ym - zm @ w


def loo_ridge(z: np.ndarray, y: np.ndarray, grid: tuple[float, ...] = RIDGE_GRID) -> float:
    """The relative ridge of ``grid`` with the lowest leave-one-out MSE on (z, y), in closed form: for the centred
    problem the hat matrix is H = Zc (Zc^T Zc + c I)^-1 Zc^T (c = n x ridge x the mean eigenvalue of the
    covariance) and the left-out residual of sample i is r_i / (1 - H_ii - 1/n) (the bias refit too). One
    eigendecomposition of the smaller of Zc^T Zc (d x d) and Zc Zc^T (n x n) serves every ridge, so the choice
    costs about one fit, also for LAOM's 8192-d latent."""
    z = z.astype(np.float64)
    n, d = z.shape
    zc, yc = z - z.mean(0), y - y.mean(0)
    if d <= n:  # H = (Zc V) diag(1 / (e + c)) (Zc V)^T with Zc^T Zc = V diag(e) V^T
        e, v = np.linalg.eigh(zc.T @ zc)
        u = zc @ v
        proj = u.T @ yc
    else:  # H = Q diag(e / (e + c)) Q^T with Zc Zc^T = Q diag(e) Q^T
        e, u = np.linalg.eigh(zc @ zc.T)
        proj = u.T @ yc
    e = np.clip(e, 0.0, None)
    scale = max(e.sum() / n / d, 1e-12)
    best, best_err = grid[0], np.inf
    for ridge in grid:
        c = n * ridge * scale
        shrink = 1.0 / (e + c) if d <= n else e / (e + c)
        fitted = u @ (shrink[:, None] * proj)
        lev = np.clip((u ** 2) @ shrink + 1.0 / n, None, 1 - 1e-9)
        err = float(np.mean(((yc - fitted) / (1 - lev)[:, None]) ** 2))
        if err < best_err:
            best, best_err = ridge, err
    return best


class LinearProbe:
    """A ridge probe z -> y fit on standardised training latents, to be scored on any number of held-out sets.

    One eigendecomposition of the centred latents (of Zc^T Zc, d x d, or of Zc Zc^T, n x n, whichever is
    smaller) serves the leave-one-out choice of the ridge and the fit of every target (:meth:`fit` with
    ``basis=``): LAOM's 8192-d latent on 8000 training windows costs one 8000 x 8000 decomposition per report
    instead of one per target and held-out split. The weights are :func:`fit_linear`'s (tested)."""

    def __init__(self, z_train: np.ndarray):
        z = z_train.astype(np.float64)
        self.mu, self.sd = z.mean(0), z.std(0) + 1e-6
        zs = (z - self.mu) / self.sd
        self.n, self.d = zs.shape
        self.zmean = zs.mean(0)
        self.zc = zs - self.zmean
        self.dual = self.n < self.d
        if self.dual:  # Zc Zc^T = Q diag(e) Q^T; W = Zc^T Q diag(1 / (e + c)) Q^T Yc
            e, self.u = np.linalg.eigh(self.zc @ self.zc.T)
        else:  # Zc^T Zc = V diag(e) V^T; W = V diag(1 / (e + c)) (Zc V)^T Yc
            e, self.v = np.linalg.eigh(self.zc.T @ self.zc)
            self.u = self.zc @ self.v
        self.e = np.clip(e, 0.0, None)
        self.scale = max(self.e.sum() / self.n / self.d, 1e-12)  # c = n x ridge x the mean eigenvalue of cov
        self.w: np.ndarray | None = None
        self.b: np.ndarray | None = None
        self.ridge: float | None = None

    @classmethod
    def fit(cls, z_train: np.ndarray, y_train: np.ndarray, ridge: float | None = RIDGE,
            basis: LinearProbe | None = None) -> LinearProbe:
        """The probe of ``y_train`` (``ridge`` None: chosen by leave-one-out; fewer than twice as many pairs as
        dimensions: chosen whatever ``ridge`` says, see :func:`linear_probe`). ``basis``: a probe fit on the same
        ``z_train`` whose decomposition is reused (its weights are not touched)."""
        import copy  # deferred: only to share a decomposition

        probe = copy.copy(basis) if basis is not None else cls(z_train)
        if ridge is None or probe.n < 2 * probe.d:
            ridge = probe.loo_choice(y_train)
        yc = y_train - y_train.mean(0)
        proj = probe.u.T @ yc
        c = probe.n * ridge * probe.scale
        if probe.dual:
            w = probe.zc.T @ (probe.u @ (proj / (probe.e + c)[:, None]))
        else:
            w = probe.v @ (proj / (probe.e + c)[:, None])
        probe.w, probe.b, probe.ridge = w, y_train.mean(0) - probe.zmean @ w, ridge
        return probe

    def loo_choice(self, y: np.ndarray, grid: tuple[float, ...] = RIDGE_GRID) -> float:
        """:func:`loo_ridge` on this decomposition."""
        yc = y - y.mean(0)
        proj = self.u.T @ yc
        best, best_err = grid[0], np.inf
        for ridge in grid:
            c = self.n * ridge * self.scale
            shrink = self.e / (self.e + c) if self.dual else 1.0 / (self.e + c)
            fitted = self.u @ (shrink[:, None] * proj)
            lev = np.clip((self.u ** 2) @ shrink + 1.0 / self.n, None, 1 - 1e-9)
            err = float(np.mean(((yc - fitted) / (1 - lev)[:, None]) ** 2))
            if err < best_err:
                best, best_err = ridge, err
        return best

    def predict(self, z: np.ndarray) -> np.ndarray:
        return (z.astype(np.float64) - self.mu) / self.sd @ self.w + self.b

    def mse(self, z: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean((self.predict(z) - y) ** 2))


def linear_probe(z_train: np.ndarray, y_train: np.ndarray, z_test: np.ndarray, y_test: np.ndarray,
                 ridge: float | None = RIDGE) -> float:
    """Held-out MSE of the ridge probe; ``ridge`` None: chosen by leave-one-out on the training pairs
    (:func:`loo_ridge`). Where the training pairs are fewer than twice the latent's dimensions (LAOM's 8192-d
    latent on 8000 transitions; any latent on a few labels) a fixed tiny ridge interpolates the training actions
    and the probe measures over-fitting, so the ridge is chosen there whatever ``ridge`` says; with many more
    pairs than dimensions the fixed ridge is kept (the choice changes little there, and figures stay comparable
    with earlier runs)."""
    return LinearProbe.fit(z_train, y_train, ridge).mse(z_test, y_test)


def mlp_probe(z_train: np.ndarray, y_train: np.ndarray, z_test: np.ndarray, y_test: np.ndarray,
              steps: int = 1500, seed: int = 0) -> float:
    return float(np.mean((fit_mlp_probe(z_train, y_train, steps, seed)(z_test) - y_test) ** 2))


def fit_mlp_probe(z_train: np.ndarray, y_train: np.ndarray, steps: int = 1500, seed: int = 0):
    """The MLP probe fit on (z_train, y_train): a function from latents to predicted actions (fit once, scored on
    every held-out split)."""
    mu, sd = z_train.mean(0), z_train.std(0) + 1e-6
    zt = (z_train - mu) / sd
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(zt.shape[1], 256), torch.nn.SiLU(), torch.nn.Linear(256, 256),
                              torch.nn.SiLU(), torch.nn.Linear(256, y_train.shape[1]))
    opt = torch.optim.AdamW(net.parameters(), 1e-3, weight_decay=1e-4)
    x, y = torch.as_tensor(zt, dtype=torch.float32), torch.as_tensor(y_train, dtype=torch.float32)
    for _ in range(steps):
        i = torch.randint(len(x), (min(256, len(x)),), generator=g)
        loss = torch.nn.functional.mse_loss(net(x[i]), y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()

    def predict(z: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return net(torch.as_tensor((z - mu) / sd, dtype=torch.float32)).numpy()

    return predict


def mean_action_mse(y_train: np.ndarray, y_test: np.ndarray) -> float:
    return float(np.mean((y_train.mean(0) - y_test) ** 2))


def state_probe(z_train: np.ndarray, ds_train: np.ndarray, z_test: np.ndarray, ds_test: np.ndarray) -> float:
    """Linear z -> state change, in units of the training state change's standard deviation."""
    mu, sd = ds_train.mean(0), ds_train.std(0) + 1e-6
    return fit_state_probe(z_train, ds_train).mse(z_test, (ds_test - mu) / sd)


def fit_state_probe(z_train: np.ndarray, ds_train: np.ndarray, basis: LinearProbe | None = None) -> LinearProbe:
    """The linear probe z -> state change standardised by the training change (score it on the held-out change
    standardised the same way: :func:`standardised_change`)."""
    return LinearProbe.fit(z_train, standardised_change(ds_train, ds_train), basis=basis)


def standardised_change(ds: np.ndarray, ds_train: np.ndarray) -> np.ndarray:
    return (ds - ds_train.mean(0)) / (ds_train.std(0) + 1e-6)


def budget_probes(z_train: np.ndarray, y_train: np.ndarray, masks: dict[str, np.ndarray],
                  every: LinearProbe | None = None) -> dict[str, LinearProbe]:
    """The linear probe fit on only the transitions of each label split (the ridge chosen by leave-one-out on
    those transitions where they are few: up to 2000; more keep the fixed ridge, or a chosen one where the latent
    is wider than half of them, as every :func:`linear_probe`). ``every``: the probe already fit on every
    transition at the default ridge rule, reused for a mask that selects them all where the rules agree."""
    out = {}
    for name, m in masks.items():
        if m.sum() >= 2:
            if every is not None and m.all() and m.sum() > 2000:
                out[name] = every
            else:
                out[name] = LinearProbe.fit(z_train[m], y_train[m], None if m.sum() <= 2000 else RIDGE)
    return out


def budget_curve(z_train: np.ndarray, y_train: np.ndarray, masks: dict[str, np.ndarray], z_test: np.ndarray,
                 y_test: np.ndarray) -> dict[str, float]:
    """Held-out linear-probe MSE of each label split's probe (:func:`budget_probes`)."""
    return {name: p.mse(z_test, y_test) for name, p in budget_probes(z_train, y_train, masks).items()}


def plot_budget_curves(curves: dict[str, dict[str, float]], fractions: dict[str, float], baseline: float,
                       path) -> None:
    """Probe MSE against the number of labelled transitions, one line per model."""
    import matplotlib  # deferred: matplotlib only for plots

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # deferred: matplotlib only for plots

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for name, curve in curves.items():
        xs = [fractions[k] for k in curve]
        order = np.argsort(xs)
        ax.plot(np.array(xs)[order], np.array(list(curve.values()))[order], "o-", label=name)
    ax.axhline(baseline, color="gray", ls="--", label="mean action")
    ax.set_xscale("log")
    ax.set_xlabel("labelled transitions used to fit the linear probe")
    ax.set_ylabel("held-out action MSE")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
