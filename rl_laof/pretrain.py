"""Latent action models: ``python -m rl_laof.pretrain --method laof --dataset DIR``.

Trains LAPO, LAOM or LAOF (``--method``, with ``-action`` for an action head on the labelled share
given by ``--labels F`` or ``--labelled-trajectories N``) on a video dataset, with progress,
TensorBoard, periodic held-out evaluation (losses and a linear action probe), checkpoints that
resume exactly, and a JSON report with the latent-quality probes (``rl_laof.probes``). Without
``--dataset`` it uses the task's default dataset at the preset, collecting it (and its expert, and
for LAOF its exact flow) first if it is missing.

Data-parallel: ``torchrun --nproc_per_node=N -m rl_laof.pretrain ...`` (gloo on CPU, nccl on GPU);
every process draws the same global batch and trains on its slice, so N processes reproduce one.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rl_laof import distributed as dist
from rl_laof import probes
from rl_laof.config import COLLECT_PRESETS, LAM_METHODS, LAM_PRESETS, CollectConfig, LAMConfig, from_preset
from rl_laof.data import format as fmt
from rl_laof.data.dataset import VideoDataset
from rl_laof.data.windows import WindowDataset
from rl_laof.flow.agent_targets import AgentFlowTargets
from rl_laof.flow.calibrate import calibrated_sigma
from rl_laof.models.augment import random_homographies
from rl_laof.models.lam import LatentActionModel
from rl_laof.precision import autocast as precision_autocast
from rl_laof.runs import (
    atomic_path,
    dataset_dir,
    lam_dir,
    latest_checkpoint,
    read_json,
    refuse_other_config,
    write_json,
)

# config fields that do not change what a run computes (a resumed run may change them)
_NOT_IDENTITY = ("threads", "eval_every", "checkpoint_every", "steps")


# --------------------------------------------------------------------------- data

def find_or_build_dataset(task: str, preset: str, flow: bool, progress: bool = True, **overrides: Any) -> Path:
    """The task's default dataset at ``preset`` (hard distractors unless ``overrides`` say otherwise: any
    ``CollectConfig`` field, e.g. ``distractors="laom"``), collected if missing, with its exact flow targets
    when ``flow``."""
    from rl_laof.collect import collect

    cfg = from_preset(CollectConfig, COLLECT_PRESETS, preset, task=task, **overrides)
    path = dataset_dir(task, cfg.name)
    if not (path / "dataset.h5").exists() or not _complete(path / "dataset.h5"):
        collect(cfg, path, progress=progress)
    if flow:
        from rl_laof.flow.targets import fill_flow

        fill_flow(path, "exact", progress=progress)
    return path


def _complete(h5: Path) -> bool:
    with fmt.open_h5(h5) as f:
        return bool(fmt.root_attrs(f)["complete"])


class Batches:
    """Seeded global batches of windows (identical on every process), sliced to this process, with their
    encoded flow targets when ``targets`` is given."""

    def __init__(self, windows: WindowDataset, batch_size: int, seed: int, targets: AgentFlowTargets | None):
        self.windows, self.batch_size, self.targets = windows, batch_size, targets
        self.rng = np.random.default_rng(seed)

    def next(self, augment: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        idx = self.rng.integers(0, len(self.windows), self.batch_size)
        hom = random_homographies(self.batch_size, augment) if augment is not None else None
        sl = dist.my_slice(self.batch_size)
        # gather the whole global batch, then slice: the random offsets k drawn inside are then the same
        # whatever the number of processes (gathering costs far less than a training step)
        batch = {k: v[sl] for k, v in self.windows.__getitems__(idx).items()}
        if hom is not None:
            batch["homography"] = hom[sl]
        if self.targets is not None:
            batch.update({k: v[sl] for k, v in self.targets.get(self.windows.transitions[idx]).items()})
        return batch

    def state(self) -> dict:
        return {"rng": self.rng.bit_generator.state, "windows_rng": self.windows.rng.bit_generator.state}

    def load_state(self, s: dict) -> None:
        self.rng.bit_generator.state = s["rng"]
        self.windows.rng.bit_generator.state = s["windows_rng"]


def flow_calibration(cfg: LAMConfig, ds: VideoDataset) -> tuple[LAMConfig, dict[str, Any] | None]:
    """``cfg`` resolved, with LAOF's sigma calibrated from ``ds`` unless the config fixes it; and what the
    calibration saw (agent-speed percentiles, the agent's share of the image), for the report."""
    r = cfg.resolved()
    if r.flow_weight <= 0:
        return r, None
    if r.flow_sigma is not None:
        return r, {"sigma": r.flow_sigma, "calibrated": False}
    sigma, speeds = calibrated_sigma(ds, r.flow_sigma_percentile, r.flow_source)
    return cfg.resolved(sigma), {"sigma": sigma, "calibrated": True, "percentile": r.flow_sigma_percentile,
                                 "source": r.flow_source, "agent_speed": speeds}


# --------------------------------------------------------------------------- evaluation

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


def _spread(n: int, k: int | None) -> np.ndarray:
    """k rows spread evenly over n (all of them when k is None or >= n)."""
    if k is None or k >= n:
        return np.arange(n)
    return np.linspace(0, n - 1, k).astype(np.int64)


def probe_report(model: LatentActionModel, ds: VideoDataset, cfg: LAMConfig, mlp: bool = True) -> dict[str, Any]:
    """Every probe of ``rl_laof.probes`` on the held-out splits, fit on the training episodes."""
    wcfg = dataclasses.replace(cfg.window_config(), max_offset=1, with_flow=False, with_masks=False)
    train = WindowDataset(ds, "train", wcfg)
    rows = _spread(train.data.num_transitions, cfg.probe_train_windows)
    z_tr = latents(model, train, rows)
    a_tr = train.data["actions"][rows]
    ds_tr = _state_change(train, rows)
    out: dict[str, Any] = {"train_transitions": len(rows)}
    label_masks = {name: m[rows] for name, m in ds.labels.items() if name.startswith("frac-") and name != "frac-0"}
    label_masks["all"] = np.ones(len(rows), bool)
    for split in ("eval", "heldout_bg"):
        if not ds.episodes.get(split):
            continue
        test = WindowDataset(ds, split, wcfg)
        trows = np.arange(test.data.num_transitions)
        z_te, a_te = latents(model, test, trows), test.data["actions"][trows]
        r = {"transitions": len(trows),
             "linear_action_mse": probes.linear_probe(z_tr, a_tr, z_te, a_te),
             "mean_action_mse": probes.mean_action_mse(a_tr, a_te),
             "state_change_mse": probes.state_probe(z_tr, ds_tr, z_te, _state_change(test, trows)),
             "budget_curve": probes.budget_curve(z_tr, a_tr, label_masks, z_te, a_te)}
        if mlp:
            r["mlp_action_mse"] = probes.mlp_probe(z_tr, a_tr, z_te, a_te, cfg.mlp_probe_steps, cfg.seed)
        out[split] = r
    out["label_counts"] = {k: int(m.sum()) for k, m in label_masks.items()}
    return out


def _state_change(w: WindowDataset, rows: np.ndarray) -> np.ndarray:
    fr = w.data.frame_start[w.episode[rows]] + w.t[rows]
    s = w.data["states"]
    return (s[fr + 1] - s[fr]).astype(np.float64)


# --------------------------------------------------------------------------- checkpoints

def save_checkpoint(run_dir: Path, state: dict) -> Path:
    ckdir = run_dir / "checkpoints"
    path = ckdir / f"step-{state['step']:08d}.pt"
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    write_json(ckdir / "latest.json", {"file": path.name, "step": state["step"]})
    for old in sorted(ckdir.glob("step-*.pt"))[:-2]:  # keep the newest two
        old.unlink()
    return path


_BEFORE_RESOLUTIONS = {"flow_resolution": None, "fdm_resolution": None}


def load_lam(run_dir: str | Path) -> LatentActionModel:
    """The trained model of a pretrain run (``model.pt``), in eval mode."""
    path = Path(run_dir) / "model.pt"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no trained latent action model (run python -m rl_laof.pretrain first)")
    saved = torch.load(path, map_location="cpu", weights_only=False)
    # runs saved before these fields existed had full-resolution flow decoders and FDMs
    config = {**_BEFORE_RESOLUTIONS, **saved["config"]}
    model = LatentActionModel(LAMConfig(**config), saved["image_size"], saved["action_dim"])
    model.load_state_dict(saved["model"])
    return model.eval()


# --------------------------------------------------------------------------- training

def run_dir_for(cfg: LAMConfig, dataset: Path, task: str) -> Path:
    return lam_dir(task, dataset, cfg.method, cfg.preset, cfg.seed, cfg.label_split if cfg.supervised else None)


def train_lam(cfg: LAMConfig, dataset: str | Path, out: str | Path | None = None, progress: bool = True,
              stop_after: int | None = None, on_eval: Callable[[int, dict[str, float]], None] | None = None
              ) -> dict[str, Any]:
    """Train (or resume, or find finished) one latent action model; returns its report.

    ``stop_after``: end (with a checkpoint) after that many steps in total, as a kill would — the test of
    exact resumption uses it. ``on_eval(step, metrics)`` sees every periodic held-out evaluation (a sweep
    reports them to its pruner, and may raise to end the run there).
    """
    from tqdm import tqdm

    rank, world = dist.init_from_env()
    if cfg.threads or world > 1:
        torch.set_num_threads(cfg.threads or max(1, (torch.get_num_threads()) // world))
    ds = VideoDataset(dataset)
    if cfg.resolved().flow_weight > 0 and "flow" not in ds.keys:
        raise fmt.DatasetError(f"{ds.path}: no flow targets; LAOF needs them: python -m rl_laof.flow --dataset "
                               f"{ds.path.parent if ds.path.suffix else ds.path} --method exact")
    cfg, calibration = flow_calibration(cfg, ds)
    if cfg.augment and cfg.flow_weight > 0:
        raise ValueError("augment with the flow loss is not supported: the flow target would need the same warp")
    if cfg.supervised and cfg.label_split not in ds.labels:
        raise KeyError(f"{ds.path}: no label split {cfg.label_split!r}; available: {', '.join(ds.labels)}")
    for b in (cfg.batch_size, cfg.labelled_batch_size):
        dist.my_slice(b)  # divisible by the world size
    run_dir = Path(out) if out is not None else run_dir_for(cfg, ds.path, ds.task)
    config = json.loads(json.dumps(cfg.to_dict()))
    if dist.is_main():
        run_dir.mkdir(parents=True, exist_ok=True)
        refuse_other_config(run_dir, config, _NOT_IDENTITY)
        write_json(run_dir / "config.json", {"config": config, "dataset": str(ds.path), "world_size": world})
    dist.barrier()
    report_file = run_dir / "report.json"
    if report_file.exists() and stop_after is None:
        report = read_json(report_file)
        if report.get("steps") == cfg.steps:
            return report

    torch.manual_seed(cfg.seed)
    wcfg = cfg.window_config()
    train = WindowDataset(ds, "train", wcfg, None, seed=cfg.seed, episodes=cfg.train_episodes)
    targets = {split: AgentFlowTargets(ds, split, cfg.flow_sigma, cfg.flow_source, cfg.flow_resolution,
                                       episodes=cfg.train_episodes if split == "train" else None)
               for split in ("train", "eval")} if cfg.flow_weight > 0 else {}
    main_batches = Batches(train, cfg.batch_size, cfg.seed + 1, targets.get("train"))
    lab_batches = None
    if cfg.action_weight > 0:
        lab = WindowDataset(ds, "train", wcfg, True, seed=cfg.seed + 2, arrays=train.data)
        if len(lab) == 0:
            raise ValueError(f"label split {cfg.label_split!r} labels no transition of {ds.path}")
        lab_batches = Batches(lab, cfg.labelled_batch_size, cfg.seed + 3, None)
    aug_gen = torch.Generator().manual_seed(cfg.seed + 4) if cfg.augment else None

    model = LatentActionModel(cfg, ds.image_shape[-1], ds.action_dim)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], cfg.lr,
                            weight_decay=cfg.weight_decay)
    step, history, untrained = 0, [], None
    ckpt = latest_checkpoint(run_dir, "file")
    if ckpt is not None:
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        main_batches.load_state(state["main_batches"])
        if lab_batches is not None:
            lab_batches.load_state(state["lab_batches"])
        if aug_gen is not None:
            aug_gen.set_state(state["aug_gen"])
        step, history, untrained = state["step"], state["history"], state.get("untrained_probes")
    ddp = (torch.nn.parallel.DistributedDataParallel(model, broadcast_buffers=False) if world > 1 else model)

    writer = None
    held_out = None
    if dist.is_main():
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run_dir / "tb"))
        held_out = HeldOutEvaluation(ds, cfg, train, targets)

    def checkpoint() -> None:
        if dist.is_main():
            save_checkpoint(run_dir, {
                "step": step, "model": model.state_dict(), "optimizer": opt.state_dict(), "history": history,
                "untrained_probes": untrained,
                "main_batches": main_batches.state(),
                "lab_batches": lab_batches.state() if lab_batches is not None else None,
                "aug_gen": aug_gen.get_state() if aug_gen is not None else None})
        dist.barrier()

    def evaluate() -> dict[str, float]:
        return held_out(model)

    limit = cfg.steps if stop_after is None else min(cfg.steps, stop_after)
    start_step = step
    samples_per_step = cfg.batch_size + (cfg.labelled_batch_size if lab_batches is not None else 0)
    train_seconds = 0.0
    t_report = time.perf_counter()
    bar = tqdm(total=cfg.steps, initial=step, unit="step", desc=f"pretrain {cfg.method}",
               disable=not (progress and dist.is_main()), dynamic_ncols=True)
    if step == 0 and dist.is_main():  # the untrained model: the first point of every curve, and the floor
        history.append({"step": 0, **evaluate()})  # every claim about training is measured against
        model.eval()
        untrained = probe_report(model, ds, cfg, mlp=False)
        model.train()
    model.train()
    while step < limit:
        t0 = time.perf_counter()
        batch = main_batches.next(aug_gen)
        labelled = lab_batches.next() if lab_batches is not None else None
        with autocast(cfg):
            loss, metrics = ddp(batch, labelled)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        model.update_target()
        step += 1
        train_seconds += time.perf_counter() - t0
        bar.update(1)
        if dist.is_main() and (step % 25 == 0 or step == 1):
            for k, v in metrics.items():
                writer.add_scalar(f"train/{k}", v, step)
            writer.add_scalar("train/grad_norm", float(gnorm), step)
            bar.set_postfix(loss=f"{metrics['loss']:.4f}")
        if step % cfg.eval_every == 0 or step == cfg.steps:
            if dist.is_main():
                m = evaluate()
                for k, v in m.items():
                    writer.add_scalar(k, v, step)
                history.append({"step": step, "train_loss": metrics["loss"], **m})
                if on_eval is not None:
                    on_eval(step, m)
            dist.barrier()
        if step % cfg.checkpoint_every == 0 or step == limit:
            checkpoint()
    bar.close()
    if step < cfg.steps:  # stopped early on purpose
        return {"steps_done": step}

    report: dict[str, Any] = {}
    if dist.is_main():
        model.eval()
        report = {
            "method": cfg.method, "task": ds.task, "dataset": str(ds.path), "steps": step, "world_size": world,
            "run_dir": str(run_dir), "config": config, "history": history, "flow_calibration": calibration,
            # global samples per second of training steps (data, forward, backward, update; no evaluation),
            # over the steps this invocation ran
            "train_samples_per_s": round(samples_per_step * (limit - start_step) / train_seconds, 1)
            if train_seconds else None,
            "train_seconds": round(train_seconds, 1),
            "final_eval": evaluate(),
            "probes": probe_report(model, ds, cfg, mlp=cfg.mlp_probe_steps > 0),
            "untrained_probes": untrained,
        }
        report["wall_seconds"] = round(time.perf_counter() - t_report, 1)
        ev = report["probes"]["eval"]
        probes.plot_budget_curves({cfg.method: ev["budget_curve"]}, report["probes"]["label_counts"],
                                  ev["mean_action_mse"], run_dir / "probe_budget.png")
        with atomic_path(run_dir / "model.pt") as tmp:
            torch.save({"config": config, "model": model.state_dict(), "image_size": ds.image_shape[-1],
                        "action_dim": ds.action_dim, "task": ds.task, "tasks": ds.tasks, "dataset": str(ds.path)},
                       tmp)
        write_json(report_file, report)
        writer.close()
    dist.barrier()
    return report


