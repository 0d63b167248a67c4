"""Training a latent action model (LAPO, LAOM, LAOF; ``-action`` with an action head on the labels): seeded
batches, LAOF's flow calibration, exact resumption from checkpoints, data-parallel under ``torchrun``, the
report with the held-out probes, and ``load_lam`` for the stages that use a trained model."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter

from rl_laof import distributed as dist
from rl_laof.data import format as fmt
from rl_laof.data.dataset import VideoDataset
from rl_laof.data.windows import WindowDataset
from rl_laof.finite import check_state, check_step
from rl_laof.flow.agent_targets import AgentFlowTargets
from rl_laof.flow.calibrate import calibrated_sigma
from rl_laof.lam import probes
from rl_laof.lam.config import LAMConfig
from rl_laof.lam.evaluation import HeldOutEvaluation, probe_report
from rl_laof.models.augment import random_homographies
from rl_laof.models.lam_model import LatentActionModel
from rl_laof.precision import autocast
from rl_laof.progress import progress_bar
from rl_laof.runs import (
    atomic_path,
    lam_dir,
    latest_checkpoint,
    read_json,
    refuse_other_config,
    run_folder,
    write_json,
)

# config fields that do not change what a run computes (a resumed run may change them)
_NOT_IDENTITY = ("threads", "eval_every", "checkpoint_every", "steps")


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


def default_run_dir(cfg: LAMConfig, dataset: Path, task: str) -> Path:
    """Where a run of ``cfg`` on ``dataset`` (as the caller holds it: file or folder) goes by default."""
    return lam_dir(task, dataset, cfg.method, cfg.preset, cfg.seed, cfg.label_split if cfg.supervised else None)


def train_lam(cfg: LAMConfig, dataset: str | Path, out: str | Path | None = None, progress: bool = True,
              stop_after: int | None = None, on_eval: Callable[[int, dict[str, float]], None] | None = None
              ) -> dict[str, Any]:
    """Train (or resume, or find finished) one latent action model; returns its report.

    ``stop_after``: end (with a checkpoint) after that many steps in total, as a kill would — the test of
    exact resumption uses it. ``on_eval(step, metrics)`` sees every periodic held-out evaluation (a sweep
    reports them to its pruner, and may raise to end the run there).
    """
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
    run_dir = run_folder(out if out is not None else default_run_dir(cfg, ds.path, ds.task))
    config = json.loads(json.dumps(cfg.to_dict()))
    refuse_other_config(run_dir, config, _NOT_IDENTITY)
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

    if dist.is_main():  # everything is checked: the run's folder is made now
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / "config.json", {"config": config, "dataset": str(ds.path), "world_size": world})
    dist.barrier()
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
        writer = SummaryWriter(str(run_dir / "tb"))
        held_out = HeldOutEvaluation(ds, cfg, train, targets)

    hint = f"lower the learning rate (--set lr=..., now {cfg.lr:g}) or the grad clip (now {cfg.grad_clip:g})"

    def checkpoint() -> None:
        if dist.is_main():
            check_state("pretrain", model.state_dict(), step, hint)
            save_checkpoint(run_dir, {
                "step": step, "model": model.state_dict(), "optimizer": opt.state_dict(), "history": history,
                "untrained_probes": untrained,
                "main_batches": main_batches.state(),
                "lab_batches": lab_batches.state() if lab_batches is not None else None,
                "aug_gen": aug_gen.get_state() if aug_gen is not None else None})
        dist.barrier()

    limit = cfg.steps if stop_after is None else min(cfg.steps, stop_after)
    start_step = step
    samples_per_step = cfg.batch_size + (cfg.labelled_batch_size if lab_batches is not None else 0)
    train_seconds = 0.0
    t_report = time.perf_counter()
    bar = progress_bar(total=cfg.steps, initial=step, unit="step", desc=f"pretrain {cfg.method}",
                       enabled=progress and dist.is_main())
    if step == 0 and dist.is_main():  # the untrained model: the first point of every curve, and the floor
        history.append({"step": 0, **held_out(model)})  # every claim about training is measured against
        model.eval()
        untrained = probe_report(model, ds, cfg, mlp=False)
        model.train()
    model.train()
    while step < limit:
        t0 = time.perf_counter()
        batch = main_batches.next(aug_gen)
        labelled = lab_batches.next() if lab_batches is not None else None
        with autocast(cfg.precision):
            loss, metrics = ddp(batch, labelled)
        check_step("pretrain", step + 1, hint, loss=loss if world == 1 else None)  # one process must not stop alone
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        check_step("pretrain", step + 1, hint, grad_norm=gnorm)  # the same on every process (all-reduced)
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
                m = held_out(model)
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
            "final_eval": held_out(model),
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
