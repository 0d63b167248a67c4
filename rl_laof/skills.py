"""SOF skills: ``python -m rl_laof.skills pretrain|prior|translate|evaluate|all --dataset DIR``.

Skills from optical flow (SOF, Fang et al. 2025, on QueST's skill learner), on a multi-task dataset of one
embodiment (``python -m rl_laof.data.multitask``):

    pretrain   the tokenizer: the agent's flow over H-step windows -> n FSQ tokens; decoder (tokens + first
               frame -> flow window), L1. Unlabelled video only.
    prior      an autoregressive transformer over the tokens of the window starting at the current frame,
               conditioned on the frame stack and the task. Unlabelled video only.
    translate  (tokens or decoded flow, frame stack) -> the window's H actions, on the labelled windows only
               (``label_trajectories`` whole episodes per task).
    evaluate   the skill policy per task: prior (top-k) -> tokens -> [decoder] -> translator -> H actions,
               executed open loop, then replan; EnvPool pixels with the data's distractors.

Each stage writes ``<stage>.pt`` in the run folder and resumes from its checkpoint when interrupted; a
later stage finds the earlier ones there. ``python -m rl_laof.train --latent sof`` acts in this skill space.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from envs.rollout import policy_returns
from rl_laof.config import SKILL_PRESETS, SkillConfig, WindowConfig, from_preset
from rl_laof.data import VideoDataset, WindowDataset
from rl_laof.fit import fit
from rl_laof.models.policy import random_shift
from rl_laof.models.skills import SkillPrior, SkillTokenizer, Translator
from rl_laof.runs import read_json, refuse_other_config, skills_dir, write_json

STAGES = ("pretrain", "prior", "translate")
STAGE_FILES = {"pretrain": "tokenizer", "prior": "prior", "translate": "translator"}
_NOT_IDENTITY = ("eval_episodes", "eval_seeds", "eval_backgrounds", "threads", "checkpoint_every", "execute", "top_k")


# --------------------------------------------------------------------------- data

def agent_flow(flow: np.ndarray, mask: np.ndarray, valid: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The agent's flow (flow x agent mask of the first frame x validity), average-pooled to ``size``^2 and
    expressed in pooled pixels: (N, 2, H, W) -> (N, 2, size, size) float32; and which pooled cells show the
    agent at all, (N, size, size) bool."""
    h = flow.shape[-1]
    if h % size:
        raise ValueError(f"flow_size={size} must divide the frame size {h}")
    out = np.empty((len(flow), 2, size, size), np.float32)
    agent = np.empty((len(flow), size, size), bool)
    for s in range(0, len(flow), 1024):
        f = torch.from_numpy(flow[s:s + 1024].astype(np.float32))
        keep = torch.from_numpy(mask[s:s + 1024] & valid[s:s + 1024])[:, None]
        out[s:s + 1024] = F.avg_pool2d(f * keep, h // size).numpy() / (h // size)
        agent[s:s + 1024] = F.max_pool2d(keep.float(), h // size)[:, 0].numpy() > 0
    return out, agent


def flow_l1(recon: torch.Tensor, target: torch.Tensor, agent: torch.Tensor, background: float) -> torch.Tensor:
    """L1 over the flow window, cells without the agent weighted by ``background``. The agent covers a small part
    of the frame and its flow is zero elsewhere, so a plain mean is won by predicting zero everywhere (the
    per-pixel median): the tokenizer collapses to a handful of codes (seen at background = 1)."""
    w = torch.where(agent, 1.0, background)[:, :, None]  # (B, H, 1, S, S)
    return ((recon - target).abs() * w).sum() / (w.sum() * 2).clamp_min(1.0)


class ChunkData:
    """Every H-step window inside one episode of a split: its agent-flow window, the frame stack at its start,
    its task, its actions and whether all of them are labelled. ``flow_scale`` (the std of the train split's
    agent flow) normalises flow for the tokenizer."""

    def __init__(self, ds: VideoDataset, cfg: SkillConfig, split: str = "train", flow_scale: float | None = None):
        if ds.flow_path is None:
            raise ValueError(f"{ds.path}: no flow targets; make them with python -m rl_laof.flow --dataset "
                             f"{ds.path.parent} (SOF learns skills from flow)")
        label_split = cfg.label_split if split == "train" else "all"
        if split == "train" and label_split not in ds.labels:
            raise ValueError(f"{ds.path}: no label split {label_split!r} (available: {', '.join(ds.labels)}); "
                             f"set label_trajectories to one of them")
        wcfg = WindowConfig(frame_stack=cfg.frame_stack, max_offset=1, label_split=label_split, with_masks=True,
                            with_states=False, with_flow=True)
        self.windows = w = WindowDataset(ds, split, wcfg, None, seed=cfg.seed)
        d = w.data
        first_frame_rows = np.repeat(d.frame_start, d.lengths) + w.t
        pooled, agent = agent_flow(d["flow"], d["agent_mask"][first_frame_rows], d["flow_valid"], cfg.flow_size)
        # the scale of the agent's motion (cells that show it), not of a frame that is mostly zeros
        scale = pooled.transpose(1, 0, 2, 3)[:, agent].std() if agent.any() else 1.0
        self.flow_scale = float(flow_scale if flow_scale is not None else max(scale, 1e-6))
        self.flow = torch.from_numpy(pooled / self.flow_scale)
        self.agent = torch.from_numpy(agent)
        self.h = cfg.chunk
        starts = [d.trans_start[e] + np.arange(length - cfg.chunk + 1) for e, length in enumerate(d.lengths)
                  if length >= cfg.chunk]
        if not starts:
            raise ValueError(f"{ds.path}: no {split} episode has {cfg.chunk} steps for one chunk")
        self.starts = np.concatenate(starts)  # transition rows where a window starts
        steps = self.starts[:, None] + np.arange(cfg.chunk)
        self.labelled = w.labelled_mask[steps].all(1)
        self.task = torch.from_numpy(ds.task_ids(split)[w.episode[self.starts]])
        self.actions = torch.from_numpy(w._actions_masked)  # zeros where unlabelled: only read at labelled rows
        self.action_dim = int(self.actions.shape[1])

    def __len__(self) -> int:
        return len(self.starts)

    def flow_windows(self, idx: np.ndarray) -> torch.Tensor:
        """(B, H, 2, S, S) normalised agent flow of windows ``idx`` (indices into ``starts``)."""
        return self.flow[self.starts[idx][:, None] + np.arange(self.h)]

    def agent_cells(self, idx: np.ndarray) -> torch.Tensor:
        """(B, H, S, S) which pooled cells show the agent, per step of windows ``idx``."""
        return self.agent[self.starts[idx][:, None] + np.arange(self.h)]

    def obs(self, idx: np.ndarray) -> torch.Tensor:
        """(B, 3s, H, W) uint8 frame stacks at the windows' first frames."""
        rows = self.starts[idx]
        return self.windows.frames_at(self.windows.episode[rows], self.windows.t[rows])

    def first_frame(self, idx: np.ndarray) -> torch.Tensor:
        return self.obs(idx)[:, -3:]

    def chunk_actions(self, idx: np.ndarray) -> torch.Tensor:
        """(B, H, A) actions of labelled windows; refuses a window with an unlabelled step."""
        if not self.labelled[idx].all():
            raise ValueError("asked for the actions of a window with unlabelled steps")
        return self.actions[self.starts[idx][:, None] + np.arange(self.h)]


def _augment(cfg: SkillConfig, obs: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    return random_shift(obs, gen) if cfg.augment else obs


@torch.no_grad()
def all_tokens(tokenizer: SkillTokenizer, data: ChunkData, batch: int = 512) -> torch.Tensor:
    """(N, n) token indices of every window of ``data``."""
    out = []
    for s in range(0, len(data), batch):
        idx = np.arange(s, min(len(data), s + batch))
        out.append(tokenizer.fsq.codes_to_indices(tokenizer.encode(data.flow_windows(idx))))
    return torch.cat(out)


# --------------------------------------------------------------------------- run folder

def run_dir_for(cfg: SkillConfig, ds: VideoDataset) -> Path:
    return skills_dir(ds.task, ds.path.parent.name, cfg.preset, cfg.seed)


class SkillRun:
    """A skills run folder: its config, the dataset, and the trained models found there."""

    def __init__(self, cfg: SkillConfig, dataset: str | Path, run_dir: str | Path | None = None,
                 flow: str | None = "auto"):
        """``flow=None``: the dataset without its flow targets (loading trained models needs none)."""
        self.cfg = cfg
        self.ds = VideoDataset(dataset, flow=flow)
        self.dir = Path(run_dir) if run_dir is not None else run_dir_for(cfg, self.ds)
        config = json.loads(json.dumps(cfg.to_dict()))
        refuse_other_config(self.dir, config, _NOT_IDENTITY)
        self.dir.mkdir(parents=True, exist_ok=True)
        write_json(self.dir / "config.json", {"config": config, "dataset": str(self.ds.path),
                                              "tasks": self.ds.tasks})
        self.image_size = self.ds.image_shape[-1]
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self._train: ChunkData | None = None

    @property
    def train_data(self) -> ChunkData:
        if self._train is None:
            self._train = ChunkData(self.ds, self.cfg, "train")
        return self._train

    def stage(self, name: str) -> dict[str, Any] | None:
        path = self.dir / f"{STAGE_FILES[name]}.pt"
        return torch.load(path, map_location="cpu", weights_only=False) if path.exists() else None

    def writer(self):
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(str(self.dir / "tb"))

    def fit(self, stage: str, module, loss_fn, steps: int, progress: bool) -> list[dict]:
        c = self.cfg
        writer = self.writer()
        try:
            return fit(STAGE_FILES[stage], module, loss_fn, steps, c.lr, c.weight_decay, c.grad_clip, self.dir,
                       c.seed + STAGES.index(stage), c.checkpoint_every, writer, progress)
        finally:
            writer.close()

    def tokenizer(self, progress: bool = True) -> SkillTokenizer:
        """The trained tokenizer (trained now if missing)."""
        torch.manual_seed(self.cfg.seed)  # initial weights are a function of the config alone
        tok = SkillTokenizer(self.cfg, self.image_size)
        meta = self.dir / "tokenizer_meta.json"
        data = self.train_data if not meta.exists() else None
        if data is not None:
            write_json(meta, {"flow_scale": data.flow_scale})
        tok.flow_scale = read_json(meta)["flow_scale"]
        if not (self.dir / "tokenizer.pt").exists():
            data = self.train_data
            c = self.cfg

            def loss_fn(rng: np.random.Generator, gen: torch.Generator) -> torch.Tensor:
                idx = rng.integers(0, len(data), c.batch_size)
                target = data.flow_windows(idx)
                recon, _ = tok(target, data.first_frame(idx))
                return flow_l1(recon, target, data.agent_cells(idx), c.background_weight)

            self.fit("pretrain", tok, loss_fn, c.tokenizer_steps, progress)
        else:
            tok.load_state_dict(self.stage("pretrain")["model"])
        return tok.eval().requires_grad_(False)

    def prior(self, progress: bool = True) -> SkillPrior:
        torch.manual_seed(self.cfg.seed + 1)
        prior = SkillPrior(self.cfg, self.image_size, len(self.ds.tasks))
        if (self.dir / "prior.pt").exists():
            prior.load_state_dict(self.stage("prior")["model"])
            return prior.eval().requires_grad_(False)
        tok = self.tokenizer(progress)
        data = self.train_data
        tokens = all_tokens(tok, data)
        c = self.cfg

        def loss_fn(rng: np.random.Generator, gen: torch.Generator) -> torch.Tensor:
            idx = rng.integers(0, len(data), c.batch_size)
            logits = prior(_augment(c, data.obs(idx), gen), data.task[idx], tokens[idx])
            return F.cross_entropy(logits.flatten(0, 1), tokens[idx].flatten())

        self.fit("prior", prior, loss_fn, c.prior_steps, progress)
        return prior.eval().requires_grad_(False)

    def translator(self, progress: bool = True) -> Translator:
        torch.manual_seed(self.cfg.seed + 2)
        tr = Translator(self.cfg, self.image_size, self.ds.action_dim)
        if (self.dir / "translator.pt").exists():
            tr.load_state_dict(self.stage("translate")["model"])
            return tr.eval().requires_grad_(False)
        tok = self.tokenizer(progress)
        data = self.train_data
        labelled = np.flatnonzero(data.labelled)
        if len(labelled) == 0:
            raise ValueError(f"label split {self.cfg.label_split} labels no whole {self.cfg.chunk}-step window")
        c = self.cfg

        def loss_fn(rng: np.random.Generator, gen: torch.Generator) -> torch.Tensor:
            idx = labelled[rng.integers(0, len(labelled), c.batch_size)]
            obs = data.obs(idx)
            with torch.no_grad():
                skill = skill_input(c, tok, tok.encode(data.flow_windows(idx)), obs)
            return F.mse_loss(tr(skill, _augment(c, obs, gen)), data.chunk_actions(idx))

        self.fit("translate", tr, loss_fn, c.translator_steps, progress)
        return tr.eval().requires_grad_(False)


def skill_input(cfg: SkillConfig, tokenizer: SkillTokenizer, codes: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
    """What the translator reads: the codes, or the flow window the decoder makes of them."""
    return codes if cfg.translator_input == "tokens" else tokenizer.decode(codes, obs[:, -3:])


# --------------------------------------------------------------------------- the skill policy

class SkillPolicy:
    """Observations (N, 3s, H, W) uint8 -> actions, one H-step chunk per plan: the prior samples tokens
    (top-k) for the task, the translator turns them into H actions; the first ``execute`` of them (all by
    default) run open loop, then it replans (receding horizon, as QueST executes 8 of 32)."""

    def __init__(self, tokenizer: SkillTokenizer, prior: SkillPrior, translator: Translator, task_id: int,
                 seed: int = 0):
        self.tokenizer, self.prior, self.translator = tokenizer, prior, translator
        self.cfg = translator.cfg
        self.task_id = task_id
        self.gen = torch.Generator().manual_seed(seed)
        self.reset()

    def reset(self) -> None:
        self.queue: np.ndarray | None = None
        self.step = 0

    @torch.no_grad()
    def decode(self, codes: torch.Tensor, obs: torch.Tensor) -> np.ndarray:
        """(N, H, A) actions of the skills ``codes`` (N, n, q) from observations ``obs``."""
        out = self.translator(skill_input(self.cfg, self.tokenizer, codes, obs), obs)
        return out.clamp(-1.0, 1.0).numpy()

    @torch.no_grad()
    def plan(self, obs: torch.Tensor) -> np.ndarray:
        task = torch.full((len(obs),), self.task_id, dtype=torch.long)
        tokens = self.prior.sample(obs, task, generator=self.gen)
        return self.decode(self.tokenizer.fsq.indices_to_codes(tokens), obs)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        every = self.cfg.resolved_execute
        if self.step % every == 0 or self.queue is None:
            self.queue = self.plan(torch.from_numpy(np.ascontiguousarray(obs)))
        action = self.queue[:, self.step % every]
        self.step += 1
        return action


def load_skills(run_dir: str | Path) -> tuple[SkillTokenizer, SkillPrior, Translator, dict[str, Any]]:
    """The trained models of a skills run folder and its metadata (config, tasks, dataset)."""
    run_dir = Path(run_dir)
    missing = [f"{f}.pt" for f in STAGE_FILES.values() if not (run_dir / f"{f}.pt").exists()]
    if missing or not (run_dir / "config.json").exists():
        raise FileNotFoundError(f"{run_dir}: not a finished skills run (missing {missing or ['config.json']}); "
                                f"make one with python -m rl_laof.skills all --dataset DIR --out {run_dir}")
    meta = read_json(run_dir / "config.json")
    run = SkillRun(SkillConfig(**meta["config"]), meta["dataset"], run_dir, flow=None)
    ds = run.ds
    return run.tokenizer(False), run.prior(False), run.translator(False), {
        **meta, "image_size": run.image_size, "action_dim": ds.action_dim,
        "action_repeat": ds.config.get("action_repeat", 1)}


# --------------------------------------------------------------------------- evaluation

def token_report(run: SkillRun, tok: SkillTokenizer, prior: SkillPrior | None) -> dict[str, Any]:
    """Held-out quality (the eval split): flow L1 vs predicting zero flow, codebook use, prior NLL vs the
    unigram of the training tokens."""
    ev = ChunkData(run.ds, run.cfg, "eval", flow_scale=tok.flow_scale)
    idx = np.arange(len(ev))
    rng = np.random.default_rng(0)
    idx = rng.choice(idx, min(len(idx), 2048), replace=False)
    with torch.no_grad():
        target = ev.flow_windows(idx)
        recon, codes = tok(target, ev.first_frame(idx))
        agent = ev.agent_cells(idx)
    cells = agent[:, :, None].expand_as(target)
    out: dict[str, Any] = {"eval_windows": int(len(idx)),
                           # on the cells that show the agent (in units of flow_scale)
                           "flow_l1_agent": float((recon - target).abs()[cells].mean()),
                           "zero_flow_l1_agent": float(target.abs()[cells].mean()),
                           "flow_l1": float((recon - target).abs().mean()),
                           "zero_flow_l1": float(target.abs().mean())}
    train_tokens = all_tokens(tok, run.train_data)
    counts = torch.bincount(train_tokens.flatten(), minlength=tok.fsq.codebook_size).float()
    p = counts / counts.sum()
    out["codes_used"] = int((counts > 0).sum())
    out["codebook_size"] = tok.fsq.codebook_size
    out["perplexity"] = float(torch.exp(-(p[p > 0] * p[p > 0].log()).sum()))
    if prior is not None:
        tokens = tok.fsq.codes_to_indices(codes)
        with torch.no_grad():
            nll = -prior.log_prob(ev.obs(idx), ev.task[idx], tokens) / tokens.shape[1]
        unigram = -(p.clamp_min(1e-8).log()[tokens]).mean()
        out["prior_nll_per_token"] = float(nll.mean())
        out["unigram_nll_per_token"] = float(unigram)
    return out


def evaluate(run: SkillRun, progress: bool = True) -> dict[str, Any]:
    """Per task: returns of the skill policy (the whole pipeline); plus the token report."""
    tok, prior, tr = run.tokenizer(progress), run.prior(progress), run.translator(progress)
    report: dict[str, Any] = {"tokens": token_report(run, tok, prior), "returns": {}}
    for task_id, task in enumerate(run.ds.tasks):
        policy = SkillPolicy(tok, prior, tr, task_id, run.cfg.seed)
        if progress:
            print(f"{task}: skill policy")
        report["returns"][task] = policy_returns(policy, **{**run.ds.env_settings, "task": task},
                                                 frame_stack=run.cfg.frame_stack, backgrounds=run.cfg.eval_backgrounds,
                                                 seeds=run.cfg.eval_seeds, episodes=run.cfg.eval_episodes,
                                                 progress=progress)
    means = [r[run.cfg.eval_backgrounds[0]]["mean"] for r in report["returns"].values()]
    report["mean_over_tasks"] = float(np.mean(means))
    return report


# --------------------------------------------------------------------------- CLI

def build_parser():
    import argparse

    p = argparse.ArgumentParser(prog="python -m rl_laof.skills", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("stage", choices=[*STAGES, "evaluate", "all"],
                   help="pretrain: tokenizer; prior; translate; evaluate: per-task returns; all: every stage")
    p.add_argument("--dataset", type=Path, help="a (multi-task) dataset with flow targets; default: the run's")
    p.add_argument("--out", type=Path, default=None, help="run folder (default runs/skills/<task>/<dataset>/...)")
    p.add_argument("--preset", default="quick", choices=list(SKILL_PRESETS),
                   help="quick: minutes per stage on 2 cores; paper: QueST's sizes")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="any SkillConfig field")
    p.add_argument("--config", type=Path, default=None, metavar="FILE",
                   help="a config file's 'skills' section (e.g. a sweep's best.json); --seed and --set win")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from rl_laof.cli import parse_sets
    from rl_laof.config_file import config_section

    args = build_parser().parse_args(argv)
    overrides = {**config_section(args.config, "skills"), **parse_sets(SkillConfig, args.set)}
    if args.seed is not None:
        overrides["seed"] = args.seed
    dataset = args.dataset
    if dataset is None:
        if args.out is None or not (args.out / "config.json").exists():
            raise ValueError("--dataset DIR is needed (a multi-task dataset with flow: python -m "
                             "rl_laof.data.multitask), unless --out names an existing run")
        dataset = read_json(args.out / "config.json")["dataset"]
    cfg = from_preset(SkillConfig, SKILL_PRESETS, args.preset, **overrides)
    run = SkillRun(cfg, dataset, args.out)
    progress = not args.no_progress
    t0 = time.time()
    out: dict[str, Any] = {"run_dir": str(run.dir), "stage": args.stage}
    if args.stage in ("pretrain", "all"):
        run.tokenizer(progress)
    if args.stage in ("prior", "all"):
        run.prior(progress)
    if args.stage in ("translate", "all"):
        run.translator(progress)
    if args.stage in ("evaluate", "all"):
        report = evaluate(run, progress)
        report.update(config=cfg.to_dict(), dataset=str(run.ds.path), tasks=run.ds.tasks)
        write_json(run.dir / "report.json", report)
        out.update(report)
    out["seconds"] = round(time.time() - t0, 1)
    print(json.dumps({k: v for k, v in out.items() if k not in ("config",)}, default=str))
    return out


if __name__ == "__main__":
    from rl_laof.cli import run as run_cli

    run_cli(main)