def autocast(cfg: LAMConfig):
    """The training step's forward pass at the config's precision (bf16 autocast, or a no-op for fp32)."""
    return precision_autocast(cfg.precision)


class HeldOutEvaluation:
    """The periodic held-out evaluation of a run: the losses (and their trivial-predictor baselines) on
    ``eval_windows`` fixed windows of the eval episodes, and a linear action probe fit on training windows
    and scored on those eval windows. Built once; calling it evaluates a model (and leaves it in train mode)."""

    def __init__(self, ds: VideoDataset, cfg: LAMConfig, train: WindowDataset,
                 targets: dict[str, AgentFlowTargets]):
        wcfg = cfg.window_config()
        self.train, self.cfg = train, cfg
        self.ev = WindowDataset(ds, "eval", wcfg, None, seed=cfg.seed + 5)
        rows = _spread(self.ev.data.num_transitions, cfg.eval_windows)
        flow_mean = targets["train"].mean_target()[None] if targets else None
        self.batches = []
        for i in range(0, len(rows), 256):
            b = self.ev.gather(rows[i:i + 256])
            if targets:  # the flow targets, and the training split's mean target (the best constant prediction)
                b.update(targets["eval"].get(rows[i:i + 256]), flow_mean=flow_mean)
            if cfg.augment:
                b["homography"] = random_homographies(len(b["obs"]), torch.Generator().manual_seed(i))
            self.batches.append(b)
        # k = 1 views for the probes (they draw no offsets, so evaluation leaves the training draws alone); fit on
        # every training episode, also when the model trains on the first train_episodes only
        probe_cfg = dataclasses.replace(wcfg, max_offset=1, with_flow=False, with_masks=False)
        self.probe_train = WindowDataset(ds, "train", probe_cfg,
                                         arrays=train.data if cfg.train_episodes is None else None)
        self.probe_eval = WindowDataset(ds, "eval", probe_cfg, arrays=self.ev.data)

    def __call__(self, model: LatentActionModel) -> dict[str, float]:
        model.eval()
        m = {f"eval/{k}": v for k, v in eval_losses(model, self.batches).items()}
        tr, ev = self.probe_train, self.probe_eval
        rows_tr = _spread(tr.data.num_transitions, self.cfg.eval_windows)
        rows_ev = _spread(ev.data.num_transitions, self.cfg.eval_windows)
        m["eval/linear_probe_action_mse"] = probes.linear_probe(
            latents(model, tr, rows_tr), tr.data["actions"][rows_tr], latents(model, ev, rows_ev),
            ev.data["actions"][rows_ev])
        model.train()
        return m


