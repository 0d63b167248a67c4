"""Latent policies: ``python -m rl_laof.imitate --latent laof --policy lafp --dataset DIR``.

Imitates a video dataset from pixels through a latent action model's latents, with a few action labels:
the policy predicts the model's normalised latent of each transition by behaviour cloning (``bc``) or by
LAFP flow matching (``lafp``); it is then frozen and an action decoder is trained on the labelled
transitions only (decoder modes: IDM latents, direct samples, inference-time interpolation). Baselines on
the same labels: ``--latent none`` (BC on the labelled transitions) and ``--latent none --relabel idm``
(an inverse dynamics model trained on the labels relabels every transition, then BC). Returns are measured
on the EnvPool pixel env with the data's distractors and with held-out backgrounds, over several episodes
and seeds, and normalised by BC on all labels (trained too when missing); latency is ms per action.

Stages (latent targets, IDM, policy, decoder) checkpoint every ``checkpoint_every`` steps and are kept when
done, so an interrupted run continues where it stopped. Writes ``report.json``, ``returns.png`` and
TensorBoard logs under ``runs/imitate/<task>/<dataset>/<run>``.
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
import torch.nn.functional as F

from envs.rollout import policy_returns
from rl_laof.config import (
    IMITATION_PRESETS,
    LAM_METHODS,
    LAM_PRESETS,
    ImitationConfig,
    LAMConfig,
    WindowConfig,
    from_preset,
)
from rl_laof.data.dataset import VideoDataset
from rl_laof.data.windows import WindowDataset
from rl_laof.fit import fit
from rl_laof.models.policy import (
    ActionDecoder,
    BCPolicy,
    FlowPolicy,
    LatentNormalizer,
    LatentPCA,
    PixelEncoder,
    PixelIDM,
    random_shift,
)
from rl_laof.runs import atomic_path, imitation_dir, read_json, refuse_other_config, write_json

#: config fields that change only the evaluation: finished training stages are reused when they change
_EVAL_ONLY = ("eval_episodes", "eval_seeds", "eval_backgrounds", "latency_calls", "normalise", "threads",
              "checkpoint_every")
PCA_DIRECTIONS = 32  # principal directions of the training latents stored with a latent agent


# --------------------------------------------------------------------------- data

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


# --------------------------------------------------------------------------- training stages

def find_lam(cfg: ImitationConfig, ds: VideoDataset, progress: bool = True) -> Path:
    """The latent action model's run folder: ``cfg.lam_run``, or the default run at the preset (trained now
    if missing, on the same labels for a ``-action`` model)."""
    from rl_laof.pretrain import train_lam

    if cfg.lam_run is not None:
        path = Path(cfg.lam_run)
        if not (path / "model.pt").exists():
            raise FileNotFoundError(f"{path}: no model.pt; train it with python -m rl_laof.pretrain --method "
                                    f"{cfg.latent} --dataset {ds.path.parent} --out {path}")
        return path
    supervised = cfg.latent.endswith("-action")
    lam_cfg = from_preset(LAMConfig, LAM_PRESETS, cfg.preset, method=cfg.latent, seed=cfg.seed,
                          labels=cfg.labels if supervised else None, threads=cfg.threads)
    return Path(train_lam(lam_cfg, ds.path, progress=progress)["run_dir"])


def latent_targets(cfg: ImitationConfig, ds: VideoDataset, data: Transitions, run_dir: Path,
                   progress: bool = True) -> tuple[torch.Tensor, LatentNormalizer, str]:
    """Normalised pre-quantisation latents z_t of every training transition, from the frozen latent model."""
    from rl_laof.pretrain import latents, load_lam

    path = run_dir / "targets.pt"
    if path.exists():
        saved = torch.load(path, map_location="cpu", weights_only=False)
        norm = LatentNormalizer(saved["z"].shape[1])
        norm.load_state_dict(saved["normalizer"])
        return saved["z"], norm, saved["lam_run"]
    lam_run = find_lam(cfg, ds, progress)
    lam = load_lam(lam_run)
    saved_meta = torch.load(lam_run / "model.pt", map_location="cpu", weights_only=False)
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
    with atomic_path(path) as tmp:
        torch.save({"z": z_norm, "normalizer": norm.state_dict(), "lam_run": str(lam_run)}, tmp)
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


def make_policy(cfg: ImitationConfig, out_dim: int, image_size: int) -> BCPolicy | FlowPolicy:
    enc = PixelEncoder(cfg.frame_stack, cfg.features, cfg.width, image_size, cfg.encoder)
    if cfg.policy == "lafp":
        return FlowPolicy(enc, out_dim, cfg.hidden, cfg.euler_steps, cfg.time_embed)
    return BCPolicy(enc, out_dim, cfg.hidden)


def train_policy(cfg: ImitationConfig, policy: BCPolicy | FlowPolicy, data: Transitions, targets: torch.Tensor,
                 rows: np.ndarray, run_dir: Path, writer, progress: bool) -> list:
    def loss(rng, gen):
        b = rows[rng.integers(0, len(rows), cfg.batch_size)]
        obs = data.obs(b)
        obs = random_shift(obs, gen) if cfg.augment else obs
        return policy.loss(obs, targets[b], gen)

    return fit("policy", policy, loss, cfg.steps, cfg.lr, cfg.weight_decay, cfg.grad_clip, run_dir, cfg.seed + 20,
               cfg.checkpoint_every, writer, progress, cfg.resolved_precision, cfg.lr_schedule)


def decoder_inputs(cfg: ImitationConfig, policy: BCPolicy | FlowPolicy, features: torch.Tensor,
                   z_idm: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """What the decoder is trained on for labelled transitions with policy features ``features`` and IDM
    latents ``z_idm``, in the configured mode (the policy is frozen: nothing here has a gradient)."""
    mode = cfg.resolved_decoder
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


def train_decoder(cfg: ImitationConfig, policy: BCPolicy | FlowPolicy, decoder: ActionDecoder, data: Transitions,
                  z_norm: torch.Tensor, run_dir: Path, writer=None, progress: bool = True) -> list:
    """The action decoder on the labelled transitions only, with the policy frozen."""
    policy.eval().requires_grad_(False)
    lab = data.labelled
    features = _batched(lambda r: policy.encoder(data.obs(r)), lab)  # frozen: computed once
    z_lab, a_lab = z_norm[lab], data.actions[lab]

    def loss(rng, gen):
        i = torch.from_numpy(rng.integers(0, len(lab), cfg.decoder_batch_size))
        x = decoder_inputs(cfg, policy, features[i], z_lab[i], gen)
        return F.mse_loss(decoder(x), a_lab[i])

    return fit("decoder", decoder, loss, cfg.decoder_steps, cfg.decoder_lr, cfg.decoder_weight_decay, cfg.grad_clip,
               run_dir, cfg.seed + 30, cfg.checkpoint_every, writer, progress, schedule=cfg.lr_schedule)


# --------------------------------------------------------------------------- the agent and its evaluation

class ImitationAgent:
    """uint8 observations (N, 3s, H, W) -> actions (N, A): policy, then the decoder where there is one."""

    def __init__(self, policy: BCPolicy | FlowPolicy, decoder: ActionDecoder | None, seed: int = 0):
        self.policy, self.decoder = policy.eval(), (decoder.eval() if decoder is not None else None)
        self.gen = torch.Generator().manual_seed(seed)

    @torch.no_grad()
    def __call__(self, obs: np.ndarray) -> np.ndarray:
        out = self.policy.act(torch.from_numpy(np.ascontiguousarray(obs)), self.gen)
        if self.decoder is not None:
            out = self.decoder(out)
        return out.numpy()


def distractor_level(ds: VideoDataset) -> str | None:
    """The distractor difficulty a dataset was collected at (None where its config does not say)."""
    d = ds.config.get("distractors")
    return d.get("difficulty") if isinstance(d, dict) else d


def load_agent(run_dir: str | Path, seed: int = 0) -> tuple[ImitationAgent, dict[str, Any]]:
    """The trained agent of an imitation run (``agent.pt``) and its saved metadata (config, task, latent
    normaliser, latent model run): what the PPO stage starts from."""
    path = Path(run_dir) / "agent.pt"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no trained agent (run python -m rl_laof.imitate first)")
    saved = torch.load(path, map_location="cpu", weights_only=False)
    cfg = ImitationConfig(**{**saved["config"], "eval_backgrounds": tuple(saved["config"]["eval_backgrounds"])})
    policy = make_policy(cfg, saved["out_dim"], saved["image_size"])
    policy.load_state_dict(saved["policy"])
    decoder = None
    if saved["decoder"] is not None:
        decoder = ActionDecoder(saved["out_dim"], saved["action_dim"], cfg.decoder_hidden)
        decoder.load_state_dict(saved["decoder"])
    return ImitationAgent(policy, decoder, seed), saved


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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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


# --------------------------------------------------------------------------- one run

def run_dir_for(cfg: ImitationConfig, ds: VideoDataset) -> Path:
    return imitation_dir(ds.task, ds.path.parent.name, cfg.tag, cfg.preset, cfg.seed)


def reference_config(cfg: ImitationConfig) -> ImitationConfig:
    """BC on all labels with the same architecture and budget: what returns are normalised by."""
    return dataclasses.replace(cfg, latent="none", policy="bc", relabel="none", labels=1.0, decoder=None,
                               interp_tau=None, lam_run=None, normalise=False)


def imitate(cfg: ImitationConfig, dataset: str | Path, out: str | Path | None = None,
            progress: bool = True) -> dict[str, Any]:
    """Train (or resume, or find finished) one imitation run, evaluate it, and return its report."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    ds = VideoDataset(dataset)
    run_dir = Path(out) if out is not None else run_dir_for(cfg, ds)
    run_dir.mkdir(parents=True, exist_ok=True)
    config = json.loads(json.dumps(cfg.to_dict()))
    refuse_other_config(run_dir, config, _EVAL_ONLY)
    write_json(run_dir / "config.json", {"config": config, "dataset": str(ds.path)})
    report_file = run_dir / "report.json"
    if report_file.exists() and read_json(report_file)["config"] == config:
        return read_json(report_file)

    from torch.utils.tensorboard import SummaryWriter

    t_start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    writer = SummaryWriter(str(run_dir / "tb"))
    data = Transitions(ds, cfg)
    stages: dict[str, Any] = {}
    lam_run, norm, decoder = None, None, None
    t0 = time.perf_counter()
    if cfg.latent != "none":
        targets, norm, lam_run = latent_targets(cfg, ds, data, run_dir, progress)
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
        decoder = ActionDecoder(targets.shape[1], ds.action_dim, cfg.decoder_hidden)
        stages["decoder"] = train_decoder(cfg, policy, decoder, data, targets, run_dir, writer, progress)
        stages["decoder_seconds"] = round(time.perf_counter() - t0, 1)
    writer.close()

    with atomic_path(run_dir / "agent.pt") as tmp:
        torch.save({"config": config, "out_dim": int(targets.shape[1]), "image_size": ds.image_shape[-1],
                    "action_dim": ds.action_dim, "task": ds.task, "dataset": str(ds.path), "lam_run": lam_run,
                    "distractors": distractor_level(ds),
                    "policy": policy.state_dict(),
                    "decoder": decoder.state_dict() if decoder is not None else None,
                    "normalizer": norm.state_dict() if norm is not None else None,
                    # the training latents' principal directions: the residual action space of rl_laof.train
                    "latent_pca": (LatentPCA.fit(targets, min(PCA_DIRECTIONS, targets.shape[1])).state_dict()
                                   if cfg.latent != "none" else None)}, tmp)
    agent = ImitationAgent(policy, decoder, cfg.seed)
    returns = policy_returns(agent, **ds.env_settings, frame_stack=cfg.frame_stack, backgrounds=cfg.eval_backgrounds,
                             seeds=cfg.eval_seeds, episodes=cfg.eval_episodes, progress=progress)
    errors = {split: round(action_error(agent, ds, split, cfg.frame_stack), 4)
              for split in ("train", "eval", "heldout_bg") if ds.episodes.get(split)}
    report: dict[str, Any] = {
        "tag": cfg.tag, "task": ds.task, "dataset": str(ds.path), "run_dir": str(run_dir), "config": config,
        "lam_run": lam_run, "train_transitions": int(len(rows)), "labelled_transitions": int(len(data.labelled)),
        "stages": stages, "returns": returns, "action_mse": errors,
        "ms_per_action": round(latency_ms(agent, (3 * cfg.frame_stack, *ds.image_shape[1:]), cfg.latency_calls), 3),
        "torch_threads": torch.get_num_threads(),
    }
    if cfg.normalise:
        is_ref = dataclasses.replace(cfg, normalise=False) == reference_config(cfg)
        ref = report if is_ref else imitate(reference_config(cfg), ds.path, progress=progress)
        report["reference_run"] = ref["run_dir"]
        report["normalised"] = {bg: {"mean": r["mean"] / ref["returns"][bg]["mean"],
                                     "std": r["std_seeds"] / abs(ref["returns"][bg]["mean"])}
                                for bg, r in returns.items() if bg in ref["returns"]}
        plot_normalised_returns({cfg.tag: report["normalised"],
                                 "BC, all labels": {bg: {"mean": 1.0, "std": ref["returns"][bg]["std_seeds"]
                                                         / abs(ref["returns"][bg]["mean"])}
                                                    for bg in report["normalised"]}},
                                run_dir / "returns.png", f"{ds.task}: {cfg.tag}")
    report["seconds"] = round(time.perf_counter() - t_start, 1)
    write_json(report_file, report)
    return report


