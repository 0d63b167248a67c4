"""Training a latent action model (LAPO, LAOM, LAOF; ``-action`` with an action head on the labels): seeded
batches, LAOF's flow calibration, exact resumption from checkpoints, data-parallel under ``torchrun``, the
report with the held-out probes, and ``load_lam`` for the stages that use a trained model."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
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
from rl_laof.flow.agent_targets import AgentFlowTargets
from rl_laof.flow.calibrate import calibrated_sigma
from rl_laof.lam import probes
from rl_laof.lam.config import LAMConfig
from rl_laof.lam.evaluation import HeldOutEvaluation, probe_report, selection_split
from rl_laof.loop import Checkpoints, TrainingLoop
from rl_laof.models import LAOMModel, LatentActionModel, build_lam, lam_augmentation
from rl_laof.models.augment import random_homographies
from rl_laof.precision import autocast
from rl_laof.presets import available_memory, refuse_beyond
from rl_laof.runs import (
    INPUTS,
    lam_dir,
    load_torch,
    lock_run,
    read_json,
    refuse_other_config,
    run_folder,
    save_torch,
    torch_checksum,
    write_json,
)

# config fields that do not change what a run computes (a resumed run may change them)
_NOT_IDENTITY = ("threads", "eval_every", "checkpoint_every", "steps", "untrained_probes")


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
    """The trained model of a lam run (``model.pt``), in eval mode."""
    path = Path(run_dir) / "model.pt"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no trained latent action model (run python -m rl_laof.lam first)")
    saved = load_torch(path)
    config = {**_BEFORE_RESOLUTIONS, **saved["config"]}
    model = build_lam(LAMConfig(**config), saved["image_size"], saved["action_dim"])
    model.load_state_dict(saved["model"])
    return model.eval()


def lam_input(run_dir: str | Path) -> dict[str, Any] | None:
    """A trained model as a run built on it records it (``rl_laof.runs.refuse_other_inputs``): its ``model.pt``
    and that file's checksum (a model trained again in the folder is another input); None without a model."""
    path = Path(run_dir) / "model.pt"
    if not path.is_file():
        return None
    sums = torch_checksum(path, verify=False)  # the recorded one: a model differs from another by it
    return {"path": os.path.abspath(path), "id": sums[0] if sums is not None else None}


def default_run_dir(cfg: LAMConfig, dataset: Path, task: str) -> Path:
    """Where a run of ``cfg`` on ``dataset`` (its folder or its file: the run is named after the folder) goes by
    default; a flow method's folder names its flow tier (``laof-rgb``, ``laof-action-oracle``), so the tiers never
    share a run."""
    tag = f"{cfg.method}-{cfg.flow_tier}" if cfg.base == "laof" else cfg.method
    return lam_dir(task, dataset, tag, cfg.preset, cfg.seed, cfg.label_split if cfg.supervised else None)


@dataclasses.dataclass
class LAMData:
    """A run's seeded training data: the training windows, the flow targets of the training and held-out splits
    (none without a flow loss), the main and labelled batches, and the augmentation's generator."""

    train: WindowDataset
    targets: dict[str, AgentFlowTargets]
    main: Batches
    labelled: Batches | None
    augment: torch.Generator | None


def training_data(cfg: LAMConfig, ds: VideoDataset) -> LAMData:
    """The batches of ``cfg`` on ``ds``, each stream seeded from ``cfg.seed`` (so is torch's global generator, which
    then makes the model's initial weights)."""
    torch.manual_seed(cfg.seed)
    wcfg = cfg.window_config()
    train = WindowDataset(ds, "train", wcfg, None, seed=cfg.seed, episodes=cfg.train_episodes)
    targets = {split: AgentFlowTargets(ds, split, cfg.flow_sigma, cfg.agent_flow_source, cfg.flow_resolution,
                                       episodes=cfg.train_episodes if split == "train" else None)
               for split in ("train", selection_split(ds))} if cfg.flow_weight > 0 else {}
    # LAOM draws an augmentation per image, for the labelled windows too (the others: one warp per window of the
    # main batch), for the global batch: a data-parallel run slices the same draws
    augment_fn = lam_augmentation(cfg, ds.image_shape[-1])
    main = Batches(train, cfg.batch_size, cfg.seed + 1, targets.get("train"), augment_fn)
    labelled = None
    if cfg.action_weight > 0:
        lab = WindowDataset(ds, "train", wcfg, True, seed=cfg.seed + 2, arrays=train.data)
        if len(lab) == 0:
            raise ValueError(f"label split {cfg.label_split!r} labels no transition of {ds.path}")
        # "alternate": a whole step's batch (XizoB/LAOF draws both kinds at the same batch size)
        lab_size = cfg.batch_size if cfg.label_schedule == "alternate" else cfg.labelled_batch_size
        labelled = Batches(lab, lab_size, cfg.seed + 3, None, augment_fn if cfg.base == "laom" else None)
    augment = torch.Generator().manual_seed(cfg.seed + 4) if cfg.augment else None
    return LAMData(train, targets, main, labelled, augment)