# --------------------------------------------------------------------------- CLI

def build_parser():
    from rl_laof.cli import stage_parser

    p = stage_parser("rl_laof.pretrain", __doc__, LAM_PRESETS,
                     "quick: 1000 steps of batch 64, width 16 (minutes on 2 cores); paper: 50k steps of 128, width 64")
    p.add_argument("--method", default=None, choices=list(LAM_METHODS),
                   help="lapo / laom / laof (the default); -action adds an action head on the labelled windows")
    p.add_argument("--dataset", type=Path, default=None,
                   help="dataset folder (default: the task's dataset at the preset, collected if missing)")
    p.add_argument("--labels", type=float, default=None, help="labelled fraction for -action (default 0.01)")
    p.add_argument("--labelled-trajectories", type=int, default=None, help="or N labelled whole episodes")
    p.add_argument("--latent", choices=["vq", "continuous"], default=None, help="default: the method's")
    p.add_argument("--steps", type=int, default=None, help="training steps")
    p.add_argument("--batch-size", type=int, default=None, help="global batch (split over processes)")
    p.add_argument("--width", type=int, default=None, help="base channel count")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--threads", type=int, default=None, help="torch threads per process")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="any other LAMConfig field, e.g. --set flow_weight=0.5 (repeatable)")
    p.add_argument("--config", type=Path, default=None, metavar="FILE",
                   help="a config file's 'pretrain' section (e.g. a sweep's best.json); flags and --set win")
    p.add_argument("--out", type=Path, default=None, help="run folder (default runs/lam/<task>/<dataset>/<run>)")
    p.add_argument("--no-progress", action="store_true")
    return p


