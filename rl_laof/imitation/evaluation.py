"""How good a latent policy is beyond its returns (``envs.rollout.policy_returns``): its action error on
held-out transitions, the spread of its actions on its own states against the expert's on the data, its latency
per action, and the bar chart of normalised returns."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from envs.rollout import policy_returns, run_episodes
from rl_laof.data.config import WindowConfig
from rl_laof.data.dataset import VideoDataset
from rl_laof.data.windows import WindowDataset
from rl_laof.imitation.config import ImitationConfig
from rl_laof.imitation.policy import LatentPolicy, load_latent_policy, recorded_data
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


def data_action_std(ds: VideoDataset) -> np.ndarray:
    """Per-dimension std of the dataset's training actions: the expert's spread on the data."""
    return np.asarray(ds.load_split("train", ("actions",))["actions"], np.float64).std(0)


def spread_ratio(policy_std, data_std) -> float:
    """A policy's action spread over the expert's: the per-dimension std of the actions it executed on its own
    states, averaged over dimensions, divided by the same average of the data's (0: one action whatever the state,
    1: as varied as the expert). Regressed latents of ambiguous states shrink to their mean and decode to small
    actions (docs/design.md), which the open-loop action error on the data's states does not show."""
    data = float(np.mean(data_std))
    return float(np.mean(policy_std)) / data if data > 0 else float("nan")


def action_spread(venv, act: Callable[[np.ndarray], np.ndarray], data_std,
                  on_dones: Callable[[np.ndarray], None] | None = None) -> dict:
    """Roll ``act`` out in ``venv`` (the first episode of every env, on the states the policy itself visits: any
    action space, the raw env with a latent policy + decoder, or an agent's latent / residual env) and measure the
    spread of the actions the env executed (:func:`spread_ratio` against ``data_std``, the data's per-dimension
    action std). Returns the ratio (``spread``), both per-dimension stds, the executed actions' count and the
    episodes' mean return."""
    executed: list[np.ndarray] = []
    returns = run_episodes(venv, act, on_dones=on_dones, executed=executed)
    actions = np.concatenate(executed)
    std = actions.std(0)
    return {"spread": round(spread_ratio(std, data_std), 4), "action_std": std.round(4).tolist(),
            "data_action_std": np.round(np.asarray(data_std, np.float64), 4).tolist(), "actions": len(actions),
            "return": float(returns.mean())}


def run_spread(run_dir: str | Path, seeds: int, episodes: int) -> float:
    """The spread (:func:`spread_ratio`) of a finished imitation run's latent policy under its report's protocol (the
    data's env and backgrounds, ``seeds`` x ``episodes`` episodes of ``policy_returns``), for a report made before
    reports kept it."""
    agent, meta = load_latent_policy(run_dir)
    agent = LatentPolicy(agent.policy, agent.decoder, meta["config"]["seed"])  # as the run evaluated it
    data = recorded_data(run_dir, meta)
    if data is None:
        raise FileNotFoundError(f"{run_dir}: its policy.pt keeps no data record and its dataset "
                                f"{meta.get('dataset')} is gone: the expert's action spread is unknown")
    env = {k: v for k, v in data["env"].items() if k != "frame_stack"}
    backend = ImitationConfig.from_recorded(meta["config"]).eval_backend  # the simulator its report's returns came from
    returns = policy_returns(agent, **env, frame_stack=data["env"]["frame_stack"], seeds=seeds, episodes=episodes,
                             progress=False, backend=backend)
    return round(spread_ratio(returns["train"]["action_std"], data["action_std"]), 4)


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