class LAMTraining(TrainingLoop):
    """:func:`train_lam`'s loop (``rl_laof.loop``): the model's loss on seeded global batches (in the "alternate"
    label schedule, labelled and unlabelled batches by turns, each loss weighted by its share of the data), the
    held-out evaluation (:class:`~rl_laof.lam.evaluation.HeldOutEvaluation`) every ``eval_every`` steps and of
    the untrained model, data-parallel under ``torchrun``; TensorBoard in ``<run_dir>/tb``."""

    evaluate_at_start = True

    def __init__(self, cfg: LAMConfig, ds: VideoDataset, run_dir: Path, data: LAMData, world: int,
                 progress: bool = True, stop_after: int | None = None,
                 on_eval: Callable[[int, dict[str, float]], None] | None = None):
        hint = f"lower the learning rate (--set lr=..., now {cfg.lr:g}) or the grad clip (now {cfg.grad_clip:g})"
        super().__init__("lam", cfg.steps, Checkpoints(run_dir / "checkpoints"), cfg.checkpoint_every,
                         eval_every=cfg.eval_every, hint=hint, desc=f"lam {cfg.method}", progress=progress,
                         on_eval=on_eval, stop_after=stop_after)
        self.cfg, self.ds, self.data, self.world = cfg, ds, data, world
        self.model = build_lam(cfg, ds.image_shape[-1], ds.action_dim)
        self.optimizer = make_optimizer(self.model, cfg)
        self.parameters = list(self.model.parameters())
        self.grad_clip = cfg.grad_clip or math.inf  # 0: no clipping
        self.alternate = cfg.label_schedule == "alternate" and data.labelled is not None
        self.forward = self.model  # the DistributedDataParallel wrapper under torchrun (start)
        self.untrained: dict | None = None  # the untrained model's probes: the floor of every claim
        self.writer = SummaryWriter(str(run_dir / "tb")) if self.main else None
        self.held_out = HeldOutEvaluation(ds, cfg, data.train, data.targets) if self.main else None

    @property
    def samples_per_step(self) -> int:
        labelled = self.data.labelled is not None and not self.alternate
        return self.cfg.batch_size + (self.cfg.labelled_batch_size if labelled else 0)

    def start(self) -> None:
        if self.step == 0 and self.main and self.cfg.untrained_probes:
            self.model.eval()
            self.untrained = probe_report(self.model, self.ds, self.cfg, mlp=False)
        self.model.train()
        if self.world > 1:  # "alternate" steps leave the action head or the flow decoder without a gradient
            self.forward = torch.nn.parallel.DistributedDataParallel(
                self.model, broadcast_buffers=False, find_unused_parameters=self.cfg.label_schedule == "alternate")

    def loss(self) -> tuple[torch.Tensor, dict[str, float]]:
        cfg, d = self.cfg, self.data
        if self.alternate:  # even steps labelled: lambda (FDM + VQ + action); odd: (1 - lambda) (FDM + VQ + flow)
            with_labels = self.step % 2 == 0
            batch = d.labelled.next(d.augment) if with_labels else d.main.next(d.augment)
            with autocast(cfg.precision):
                loss, metrics = self.forward(batch, None, None, with_labels)
            return loss * (cfg.label_share if with_labels else 1.0 - cfg.label_share), metrics
        batch = d.main.next(d.augment)
        labelled = d.labelled.next(d.augment) if d.labelled is not None else None
        with autocast(cfg.precision):
            return self.forward(batch, labelled)

    def learning_rate(self, step: int) -> float:
        return self.cfg.learning_rate(step)

    def after_update(self) -> None:
        self.model.update_target()

    def log(self, metrics: dict[str, float]) -> None:
        if self.main and (self.step % 25 == 0 or self.step == 1):
            for k, v in metrics.items():
                self.writer.add_scalar(f"train/{k}", v, self.step)
            self.bar.set_postfix(loss=f"{metrics['loss']:.4f}")

    def evaluate(self) -> dict[str, float]:
        return self.held_out(self.model)

    def record(self, metrics: dict[str, float], evaluation: dict[str, float]) -> None:
        for k, v in evaluation.items():
            self.writer.add_scalar(k, v, self.step)
        super().record(metrics, evaluation)

    def module_state(self) -> dict:
        return self.model.state_dict()

    def state(self) -> dict:
        d = self.data
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "untrained_probes": self.untrained, "main_batches": d.main.state(),
                "lab_batches": d.labelled.state() if d.labelled is not None else None,
                "aug_gen": d.augment.get_state() if d.augment is not None else None}

    def load_state(self, state: dict) -> None:
        d = self.data
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        d.main.load_state(state["main_batches"])
        if d.labelled is not None:
            d.labelled.load_state(state["lab_batches"])
        if d.augment is not None:
            d.augment.set_state(state["aug_gen"])
        self.untrained = state.get("untrained_probes")