# --------------------------------------------------------------------------- CLI

def build_parser():
    from rl_laof.cli import stage_parser

    p = stage_parser("rl_laof.imitate", __doc__, IMITATION_PRESETS,
                     "quick: 2000 policy steps of batch 64, width 16 (minutes on 2 cores); "
                     "paper: 50k steps of 256, width 32")
    p.add_argument("--latent", default="laof", choices=["none", *LAM_METHODS],
                   help="the latent action model whose latents the policy predicts; none: predict actions")
    p.add_argument("--policy", default="bc", choices=["bc", "lafp"], help="behaviour cloning or LAFP flow matching")
    p.add_argument("--dataset", type=Path, default=None,
                   help="dataset folder (default: the task's dataset at the preset, collected if missing)")
    p.add_argument("--labels", type=float, default=None, help="labelled fraction of transitions (default 0.01)")
    p.add_argument("--label-trajectories", type=int, default=None, metavar="N",
                   help="label N whole episodes instead (label split traj-N; per task on a multi-task dataset)")
    p.add_argument("--relabel", choices=["none", "idm"], default=None,
                   help="--latent none only: idm = relabel every transition with an IDM trained on the labels")
    p.add_argument("--lam", default=None, metavar="RUN_DIR",
                   help="latent action model run (default: the preset's run for the dataset, trained if missing)")
    p.add_argument("--decoder", choices=["idm", "sample", "interp"], default=None,
                   help="decoder training: IDM latents, policy samples, or inference-time interpolation "
                        "(default: interp for lafp, idm for bc)")
    p.add_argument("--interp-tau", type=float, default=None, help="fixed tau_i for interp (default U(0, 1))")
    p.add_argument("--euler-steps", type=int, default=None, help="LAFP's K (default 3)")
    p.add_argument("--steps", type=int, default=None, help="policy training steps")
    p.add_argument("--episodes", type=int, default=None, help="evaluation episodes per seed and background set")
    p.add_argument("--seeds", type=int, default=None, help="evaluation seeds")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    p.add_argument("--no-normalise", action="store_true", help="skip BC on all labels (the normaliser)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="any other ImitationConfig field, e.g. --set decoder_steps=500 (repeatable)")
    p.add_argument("--out", type=Path, default=None, help="run folder (default runs/imitate/<task>/<dataset>/<run>)")
    p.add_argument("--no-progress", action="store_true")
    return p


def config_from_args(args) -> ImitationConfig:
    from rl_laof.cli import parse_sets

    overrides: dict[str, Any] = dict(latent=args.latent, policy=args.policy, labels=args.labels,
                                     label_trajectories=args.label_trajectories,
                                     relabel=args.relabel, lam_run=args.lam, decoder=args.decoder,
                                     interp_tau=args.interp_tau, euler_steps=args.euler_steps, steps=args.steps,
                                     eval_episodes=args.episodes, eval_seeds=args.seeds, seed=args.seed,
                                     threads=args.threads)
    if args.no_normalise:
        overrides["normalise"] = False
    overrides.update(parse_sets(ImitationConfig, args.set))
    return from_preset(ImitationConfig, IMITATION_PRESETS, args.preset, **overrides)


def main(argv: list[str] | None = None) -> dict:
    from rl_laof.pretrain import find_or_build_dataset

    args = build_parser().parse_args(argv)
    cfg = config_from_args(args)
    dataset = args.dataset
    if dataset is None:
        flow = cfg.latent.removesuffix("-action") == "laof"
        dataset = find_or_build_dataset(args.task, args.preset, flow, progress=not args.no_progress)
    report = imitate(cfg, dataset, args.out, progress=not args.no_progress)
    summary = {"run": report["run_dir"], "tag": report["tag"], "ms_per_action": report["ms_per_action"],
               **{f"return_{bg}": round(r["mean"], 1) for bg, r in report["returns"].items()}}
    if "normalised" in report:
        summary.update({f"normalised_{bg}": round(r["mean"], 3) for bg, r in report["normalised"].items()})
    print(json.dumps(summary))
    return report


if __name__ == "__main__":
    from rl_laof.cli import run

    run(main)
