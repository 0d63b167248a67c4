"""Training one imitation run: the targets (a frozen latent action model's latents, an IDM's relabelling, or
the labels), the policy (latent BC or LAFP flow matching), the action decoder on the labels with the policy
frozen; then its evaluation and report, normalised by BC on all labels. Every stage is resumable
(``rl_laof.fit``) and kept in the run folder."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.tensorboard import SummaryWriter

from envs.rollout import policy_returns
from rl_laof.data.config import WindowConfig
from rl_laof.data.dataset import VideoDataset
from rl_laof.data.windows import WindowDataset
from rl_laof.fit import fit
from rl_laof.imitation.config import ImitationConfig
from rl_laof.imitation.evaluation import action_error, latency_ms, plot_normalised_returns, spread_ratio
from rl_laof.imitation.policy import AGENT_FILE, LatentPolicy, data_record, distractor_level, make_policy
from rl_laof.lam.evaluation import latents
from rl_laof.lam.training import lam_input, load_lam
from rl_laof.models.policy import (
    ActionDecoder,
    BCPolicy,
    FlowPolicy,
    LatentNormalizer,
    LatentPCA,
    PixelIDM,
    random_shift,
)
from rl_laof.runs import (
    INPUTS,
    imitation_dir,
    load_torch,
    lock_run,
    read_json,
    refuse_other_config,
    run_folder,
    save_torch,
    write_json,
)

#: config fields that change only the evaluation: finished training stages are reused when they change
_EVAL_ONLY = ("eval_episodes", "eval_seeds", "eval_backgrounds", "eval_backend", "latency_calls", "normalise",
              "threads", "checkpoint_every")
PCA_DIRECTIONS = 32  # principal directions of the training latents stored with a latent policy
TARGETS_FILE = "targets.pt"  # the latent targets of a run, kept once computed
POLICY_STAGE_FILE = "policy-stage.pt"  # the finished policy training stage (rl_laof.fit), beside the agent file


class Transitions:
    """The training split's transitions (k = 1 windows) with the label split of ``cfg``."""

    def __init__(self, ds: VideoDataset, cfg: ImitationConfig):
        wcfg = WindowConfig(frame_stack=cfg.frame_stack, max_offset=1, label_split=cfg.label_split,
                            with_masks=False, with_states=False, with_flow=False)
        self.windows = WindowDataset(ds, "train", wcfg, None, seed=cfg.seed)
        self.n = self.windows.data.num_transitions
        self.labelled = np.flatnonzero(self.windows.labelled_mask)
        if len(self.labelled) == 0:
            raise ValueError(f"label split {cfg.label_split!r} of {ds.path} labels no transition")
        self.actions = torch.from_numpy(np.asarray(self.windows.data["actions"], np.float32))

    def obs(self, rows: np.ndarray, future: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        b = self.windows.gather(rows)
        return (b["obs"], b["next_obs"]) if future else b["obs"]


def _batched(fn: Callable[[np.ndarray], torch.Tensor], rows: np.ndarray, size: int = 256) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([fn(rows[i:i + size]) for i in range(0, len(rows), size)])


def latent_targets(cfg: ImitationConfig, ds: VideoDataset, data: Transitions, run_dir: Path,
                   lam_run: str | Path | None) -> tuple[torch.Tensor, LatentNormalizer, str]:
    """Normalised pre-quantisation latents z_t of every training transition, from the frozen latent model
    ``lam_run`` (else ``cfg.lam_run``; read only when the run folder does not hold the latents yet: see
    :func:`needs_latent_model`)."""
    path = run_dir / TARGETS_FILE
    if path.exists():
        saved = load_torch(path)
        norm = LatentNormalizer(saved["z"].shape[1])
        norm.load_state_dict(saved["normalizer"])
        return saved["z"], norm, saved["lam_run"]
    lam_run = lam_run if lam_run is not None else cfg.lam_run
    if lam_run is None:
        raise ValueError(f"latent {cfg.latent!r} needs a latent action model: set lam_run, or run through "
                         "rl_laof.pipeline.imitation (it finds or trains the preset's)")
    lam_run = Path(lam_run)
    if not (lam_run / "model.pt").exists():
        raise FileNotFoundError(f"{lam_run}: no model.pt; train it with python -m rl_laof.lam --method "
                                f"{cfg.latent} --dataset {ds.path.parent} --out {lam_run}")
    lam = load_lam(lam_run)
    saved_meta = load_torch(lam_run / "model.pt")
    lam_tasks = saved_meta.get("tasks") or [saved_meta.get("task")]  # a multi-task model serves each of its tasks
    if ds.task not in lam_tasks or saved_meta.get("image_size") != ds.image_shape[-1]:
        raise ValueError(f"{lam_run} was trained on {saved_meta.get('task')} at {saved_meta.get('image_size')} px; "
                         f"the dataset is {ds.task} at {ds.image_shape[-1]} px")
    if lam.cfg.frame_stack != cfg.frame_stack:
        raise ValueError(f"{lam_run} stacks {lam.cfg.frame_stack} frames, the policy {cfg.frame_stack}: "
                         f"use --set frame_stack={lam.cfg.frame_stack}")
    z = torch.from_numpy(latents(lam, data.windows, np.arange(data.n)))
    norm = LatentNormalizer.fit(z)
    z_norm = norm.normalize(z)
    save_torch({"z": z_norm, "normalizer": norm.state_dict(), "lam_run": str(lam_run)}, path)
    return z_norm, norm, str(lam_run)


def idm_relabel(cfg: ImitationConfig, ds: VideoDataset, data: Transitions, run_dir: Path, writer,
                progress: bool) -> tuple[torch.Tensor, list]:
    """The IDM baseline's targets: an inverse dynamics model from pixels trained on the labelled transitions
    predicts every transition's action (labelled ones keep their true label)."""
    idm = PixelIDM(cfg.frame_stack, ds.action_dim, cfg.width, ds.image_shape[-1], cfg.hidden)

    def pair(rows: np.ndarray) -> torch.Tensor:
        return torch.cat(data.obs(rows, future=True), 1)

    def loss(rng, gen):
        rows = data.labelled[rng.integers(0, len(data.labelled), cfg.batch_size)]
        x = pair(rows)
        x = random_shift(x, gen) if cfg.augment else x
        return F.mse_loss(idm(x), data.actions[rows])

    hist = fit("idm", idm, loss, cfg.idm_steps, cfg.lr, cfg.weight_decay, cfg.grad_clip, run_dir, cfg.seed + 10,
               cfg.checkpoint_every, writer, progress, cfg.resolved_precision, cfg.lr_schedule)
    actions = _batched(lambda r: idm(pair(r)), np.arange(data.n))
    actions[data.labelled] = data.actions[data.labelled]
    return actions, hist


def train_policy(cfg: ImitationConfig, policy: BCPolicy | FlowPolicy, data: Transitions, targets: torch.Tensor,
                 rows: np.ndarray, run_dir: Path, writer, progress: bool) -> list:
    def loss(rng, gen):
        b = rows[rng.integers(0, len(rows), cfg.batch_size)]
        obs = data.obs(b)
        obs = random_shift(obs, gen) if cfg.augment else obs
        return policy.loss(obs, targets[b], gen)

    keep_finished_policy(run_dir)
    return fit("policy", policy, loss, cfg.steps, cfg.lr, cfg.weight_decay, cfg.grad_clip, run_dir, cfg.seed + 20,
               cfg.checkpoint_every, writer, progress, cfg.resolved_precision, cfg.lr_schedule,
               record=POLICY_STAGE_FILE)


def keep_finished_policy(run_dir: Path) -> None:
    """A run saved before the policy stage had a file of its own (:data:`POLICY_STAGE_FILE`) kept its finished
    policy only in the agent file ``policy.pt``, which replaced the stage's: write the stage's file from it (with
    the report's training history), so that re-evaluating such a run reuses its policy instead of failing."""
    agent_file, stage_file = run_dir / AGENT_FILE, run_dir / POLICY_STAGE_FILE
    if stage_file.exists() or not agent_file.exists():
        return
    agent = load_torch(agent_file)
    report = read_json(run_dir / "report.json") if (run_dir / "report.json").exists() else {}
    save_torch({"model": agent["policy"], "history": report.get("stages", {}).get("policy", [])}, stage_file)


def decoder_inputs(cfg: ImitationConfig, mode: str, policy: BCPolicy | FlowPolicy, features: torch.Tensor,
                   z_idm: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """What the decoder is trained on for labelled transitions with policy features ``features`` and IDM
    latents ``z_idm``, in decoder mode ``mode`` (the policy is frozen: nothing here has a gradient)."""
    with torch.no_grad():
        if mode == "idm":
            return z_idm
        if isinstance(policy, BCPolicy):  # "sample": the deterministic BC prediction
            return policy.head(features)
        z0 = torch.randn(z_idm.shape, generator=gen)
        if mode == "sample":
            return policy.sample_from(features, z0, 0.0)
        tau_i = (torch.full((len(z_idm),), cfg.interp_tau) if cfg.interp_tau is not None
                 else torch.rand(len(z_idm), generator=gen))
        return policy.sample_from(features, policy.interpolation_start(z0, z_idm, tau_i), tau_i)


def decoder_stage(cfg: ImitationConfig, mode: str) -> str:
    """The training stage of decoder mode ``mode`` (its checkpoint and finished file): ``decoder``, one per mode
    under ``val``."""
    return f"decoder-{mode}" if cfg.resolved_decoder == "val" else "decoder"


def train_decoder(cfg: ImitationConfig, policy: BCPolicy | FlowPolicy, decoder: ActionDecoder, data: Transitions,
                  z_norm: torch.Tensor, run_dir: Path, writer=None, progress: bool = True,
                  mode: str | None = None) -> list:
    """The action decoder on the labelled transitions only, with the policy frozen, in decoder mode ``mode``
    (default: the config's, which must not be ``val``)."""
    mode = mode or cfg.resolved_decoder
    if mode not in ("idm", "sample", "interp"):
        raise ValueError(f"train_decoder trains one decoder mode (idm, sample, interp), not {mode!r}")
    policy.eval().requires_grad_(False)
    lab = data.labelled
    features = _batched(lambda r: policy.encoder(data.obs(r)), lab)  # frozen: computed once
    z_lab, a_lab = z_norm[lab], data.actions[lab]

    def loss(rng, gen):
        i = torch.from_numpy(rng.integers(0, len(lab), cfg.decoder_batch_size))
        x = decoder_inputs(cfg, mode, policy, features[i], z_lab[i], gen)
        return F.mse_loss(decoder(x), a_lab[i])

    return fit(decoder_stage(cfg, mode), decoder, loss, cfg.decoder_steps, cfg.decoder_lr, cfg.decoder_weight_decay,
               cfg.grad_clip, run_dir, cfg.seed + 30, cfg.checkpoint_every, writer, progress, schedule=cfg.lr_schedule)


def choose_decoder(cfg: ImitationConfig, ds: VideoDataset, policy: BCPolicy | FlowPolicy, data: Transitions,
                   targets: torch.Tensor, run_dir: Path, writer, progress: bool) -> tuple[ActionDecoder, str, dict]:
    """Train the decoder of every mode of :attr:`ImitationConfig.decoder_candidates` on the frozen policy; with one
    candidate that one, else the one whose decoded policy returns most on the ``val`` evaluation set (``eval_seeds``
    x ``eval_episodes`` episodes each, none of them in a reported figure). Returns the decoder, its mode and its
    stage record: ``decoder`` (its training history); under ``val`` also every mode's history
    (``decoder_histories``) and val return (``decoder_val_returns``)."""
    trained: dict[str, tuple[ActionDecoder, list]] = {}
    for mode in cfg.decoder_candidates:
        decoder = ActionDecoder(targets.shape[1], ds.action_dim, cfg.decoder_hidden)
        trained[mode] = decoder, train_decoder(cfg, policy, decoder, data, targets, run_dir, writer, progress, mode)
    if len(trained) == 1:
        mode, (decoder, history) = next(iter(trained.items()))
        return decoder, mode, {"decoder": history}
    val: dict[str, float] = {}
    for mode, (decoder, _) in trained.items():
        val[mode] = round(policy_returns(LatentPolicy(policy, decoder, cfg.seed), **ds.env_settings,
                                         frame_stack=cfg.frame_stack, backgrounds=("val",), seeds=cfg.eval_seeds,
                                         episodes=cfg.eval_episodes, progress=False,
                                         backend=cfg.eval_backend)["val"]["mean"], 2)
        if progress:
            print(f"  decoder {mode}: return {val[mode]:.1f} on the val episodes", flush=True)
    mode = max(val, key=lambda m: val[m])  # ties: the first candidate
    return trained[mode][0], mode, {"decoder": trained[mode][1],
                                    "decoder_histories": {m: h for m, (_, h) in trained.items()},
                                    "decoder_val_returns": val}


def default_run_dir(cfg: ImitationConfig, ds: VideoDataset) -> Path:
    """Where a run of ``cfg`` on ``ds`` goes by default (named after the dataset's folder)."""
    return imitation_dir(ds.task, ds.path, cfg.tag, cfg.preset, cfg.seed)


def run_inputs(cfg: ImitationConfig, ds: VideoDataset) -> dict[str, Any]:
    """What a run of ``cfg`` on ``ds`` is made from, recorded so that its folder refuses others
    (``rl_laof.runs.refuse_other_inputs``): the dataset, and the latent action model ``cfg.lam_run`` names, where
    its ``model.pt`` is there (a finished run no longer reads it)."""
    inputs = ds.inputs()
    model = lam_input(cfg.lam_run) if cfg.latent != "none" and cfg.lam_run is not None else None
    if model is not None:
        inputs["latent_model"] = model
    return inputs


def reference_config(cfg: ImitationConfig) -> ImitationConfig:
    """BC on all labels with the same architecture and budget: what returns are normalised by."""
    return dataclasses.replace(cfg, latent="none", policy="bc", relabel="none", labels=1.0, decoder=None,
                               interp_tau=None, lam_run=None, normalise=False)


def check_inputs(cfg: ImitationConfig, ds: VideoDataset) -> None:
    """Refuse, before anything is written, a dataset without the run's label split or a ``lam_run`` folder
    without a trained latent action model."""
    ds.label_mask("train", cfg.label_split)  # a split the dataset lacks: its KeyError lists the ones it has
    if cfg.encoder == "keypoints" and ds.image_shape[-1] % 4:
        raise ValueError(f"encoder 'keypoints' needs frames whose size is a multiple of 4; {ds.path} has "
                         f"{ds.image_shape[-1]} px: use --set encoder=halving")
    if cfg.latent != "none" and cfg.lam_run is not None and not (Path(cfg.lam_run) / "model.pt").exists():
        raise FileNotFoundError(f"--lam {cfg.lam_run}: no trained latent action model there (no model.pt); make "
                                f"one with python -m rl_laof.lam --method {cfg.latent} --out {cfg.lam_run}")


def open_run(cfg: ImitationConfig, ds: VideoDataset, out: str | Path | None = None) -> tuple[Path, dict | None]:
    """The run folder of ``cfg`` on ``ds`` (``out``, else :func:`default_run_dir`) and, when the run is finished,
    its report. Before anything is written or built, a folder of another config is refused, and so are inputs an
    unfinished run cannot use (:func:`check_inputs`)."""
    run_dir = run_folder(out if out is not None else default_run_dir(cfg, ds))
    config = json.loads(json.dumps(cfg.to_dict()))
    resolve_recorded_decoder(run_dir)
    refuse_other_config(run_dir, config, _EVAL_ONLY, inputs=run_inputs(cfg, ds))
    report_file = run_dir / "report.json"
    if report_file.exists() and read_json(report_file)["config"] == config:
        return run_dir, read_json(report_file)
    check_inputs(cfg, ds)
    return run_dir, None


def resolve_recorded_decoder(run_dir: Path) -> None:
    """Rewrite the config of a run recorded before configs named their decoder mode (``decoder`` None) with the
    mode it used (:meth:`ImitationConfig.recorded_before_val`), in ``config.json`` and ``report.json``, so that
    the run is compared, resumed or refused by what it is."""
    for name in ("config.json", "report.json"):
        path = run_dir / name
        if not path.exists():
            continue
        record = read_json(path)
        if isinstance(record, dict) and isinstance(record.get("config"), dict):
            resolved = ImitationConfig.recorded_before_val(record["config"])
            if resolved is not record["config"]:
                write_json(path, {**record, "config": resolved})


def needs_latent_model(cfg: ImitationConfig, run_dir: Path) -> bool:
    """Whether an unfinished run in ``run_dir`` still reads a latent action model: a latent policy whose folder
    does not hold its latent targets yet (once computed they are kept, with the model they came from)."""
    return cfg.latent != "none" and not (run_dir / TARGETS_FILE).exists()


def add_normalised_returns(cfg: ImitationConfig, ds: VideoDataset, report: dict[str, Any], run_dir: Path,
                           progress: bool) -> None:
    """Add to ``report`` its returns normalised by BC on all labels (:func:`reference_config`, trained too when
    missing), and plot both in ``returns.png``."""
    is_ref = dataclasses.replace(cfg, normalise=False) == reference_config(cfg)
    ref = report if is_ref else imitate(reference_config(cfg), ds.path, progress=progress)
    report["reference_run"] = ref["run_dir"]
    report["normalised"] = {bg: {"mean": r["mean"] / ref["returns"][bg]["mean"],
                                 "std": r["std_seeds"] / abs(ref["returns"][bg]["mean"])}
                            for bg, r in report["returns"].items() if bg in ref["returns"]}
    plot_normalised_returns({cfg.tag: report["normalised"],
                             "BC, all labels": {bg: {"mean": 1.0, "std": ref["returns"][bg]["std_seeds"]
                                                     / abs(ref["returns"][bg]["mean"])}
                                                for bg in report["normalised"]}},
                            run_dir / "returns.png", f"{ds.task}: {cfg.tag}")


def save_agent(cfg: ImitationConfig, ds: VideoDataset, run_dir: Path, policy: BCPolicy | FlowPolicy,
               decoder: ActionDecoder | None, norm: LatentNormalizer | None, targets: torch.Tensor,
               lam_run: str | None) -> dict[str, Any]:
    """``policy.pt``: the policy, decoder and normaliser with what the PPO stage checks and uses (the data's env and
    action spread, the training latents' principal directions); returns the data record."""
    data_rec = data_record(ds, cfg.frame_stack)
    save_torch({"config": json.loads(json.dumps(cfg.to_dict())), "out_dim": int(targets.shape[1]),
                "image_size": ds.image_shape[-1], "action_dim": ds.action_dim, "task": ds.task,
                "dataset": str(ds.path), "lam_run": lam_run, "distractors": distractor_level(ds), "data": data_rec,
                "policy": policy.state_dict(),
                "decoder": decoder.state_dict() if decoder is not None else None,
                "normalizer": norm.state_dict() if norm is not None else None,
                # the training latents' principal directions: the residual action space of rl_laof.train
                "latent_pca": (LatentPCA.fit(targets, min(PCA_DIRECTIONS, targets.shape[1])).state_dict()
                               if cfg.latent != "none" else None)}, run_dir / AGENT_FILE)
    return data_rec


def imitate(cfg: ImitationConfig, dataset: str | Path, out: str | Path | None = None, progress: bool = True,
            lam: str | Path | None = None) -> dict[str, Any]:
    """Train (or resume, or find finished) one imitation run, evaluate it, and return its report. ``lam``: the
    run folder of the (trained) latent action model a latent policy imitates when ``cfg.lam_run`` does not name
    one; ``rl_laof.pipeline.imitation`` finds or trains the preset's first, where :func:`needs_latent_model`."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    ds = VideoDataset(dataset)
    run_dir, finished = open_run(cfg, ds, out)
    if finished is not None:
        return finished
    with lock_run(run_dir):  # everything is checked: the run's folder is made now, with one writer
        return _imitate(cfg, ds, run_dir, progress, lam)


def _imitate(cfg: ImitationConfig, ds: VideoDataset, run_dir: Path, progress: bool,
             lam: str | Path | None) -> dict[str, Any]:
    """The unfinished run of ``cfg`` in ``run_dir`` (checked by :func:`open_run`) trained, evaluated and
    reported."""
    config = json.loads(json.dumps(cfg.to_dict()))
    report_file = run_dir / "report.json"
    write_json(run_dir / "config.json", {"config": config, "dataset": str(ds.path), INPUTS: run_inputs(cfg, ds)})

    t_start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    writer = SummaryWriter(str(run_dir / "tb"))
    data = Transitions(ds, cfg)
    stages: dict[str, Any] = {}
    lam_run, norm, decoder, decoder_mode = None, None, None, None
    t0 = time.perf_counter()
    if cfg.latent != "none":
        targets, norm, lam_run = latent_targets(cfg, ds, data, run_dir, lam)
        rows = np.arange(data.n)
    elif cfg.relabel == "idm":
        targets, stages["idm"] = idm_relabel(cfg, ds, data, run_dir, writer, progress)
        rows = np.arange(data.n)
    else:
        targets, rows = data.actions, data.labelled
    stages["targets_seconds"] = round(time.perf_counter() - t0, 1)

    t0 = time.perf_counter()
    policy = make_policy(cfg, targets.shape[1], ds.image_shape[-1])
    stages["policy"] = train_policy(cfg, policy, data, targets, rows, run_dir, writer, progress)
    stages["policy_seconds"] = round(time.perf_counter() - t0, 1)
    if cfg.latent != "none":
        t0 = time.perf_counter()
        decoder, decoder_mode, record = choose_decoder(cfg, ds, policy, data, targets, run_dir, writer, progress)
        stages.update(record)
        stages["decoder_seconds"] = round(time.perf_counter() - t0, 1)
    writer.close()

    data_rec = save_agent(cfg, ds, run_dir, policy, decoder, norm, targets, lam_run)
    agent = LatentPolicy(policy, decoder, cfg.seed)
    returns = policy_returns(agent, **ds.env_settings, frame_stack=cfg.frame_stack, backgrounds=cfg.eval_backgrounds,
                             seeds=cfg.eval_seeds, episodes=cfg.eval_episodes, progress=progress,
                             backend=cfg.eval_backend)
    errors = {split: round(action_error(agent, ds, split, cfg.frame_stack), 4)
              for split in ("train", "eval", "heldout_bg") if ds.episodes.get(split)}
    report: dict[str, Any] = {
        "tag": cfg.tag, "task": ds.task, "dataset": str(ds.path), "run_dir": str(run_dir), "config": config,
        "lam_run": lam_run, "train_transitions": int(len(rows)), "labelled_transitions": int(len(data.labelled)),
        "stages": stages, "decoder_mode": decoder_mode, "returns": returns, "action_mse": errors,
        # the action spread on its own states (the first background set's rollouts) over the expert's on the data
        "spread": round(spread_ratio(returns[cfg.eval_backgrounds[0]]["action_std"], data_rec["action_std"]), 4),
        "ms_per_action": round(latency_ms(agent, (3 * cfg.frame_stack, *ds.image_shape[1:]), cfg.latency_calls), 3),
        "torch_threads": torch.get_num_threads(),
    }
    if cfg.normalise:
        add_normalised_returns(cfg, ds, report, run_dir, progress)
    report["seconds"] = round(time.perf_counter() - t_start, 1)
    write_json(report_file, report)
    return report