def activation_factor(width: int) -> float:
    """A training sample's memory (forward and backward) over its float32 inputs: measured with LAOF's conv model
    on 32-px frames (peak RSS between batch sizes 1024 and 4096 at width 16, 256 and 1024 at width 64), about 5x
    at width 16 and 16x at width 64."""
    return 2.0 + width / 5


def check_batch(cfg: LAMConfig, ds: VideoDataset) -> None:
    """Refuse, before anything is loaded, a batch (``cfg`` resolved) that the data or the machine cannot hold:
    more samples than the training split has windows (a step would draw every window several times, and the
    batch grows memory for nothing: 100000 on a 5-episode dataset took 20 GB), or a batch whose estimated memory
    (float32 frames and flow target of each sample x :func:`activation_factor`) is more than is available."""
    windows = sum(e.length for e in ds.episodes["train"][:cfg.train_episodes])
    if cfg.batch_size > windows:
        raise ValueError(f"batch_size={cfg.batch_size}: {ds.path} has {windows} training windows; use "
                         f"--batch-size {windows} or less (a larger batch only repeats windows within a step)")
    c, h, w = ds.image_shape[-3:]
    sample = 4 * ((cfg.frame_stack + 2) * c * h * w + 2 * h * w)  # o_t's stack, o_t+1, o_t+k; the flow target
    samples = cfg.batch_size + (cfg.labelled_batch_size if cfg.supervised else 0)
    refuse_beyond(f"batch_size={cfg.batch_size} at width={cfg.width} on {h}-px frames",
                  samples * sample * activation_factor(cfg.width), available_memory(), "memory",
                  "use a smaller --batch-size or --width")


@dataclasses.dataclass
class LAMRun:
    """A lam run as found before anything is written: its config (flow sigma and label share resolved from
    the dataset), the dataset, what the calibration saw, the folder, the config as recorded there, and the
    report of a finished run."""

    cfg: LAMConfig
    ds: VideoDataset
    calibration: dict[str, Any] | None
    dir: Path
    config: dict[str, Any]
    report: dict[str, Any] | None


def open_lam_run(cfg: LAMConfig, dataset: str | Path, out: str | Path | None, stop_after: int | None) -> LAMRun:
    """The run of ``cfg`` on ``dataset`` (in ``out``, else :func:`default_run_dir`), checked before anything is
    written: a dataset without the config's flow or label split, an unsupported combination and a folder of
    another config are refused."""
    r = cfg.resolved()
    # the flow file of the config's tier and nothing else (an oracle file beside it is never read by another tier)
    ds = VideoDataset(dataset, flow=r.flow_method if r.flow_weight > 0 else None)
    check_batch(r, ds)
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
    # the same config on another dataset or flow file is another run: refused, never handed back or resumed
    refuse_other_config(run_dir, config, _NOT_IDENTITY + cfg.unused_fields, inputs=ds.inputs(flow=True))
    report, report_file = None, run_dir / "report.json"
    if report_file.exists() and stop_after is None:
        recorded = read_json(report_file)
        report = recorded if recorded.get("steps") == cfg.steps else None
    return LAMRun(cfg, ds, calibration, run_dir, config, report)


