"""How well can 1 % of the labels decode a latent action? Action decoders fitted on the labelled
transitions' true latents, scored on every other training transition.

    python benchmarks/study_decoder.py [--runs DIR[,DIR...]] [--labels 0.01]

Each ``--runs`` folder is an imitation run (``rl_laof.imitation``; default: the shipped LAOF and LAPO latent BC
policies' runs) whose ``targets.pt`` holds the normalised latents of every training transition of its
dataset. No policy is involved: this isolates the decoder's share of a 1 %-label method's action error.
Decoders, each fitted on the labelled transitions (label split ``frac-<labels>``):

* ``mlp``: ``ImitationConfig``'s decoder (2 hidden layers of 256, AdamW lr 1e-3, weight decay 1e-3, 2000
  steps of 64), and the same stopped at 300 steps (``mlp_300``);
* ``ridge_<l>``: linear least squares with an L2 penalty l on the weights;
* ``pca<k>_ridge`` / ``pca<k>_mlp``: the same on the latents' coordinates in their k leading principal
  directions (``rl_laof.models.policy.LatentPCA``, fitted on every training latent, no labels needed).

Each figure is the MSE on the unlabelled transitions divided by the MSE of the labelled transitions' mean
action there (1.0 = no better than the mean action). Writes ``benchmarks/results/study_decoder.json``; the
last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from bench_args import alone

from rl_laof.data.dataset import VideoDataset
from rl_laof.imitation.config import ImitationConfig
from rl_laof.imitation.training import Transitions
from rl_laof.models.blocks import mlp
from rl_laof.models.policy import LatentPCA
from rl_laof.runs import write_json

RESULTS = Path(__file__).resolve().parent / "results" / "study_decoder.json"
DEFAULT_RUNS = "runs/pilot/ppo/laof-bc-laom,runs/pilot/ppo/lapo-bc-laom"


def fit_mlp(x: torch.Tensor, a: torch.Tensor, steps: int, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    dec = mlp(x.shape[1], a.shape[1], 256)
    opt = torch.optim.AdamW(dec.parameters(), 1e-3, weight_decay=1e-3)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        i = torch.from_numpy(rng.integers(0, len(x), 64))
        loss = F.mse_loss(dec(x[i]), a[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return dec.eval()


def fit_ridge(x: torch.Tensor, a: torch.Tensor, penalty: float):
    xb = torch.cat([x, torch.ones(len(x), 1)], 1).double()
    reg = penalty * torch.eye(xb.shape[1], dtype=torch.double)
    reg[-1, -1] = 0.0  # the bias is not penalised
    w = torch.linalg.solve(xb.T @ xb + reg, xb.T @ a.double())
    return lambda z: (torch.cat([z, torch.ones(len(z), 1)], 1).double() @ w).float()


def study(run: Path, labels: float) -> dict:
    if not (run / "targets.pt").exists() or not (run / "config.json").exists():
        sys.exit(f"{run}: not a latent imitation run (no targets.pt / config.json); make one with "
                 f"python -m rl_laof.imitation --latent laof --out {run}")
    saved = torch.load(run / "targets.pt", map_location="cpu", weights_only=False)
    config = json.loads((run / "config.json").read_text())
    ds = VideoDataset(config["dataset"], flow=None)
    data = Transitions(ds, ImitationConfig(latent=config["config"]["latent"], labels=labels))
    z, a = saved["z"], data.actions
    lab = data.labelled
    rest = np.setdiff1d(np.arange(data.n), lab)
    floor = F.mse_loss(a[rest], a[lab].mean(0).expand(len(rest), -1)).item()

    def score(predict, inputs: torch.Tensor) -> float:
        with torch.no_grad():
            return round(F.mse_loss(predict(inputs[rest]), a[rest]).item() / floor, 4)

    rows: dict[str, float] = {"mlp": score(fit_mlp(z[lab], a[lab], 2000), z),
                              "mlp_300": score(fit_mlp(z[lab], a[lab], 300), z)}
    for penalty in (0.1, 1.0, 10.0, 100.0):
        rows[f"ridge_{penalty:g}"] = score(fit_ridge(z[lab], a[lab], penalty), z)
    pca = LatentPCA.fit(z, min(64, z.shape[1]))
    shares = {}
    for k in (4, 8, 16, 32, 64):
        if k > pca.k:
            continue
        c = pca.leading(k).coords(z)
        rows[f"pca{k}_ridge"] = score(fit_ridge(c[lab], a[lab], 1.0), c)
        rows[f"pca{k}_mlp"] = score(fit_mlp(c[lab], a[lab], 300), c)
        shares[k] = round(float(pca.explained[:k].sum()), 3)
    return {"run": str(run), "latent": config["config"]["latent"], "dataset": config["dataset"],
            "labelled": int(len(lab)), "scored": int(len(rest)), "mean_action_mse": round(floor, 4),
            "pca_variance_share": shares, "decoders": rows}


def main() -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", default=DEFAULT_RUNS, help="comma-separated imitation run folders")
    p.add_argument("--labels", type=float, default=0.01, help="labelled fraction (a frac-<f> label split)")
    args = p.parse_args()
    torch.set_num_threads(2)
    out = {"labels": args.labels, "runs": {}}
    for run in args.runs.split(","):
        row = study(Path(run), args.labels)
        out["runs"][Path(run).name] = row
        print(json.dumps(row), flush=True)
    RESULTS.parent.mkdir(exist_ok=True)
    write_json(RESULTS, out)
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    alone(main)
