"""How good a latent action model is, on held-out data: its losses, its latents, and probes of what they carry
(``rl_laof.lam.probes``): the periodic evaluation during training and the final report's probes."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from rl_laof.data.dataset import VideoDataset
from rl_laof.data.windows import WindowDataset
from rl_laof.flow.agent_targets import AgentFlowTargets
from rl_laof.lam import probes
from rl_laof.lam.config import LAMConfig
from rl_laof.models import lam_augmentation
from rl_laof.models.lam_model import LatentActionModel


@torch.no_grad()
def latents(model: LatentActionModel, windows: WindowDataset, rows: np.ndarray, batch: int = 256) -> np.ndarray:
    """Pre-quantisation latents of (o_t, o_{t+1}) for transition rows of a split (k = 1 always)."""
    out = []
    for i in range(0, len(rows), batch):
        b = windows.gather(rows[i:i + batch])
        out.append(model.encode(b["obs"], b["next_obs"]).numpy())
    return np.concatenate(out) if out else np.zeros((0, model.cfg.latent_dim), np.float32)


@torch.no_grad()
def eval_losses(model: LatentActionModel, batches: list[dict[str, torch.Tensor]]) -> dict[str, float]:
    sums: dict[str, float] = {}
    for b in batches:
        _, m = model.losses(b, None, torch.Generator().manual_seed(0))
        for k, v in m.items():
            sums[k] = sums.get(k, 0.0) + v
    return {k: v / len(batches) for k, v in sums.items()}


def spread(n: int, k: int | None) -> np.ndarray:
    """k rows spread evenly over n (all of them when k is None or >= n)."""
    if k is None or k >= n:
        return np.arange(n)
    return np.linspace(0, n - 1, k).astype(np.int64)


def probe_report(model: LatentActionModel, ds: VideoDataset, cfg: LAMConfig, mlp: bool = True) -> dict[str, Any]:
    """Every probe of ``rl_laof.lam.probes`` on the held-out splits, fit on the training episodes."""
    wcfg = dataclasses.replace(cfg.window_config(), max_offset=1, with_flow=False, with_masks=False)
    train = WindowDataset(ds, "train", wcfg)
    rows = spread(train.data.num_transitions, cfg.probe_train_windows)
    z_tr = latents(model, train, rows)
    a_tr = train.data["actions"][rows]
    with_states = "states" in train.data  # a video without the simulator's state: no state probe
    ds_tr = _state_change(train, rows) if with_states else None
    out: dict[str, Any] = {"train_transitions": len(rows)}
    label_masks = {name: m[rows] for name, m in ds.labels.items() if name.startswith("frac-") and name != "frac-0"}
    label_masks["all"] = np.ones(len(rows), bool)
    # every probe is fit once on the training windows, then scored on each held-out split
    action = probes.LinearProbe.fit(z_tr, a_tr)
    state = probes.fit_state_probe(z_tr, ds_tr, basis=action) if with_states else None
    few = probes.budget_probes(z_tr, a_tr, label_masks, every=action)
    nonlinear = probes.fit_mlp_probe(z_tr, a_tr, cfg.mlp_probe_steps, cfg.seed) if mlp else None
    # val: the split choices are made on (defaults, budgets, sweeps); eval and heldout_bg: reported figures only
    for split in ("val", "eval", "heldout_bg"):
        if not ds.episodes.get(split):
            continue
        test = WindowDataset(ds, split, wcfg)
        trows = np.arange(test.data.num_transitions)
        z_te, a_te = latents(model, test, trows), test.data["actions"][trows]
        r = {"transitions": len(trows),
             "linear_action_mse": action.mse(z_te, a_te),
             "mean_action_mse": probes.mean_action_mse(a_tr, a_te),
             "budget_curve": {name: p.mse(z_te, a_te) for name, p in few.items()}}
        if state is not None:
            r["state_change_mse"] = state.mse(z_te, probes.standardised_change(_state_change(test, trows), ds_tr))
        if nonlinear is not None:
            r["mlp_action_mse"] = float(np.mean((nonlinear(z_te) - a_te) ** 2))
        out[split] = r
    out["label_counts"] = {k: int(m.sum()) for k, m in label_masks.items()}
    return out


def _state_change(w: WindowDataset, rows: np.ndarray) -> np.ndarray:
    fr = w.data.frame_start[w.episode[rows]] + w.t[rows]
    s = w.data["states"]
    return (s[fr + 1] - s[fr]).astype(np.float64)


def selection_split(ds: VideoDataset) -> str:
    """The held-out split that choices read (the periodic evaluation, sweeps' pruning, budgets): ``val`` where
    the dataset has one, else ``eval`` (datasets collected before the val split existed)."""
    return "val" if ds.episodes.get("val") else "eval"


class HeldOutEvaluation:
    """The periodic held-out evaluation of a run: the losses (and their trivial-predictor baselines) on
    ``eval_windows`` fixed windows of the selection split (:func:`selection_split`: ``val``), and a linear action
    probe fit on training windows and scored on those windows. What it measures decides budgets and prunes
    sweeps, so it never reads the ``eval`` episodes of a dataset that has ``val`` ones. Built once; calling it
    evaluates a model (and leaves it in train mode). The metrics keep their ``eval/`` names (the held-out
    evaluation), ``split`` says which episodes they are of."""

    def __init__(self, ds: VideoDataset, cfg: LAMConfig, train: WindowDataset,
                 targets: dict[str, AgentFlowTargets]):
        wcfg = cfg.window_config()
        self.train, self.cfg = train, cfg
        self.split = selection_split(ds)
        self.ev = WindowDataset(ds, self.split, wcfg, None, seed=cfg.seed + 5)
        rows = spread(self.ev.data.num_transitions, cfg.eval_windows)
        flow_mean = targets["train"].mean_target()[None] if targets else None
        self.batches = []
        augment_fn = lam_augmentation(cfg, ds.image_shape[-1])  # fixed draws: per window, or per image (LAOM)
        for i in range(0, len(rows), 256):
            b = self.ev.gather(rows[i:i + 256])
            if targets:  # the flow targets, and the training split's mean target (the best constant prediction)
                b.update(targets[self.split].get(rows[i:i + 256]), flow_mean=flow_mean)
            if augment_fn is not None:
                b["homography"] = augment_fn(len(b["obs"]), torch.Generator().manual_seed(i))
            self.batches.append(b)
        # k = 1 views for the probes (they draw no offsets, so evaluation leaves the training draws alone); fit on
        # every training episode, also when the model trains on the first train_episodes only
        probe_cfg = dataclasses.replace(wcfg, max_offset=1, with_flow=False, with_masks=False)
        self.probe_train = WindowDataset(ds, "train", probe_cfg,
                                         arrays=train.data if cfg.train_episodes is None else None)
        self.probe_eval = WindowDataset(ds, self.split, probe_cfg, arrays=self.ev.data)

    def __call__(self, model: LatentActionModel) -> dict[str, float]:
        model.eval()
        m = {f"eval/{k}": v for k, v in eval_losses(model, self.batches).items()}
        tr, ev = self.probe_train, self.probe_eval
        rows_tr = spread(tr.data.num_transitions, self.cfg.eval_windows)
        rows_ev = spread(ev.data.num_transitions, self.cfg.eval_windows)
        a_tr, a_ev = tr.data["actions"][rows_tr], ev.data["actions"][rows_ev]
        m["eval/linear_probe_action_mse"] = probes.linear_probe(
            latents(model, tr, rows_tr), a_tr, latents(model, ev, rows_ev), a_ev)
        # its trivial predictor (the training windows' mean action): the curve's 1.0
        m["eval/mean_action_mse"] = float(np.mean((a_ev - a_tr.mean(0)) ** 2))
        model.train()
        return m
