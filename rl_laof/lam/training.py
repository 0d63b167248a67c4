"""Training a latent action model (LAPO, LAOM, LAOF; ``-action`` with an action head on the labels): seeded
batches, LAOF's flow calibration, exact resumption from checkpoints, data-parallel under ``torchrun``, the
report with the held-out probes, and ``load_lam`` for the stages that use a trained model."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter

from rl_laof import distributed as dist
from rl_laof.data.dataset import VideoDataset
from rl_laof.data.windows import WindowDataset
from rl_laof.finite import check_state, check_step
from rl_laof.flow.agent_targets import AgentFlowTargets
from rl_laof.flow.calibrate import calibrated_sigma
from rl_laof.lam import probes
from rl_laof.lam.config import LAMConfig
from rl_laof.lam.evaluation import HeldOutEvaluation, probe_report, selection_split
from rl_laof.models import LAOMModel, LatentActionModel, build_lam, lam_augmentation
from rl_laof.models.augment import random_homographies
from rl_laof.precision import autocast
from rl_laof.progress import progress_bar
from rl_laof.runs import (
    atomic_path,
    lam_dir,
    latest_checkpoint,
    load_torch,
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

    def __init__(self, windows: WindowDataset, batch_size: int, seed: int, targets: AgentFlowTargets | None,
                 augment_fn: Callable[[int, torch.Generator], torch.Tensor] | None = random_homographies):
        self.windows, self.batch_size, self.targets = windows, batch_size, targets
        self.augment_fn = augment_fn  # draws the global batch's homographies (rl_laof.models.lam_augmentation)
        self.rng = np.random.default_rng(seed)

    def next(self, augment: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        idx = self.rng.integers(0, len(self.windows), self.batch_size)
        draw = augment is not None and self.augment_fn is not None
        hom = self.augment_fn(self.batch_size, augment) if draw else None
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
    sigma, speeds = calibrated_sigma(ds, r.flow_sigma_percentile, r.agent_flow_source)
    return cfg.resolved(sigma), {"sigma": sigma, "calibrated": True, "percentile": r.flow_sigma_percentile,
                                 "tier": r.flow_tier, "source": r.agent_flow_source, "agent_speed": speeds}


def label_share(cfg: LAMConfig, ds: VideoDataset) -> LAMConfig:
    """``cfg`` with lambda set, for the "alternate" label schedule, to the labelled share of the training data
    (M / (N + M): 0.01 at 1 % labels, as XizoB/LAOF's ``ratio``) unless the config fixes it."""
    if cfg.label_schedule != "alternate" or cfg.label_share is not None:
        return cfg
    mask = ds.label_mask("train", cfg.label_split)
    if cfg.train_episodes is not None:
        mask = mask[:sum(e.length for e in ds.episodes["train"][:cfg.train_episodes])]
    share = float(mask.mean())
    if not 0.0 < share < 1.0:
        raise ValueError(f"label split {cfg.label_split!r} labels {share:.0%} of {ds.path}'s training transitions: "
                         "the alternating schedule needs some labelled and some unlabelled data")
    return dataclasses.replace(cfg, label_share=share)


def save_checkpoint(run_dir: Path, state: dict) -> Path:
    ckdir = run_dir / "checkpoints"
    path = ckdir / f"step-{state['step']:08d}.pt"
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    write_json(ckdir / "latest.json", {"file": path.name, "step": state["step"]})
    for old in sorted(ckdir.glob("step-*.pt"))[:-2]:  # keep the newest two
        old.unlink()
    return path


# runs saved before these fields existed: full-resolution flow decoders and FDMs, the oracle flow target (the
# default until issue 30 moved it to "rgb")
_BEFORE_RESOLUTIONS = {"flow_resolution": None, "fdm_resolution": None, "flow_tier": "oracle",
                       # and LAOM as this project's conv variant, trained with AdamW at a constant rate
                       "encoder": "conv", "optimizer": "adamw", "lr_schedule": "constant"}


def make_optimizer(model: torch.nn.Module, cfg: LAMConfig) -> torch.optim.Optimizer:
    """The resolved config's optimiser over the model's trainable parameters (LAOM's EMA target has none); the
    training loop sets each update's learning rate (:meth:`LAMConfig.learning_rate`)."""
    params = [p for p in model.parameters() if p.requires_grad]
    # fused: one pass over each parameter's state instead of ~8 elementwise kernels; on the CPU the unfused
    # update was half of LAOM's step (109 M parameters at batch 64): 1.8x the samples/s, measured in one process
    opt = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
    return opt(params, cfg.lr, weight_decay=cfg.weight_decay, fused=True)


def load_lam(run_dir: str | Path) -> LatentActionModel | LAOMModel:
    """The trained model of a pretrain run (``model.pt``), in eval mode."""
    path = Path(run_dir) / "model.pt"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no trained latent action model (run python -m rl_laof.pretrain first)")
    saved = load_torch(path)
    config = {**_BEFORE_RESOLUTIONS, **saved["config"]}
    model = build_lam(LAMConfig(**config), saved["image_size"], saved["action_dim"])
    model.load_state_dict(saved["model"])
    return model.eval()


def default_run_dir(cfg: LAMConfig, dataset: Path, task: str) -> Path:
    """Where a run of ``cfg`` on ``dataset`` (as the caller holds it: file or folder) goes by default; a flow
    method's folder names its flow tier (``laof-rgb``, ``laof-action-oracle``), so the tiers never share a run."""
    tag = f"{cfg.method}-{cfg.flow_tier}" if cfg.base == "laof" else cfg.method
    return lam_dir(task, dataset, tag, cfg.preset, cfg.seed, cfg.label_split if cfg.supervised else None)


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
    r = cfg.resolved()
    # the flow file of the config's tier and nothing else (an oracle file beside it is never read by another tier)
    ds = VideoDataset(dataset, flow=r.flow_method if r.flow_weight > 0 else None)
    cfg, calibration = flow_calibration(cfg, ds)
    cfg = label_share(cfg, ds) if cfg.supervised else cfg
    if cfg.augment and cfg.flow_weight > 0:
        raise ValueError("augment with the flow loss is not supported: the flow target would need the same warp")
    if cfg.supervised and cfg.label_split not in ds.labels:
        raise KeyError(f"{ds.path}: no label split {cfg.label_split!r}; available: {', '.join(ds.labels)}")
    for b in (cfg.batch_size, cfg.labelled_batch_size):
        dist.my_slice(b)  # divisible by the world size
    run_dir = run_folder(out if out is not None else default_run_dir(cfg, ds.path, ds.task))
    config = json.loads(json.dumps(cfg.to_dict()))
    refuse_other_config(run_dir, config, _NOT_IDENTITY + cfg.unused_fields)
    report_file = run_dir / "report.json"
    if report_file.exists() and stop_after is None:
        report = read_json(report_file)
        if report.get("steps") == cfg.steps:
            return report

    torch.manual_seed(cfg.seed)
    wcfg = cfg.window_config()
    train = WindowDataset(ds, "train", wcfg, None, seed=cfg.seed, episodes=cfg.train_episodes)
    targets = {split: AgentFlowTargets(ds, split, cfg.flow_sigma, cfg.agent_flow_source, cfg.flow_resolution,
                                       episodes=cfg.train_episodes if split == "train" else None)
               for split in ("train", selection_split(ds))} if cfg.flow_weight > 0 else {}
    # LAOM draws an augmentation per image, for the labelled windows too (the others: one warp per window of the
    # main batch), for the global batch: a data-parallel run slices the same draws
    augment_fn = lam_augmentation(cfg, ds.image_shape[-1])
    main_batches = Batches(train, cfg.batch_size, cfg.seed + 1, targets.get("train"), augment_fn)
    lab_batches = None
    if cfg.action_weight > 0:
        lab = WindowDataset(ds, "train", wcfg, True, seed=cfg.seed + 2, arrays=train.data)
        if len(lab) == 0:
            raise ValueError(f"label split {cfg.label_split!r} labels no transition of {ds.path}")
        # "alternate": a whole step's batch (XizoB/LAOF draws both kinds at the same batch size)
        lab_size = cfg.batch_size if cfg.label_schedule == "alternate" else cfg.labelled_batch_size
        lab_batches = Batches(lab, lab_size, cfg.seed + 3, None, augment_fn if cfg.base == "laom" else None)
    aug_gen = torch.Generator().manual_seed(cfg.seed + 4) if cfg.augment else None

    if dist.is_main():  # everything is checked: the run's folder is made now
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / "config.json", {"config": config, "dataset": str(ds.path), "world_size": world})
    dist.barrier()
    model = build_lam(cfg, ds.image_shape[-1], ds.action_dim)
    opt = make_optimizer(model, cfg)
    step, history, untrained = 0, [], None
    ckpt = latest_checkpoint(run_dir, "file")
    if ckpt is not None:
        state = load_torch(ckpt)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        main_batches.load_state(state["main_batches"])
        if lab_batches is not None:
            lab_batches.load_state(state["lab_batches"])
        if aug_gen is not None:
            aug_gen.set_state(state["aug_gen"])
        step, history, untrained = state["step"], state["history"], state.get("untrained_probes")
    # "alternate" steps leave the action head (unlabelled) or the flow decoder (labelled) without a gradient
    ddp = (torch.nn.parallel.DistributedDataParallel(model, broadcast_buffers=False,
                                                     find_unused_parameters=cfg.label_schedule == "alternate")
           if world > 1 else model)

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
    alternate = cfg.label_schedule == "alternate" and lab_batches is not None
    samples_per_step = cfg.batch_size + (cfg.labelled_batch_size if lab_batches is not None and not alternate else 0)
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
        if alternate:  # even steps labelled: lambda (FDM + VQ + action); odd: (1 - lambda) (FDM + VQ + flow)
            with_labels = step % 2 == 0
            batch = lab_batches.next(aug_gen) if with_labels else main_batches.next(aug_gen)
            with autocast(cfg.precision):
                loss, metrics = ddp(batch, None, None, with_labels)
            loss = loss * (cfg.label_share if with_labels else 1.0 - cfg.label_share)
        else:
            batch = main_batches.next(aug_gen)
            labelled = lab_batches.next(aug_gen) if lab_batches is not None else None
            with autocast(cfg.precision):
                loss, metrics = ddp(batch, labelled)
        check_step("pretrain", step + 1, hint, loss=loss if world == 1 else None)  # one process must not stop alone
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip or math.inf)  # 0: no clipping
        check_step("pretrain", step + 1, hint, grad_norm=gnorm)  # the same on every process (all-reduced)
        for group in opt.param_groups:  # a function of the step: a resumed run continues the schedule exactly
            group["lr"] = cfg.learning_rate(step)
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
            # what the flow target was built from (rl_laof.flow.tiers); None without a flow term
            "flow_tier": cfg.flow_tier if cfg.flow_weight > 0 else None,
            # the held-out split of the periodic evaluation (history) and of choices made from this run
            "selection_split": held_out.split,
            "flow_file": str(ds.flow_path) if ds.flow_path is not None else None,
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
