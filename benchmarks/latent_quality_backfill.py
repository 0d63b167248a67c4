"""Bring latent-quality records made by an older version of the study up to date without retraining.

    python benchmarks/latent_quality_backfill.py [--cells cheetah_laom]

For each record under ``benchmarks/results/latent_quality_runs/`` whose ``record_version`` is older and whose
trained model is still in its run folder: the probes are fit again with the current code on the saved model
(``rl_laof.lam.evaluation.probe_report``), and the record gets its trained (resolved) config. The untrained
model is not rebuilt: its few-label figure is dropped from such records (the untrained floor of the full probe
is kept, it did not change). The last line printed is one JSON object: which records were updated.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench_args import alone, subset
from bench_latent_quality import CELLS, RECORDS

import envs  # noqa: F401  (loads EGL before anything imports envpool)
from rl_laof.data.dataset import VideoDataset
from rl_laof.lam import quality
from rl_laof.lam.config import LAMConfig
from rl_laof.lam.evaluation import probe_report
from rl_laof.lam.training import load_lam
from rl_laof.runs import atomic_path, runs_root


def main() -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cells", default=",".join(CELLS))
    args = p.parse_args()
    done = []
    for cell in subset(p, args.cells, CELLS, "cells"):
        for path in sorted((RECORDS / cell).glob("*.json")):
            rec = json.loads(path.read_text())
            if rec.get("record_version") == quality.RECORD_VERSION:
                continue
            run_dir = runs_root() / "bench" / "latent_quality" / "full" / cell / path.stem
            if not (run_dir / "report.json").exists():
                continue
            report = json.loads((run_dir / "report.json").read_text())
            cfg = LAMConfig(**report["config"])
            ds = VideoDataset(report["dataset"], flow=cfg.flow_method if cfg.flow_weight > 0 else None)
            report["probes"] = probe_report(load_lam(run_dir), ds, cfg, mlp=cfg.mlp_probe_steps > 0)
            new = quality.run_record(report)
            for s in new["splits"].values():
                s.pop("untrained_few", None)
            rec.update({k: v for k, v in new.items() if k not in ("samples_per_s", "train_seconds")})
            rec["trained_config"] = report["config"]
            rec["backfilled"] = "probes refit on the saved model; untrained_few dropped"
            with atomic_path(path) as tmp:
                Path(tmp).write_text(json.dumps(rec, indent=1) + "\n")
            done.append(f"{cell}/{path.stem}")
            print(f"updated {cell}/{path.stem}", flush=True)
    print(json.dumps({"updated": done}))
    return {"updated": done}


if __name__ == "__main__":
    alone(main)