def config_from_args(args) -> LAMConfig:
    from rl_laof.cli import parse_sets
    from rl_laof.config_file import config_section

    overrides: dict[str, Any] = config_section(args.config, "pretrain")
    flags: dict[str, Any] = dict(method=args.method, labels=args.labels,
                                 labelled_trajectories=args.labelled_trajectories, latent=args.latent,
                                 steps=args.steps, batch_size=args.batch_size, width=args.width, seed=args.seed,
                                 threads=args.threads)
    overrides.update({k: v for k, v in flags.items() if v is not None})
    overrides.update(parse_sets(LAMConfig, args.set))
    return from_preset(LAMConfig, LAM_PRESETS, args.preset, **overrides)


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    cfg = config_from_args(args)
    dataset = args.dataset
    if dataset is None:
        dataset = find_or_build_dataset(args.task, args.preset, cfg.resolved().flow_weight > 0,
                                        progress=not args.no_progress)
    try:
        report = train_lam(cfg, dataset, args.out, progress=not args.no_progress)
        main_process = dist.is_main()
    finally:
        dist.shutdown()
    if report and main_process:
        pr = report["probes"]
        print(json.dumps({"method": report["method"], "run": report["run_dir"],
                          "linear_probe_action_mse": round(pr["eval"]["linear_action_mse"], 4),
                          "mean_action_mse": round(pr["eval"]["mean_action_mse"], 4),
                          "train_samples_per_s": report["train_samples_per_s"]}))
    return report


if __name__ == "__main__":
    from rl_laof.cli import run

    run(main)
