"""How good an imitation agent is beyond its returns (``envs.rollout.policy_returns``): its action error on
held-out transitions, its latency per action, and the bar chart of normalised returns."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from rl_laof.data.config import WindowConfig
from rl_laof.data.dataset import VideoDataset
from rl_laof.data.windows import WindowDataset
from rl_laof.runs import atomic_path


def action_error(act: Callable[[np.ndarray], np.ndarray], ds: VideoDataset, split: str, frame_stack: int,
                 limit: int = 4000) -> float:
    """The agent's action MSE on (the first ``limit``) transitions of ``split``, divided by the MSE of
    predicting those transitions' mean action: 1.0 = no better than the mean action. On the held-out
    ``eval`` episodes this is the imitation quality that returns are made of, without the env's noise."""
    w = WindowDataset(ds, split, WindowConfig(frame_stack=frame_stack, max_offset=1, label_split="all",
                                              with_masks=False, with_states=False, with_flow=False))
    rows = np.arange(min(limit, w.data.num_transitions))
    if len(rows) == 0:
        return float("nan")
    target = np.asarray(w.data["actions"], np.float32)[rows]
    pred = np.concatenate([act(w.gather(rows[i:i + 256])["obs"].numpy()) for i in range(0, len(rows), 256)])
    return float(((pred - target) ** 2).mean() / ((target - target.mean(0)) ** 2).mean())


def latency_ms(act: Callable[[np.ndarray], np.ndarray], obs_shape: tuple[int, ...], calls: int) -> float:
    """Median wall time of one action for one observation (policy + decoder), in ms."""
    obs = np.random.default_rng(0).integers(0, 256, (1, *obs_shape), dtype=np.uint8)
    for _ in range(10):
        act(obs)
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        act(obs)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000)


def plot_normalised_returns(rows: dict[str, dict[str, dict[str, float]]], path: Path, title: str,
                            ylabel: str = "return / BC on all labels") -> None:
    """Bar chart: per method, normalised return (mean, seed spread) per background set."""
    import matplotlib  # deferred: matplotlib only for plots

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # deferred: matplotlib only for plots

    names = list(rows)
    backgrounds = list(dict.fromkeys(bg for r in rows.values() for bg in r))
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(names), 3.6))
    width = 0.8 / max(1, len(backgrounds))
    for j, bg in enumerate(backgrounds):
        xs = np.arange(len(names)) + (j - (len(backgrounds) - 1) / 2) * width
        means = [rows[n].get(bg, {}).get("mean", np.nan) for n in names]
        errs = [rows[n].get(bg, {}).get("std", 0.0) for n in names]
        ax.bar(xs, means, width, yerr=errs, capsize=3,
               label={"train": "data's backgrounds", "eval": "held-out backgrounds"}.get(bg, bg))
    ax.axhline(1.0, color="k", lw=0.8, ls="--")
    ax.set_xticks(np.arange(len(names)), names, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