def lam_report(loop: LAMTraining, run: LAMRun, world: int, t_start: float) -> dict[str, Any]:
    """The finished run's report (final held-out evaluation, probes, throughput), its probe plot, ``model.pt``
    and ``report.json``; on the first process only."""
    cfg, ds, model = loop.cfg, loop.ds, loop.model
    model.eval()
    report = {
        "method": cfg.method, "task": ds.task, "dataset": str(ds.path), "steps": loop.step, "world_size": world,
        "run_dir": str(run.dir), "config": run.config, "history": loop.history, "flow_calibration": run.calibration,
        # what the flow target was built from (rl_laof.flow.tiers); None without a flow term
        "flow_tier": cfg.flow_tier if cfg.flow_weight > 0 else None,
        # the held-out split of the periodic evaluation (history) and of choices made from this run
        "selection_split": loop.held_out.split,
        "flow_file": str(ds.flow_path) if ds.flow_path is not None else None,
        # global samples per second of training steps (data, forward, backward, update; no evaluation),
        # over the steps this invocation ran
        "train_samples_per_s": round(loop.samples_per_step * (loop.step - loop.start_step) / loop.train_seconds, 1)
        if loop.train_seconds else None,
        "train_seconds": round(loop.train_seconds, 1),
        "final_eval": loop.held_out(model),
        "probes": probe_report(model, ds, cfg, mlp=cfg.mlp_probe_steps > 0),
        "untrained_probes": loop.untrained,
    }
    report["wall_seconds"] = round(time.perf_counter() - t_start, 1)
    ev = report["probes"]["eval"]
    probes.plot_budget_curves({cfg.method: ev["budget_curve"]}, report["probes"]["label_counts"],
                              ev["mean_action_mse"], run.dir / "probe_budget.png")
    save_torch({"config": run.config, "model": model.state_dict(), "image_size": ds.image_shape[-1],
                "action_dim": ds.action_dim, "task": ds.task, "tasks": ds.tasks, "dataset": str(ds.path)},
               run.dir / "model.pt")
    write_json(run.dir / "report.json", report)
    loop.writer.close()
    return report


def train_lam(cfg: LAMConfig, dataset: str | Path, out: str | Path | None = None, progress: bool = True,
              stop_after: int | None = None, on_eval: Callable[[int, dict[str, float]], None] | None = None
              ) -> dict[str, Any]:
    """Train (or resume, or find finished) one latent action model; returns its report.

    ``stop_after``: end (with a checkpoint) after that many steps in total, as a kill would — the test of
    exact resumption uses it. ``on_eval(step, metrics)`` sees every periodic held-out evaluation (a sweep
    reports them to its pruner, and may raise to end the run there). Phases: :func:`open_lam_run`,
    :func:`training_data`, :class:`LAMTraining`, :func:`lam_report`.
    """
    _, world = dist.init_from_env()
    if cfg.threads or world > 1:
        torch.set_num_threads(cfg.threads or max(1, (torch.get_num_threads()) // world))
    run = open_lam_run(cfg, dataset, out, stop_after)
    if run.report is not None:
        return run.report
    data = training_data(run.cfg, run.ds)
    # everything is checked: the run's folder is made now, held by the first process (the one that writes)
    with lock_run(run.dir) if dist.is_main() else contextlib.nullcontext():
        if dist.is_main():
            write_json(run.dir / "config.json", {"config": run.config, "dataset": str(run.ds.path),
                                                 INPUTS: run.ds.inputs(flow=True), "world_size": world})
        dist.barrier()
        t_start = time.perf_counter()
        loop = LAMTraining(run.cfg, run.ds, run.dir, data, world, progress, stop_after, on_eval)
        if not loop.run():  # stopped early on purpose
            return {"steps_done": loop.step}
        report = lam_report(loop, run, world, t_start) if dist.is_main() else {}
        if dist.is_main():  # the last checkpoint stays: a run given more steps resumes from it
            loop.checkpoints.prune(1)
        dist.barrier()
    return report
