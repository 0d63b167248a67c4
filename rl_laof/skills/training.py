"""The SOF stages of one skills run folder: tokenizer (``pretrain``), prior and translator (``translate``), each
trained once (resumable, ``rl_laof.fit``) and kept as ``<stage>.pt``; a later stage finds the earlier ones there.
``load_skills`` loads a finished run's three models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.tensorboard import SummaryWriter

from rl_laof.data import VideoDataset
from rl_laof.fit import fit
from rl_laof.models.policy import random_shift
from rl_laof.models.skill_models import SkillPrior, SkillTokenizer, Translator
from rl_laof.runs import (
    INPUTS,
    load_torch,
    lock_run,
    read_json,
    refuse_other_config,
    run_folder,
    skills_dir,
    write_json,
)
from rl_laof.skills.config import SkillsConfig
from rl_laof.skills.data import ChunkData, all_tokens, check_chunk_data, flow_l1

STAGES = ("pretrain", "prior", "translate")
STAGE_FILES = {"pretrain": "tokenizer", "prior": "prior", "translate": "translator"}
#: skills runs saved before the flow tiers (issue 32) read the exact flow and agent mask: the oracle tier
_BEFORE_TIERS = {"flow_tier": "oracle"}
_NOT_IDENTITY = ("eval_episodes", "eval_seeds", "eval_backgrounds", "threads", "checkpoint_every", "execute", "top_k")


def _augment(cfg: SkillsConfig, obs: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    return random_shift(obs, gen) if cfg.augment else obs


class SkillRun:
    """A skills run folder: its config, the dataset, and the trained models found there."""

    def __init__(self, cfg: SkillsConfig, dataset: str | Path, run_dir: str | Path | None = None,
                 flow: bool = True, write: bool = True):
        """``flow``: the dataset with the flow file of the config's ``flow_tier`` (False: without flow targets;
        loading trained models needs none). ``write``:
        the run is trained here, so this object holds the folder's lock (``rl_laof.runs.lock_run``) while it
        lives and records the config; False (loading a finished run) writes nothing."""
        self.cfg = cfg
        self.ds = VideoDataset(dataset, flow=cfg.flow_method if flow else None)
        self.dir = run_folder(run_dir if run_dir is not None
                              else skills_dir(self.ds.task, self.ds.path, cfg.preset, cfg.seed))
        config = json.loads(json.dumps(cfg.to_dict()))
        # the same config on another dataset or flow file is another run (not compared when only loading)
        inputs = self.ds.inputs(flow=True) if write else None
        refuse_other_config(self.dir, config, _NOT_IDENTITY, inputs=inputs)
        if flow:  # training: the data every stage needs, checked before the folder is made
            check_chunk_data(self.ds, cfg)
        self.lock = lock_run(self.dir) if write else None
        if write:
            write_json(self.dir / "config.json", {"config": config, "dataset": str(self.ds.path),
                                                  "tasks": self.ds.tasks, INPUTS: inputs})
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
        return load_torch(path) if path.exists() else None

    def writer(self) -> SummaryWriter:
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


def skill_input(cfg: SkillsConfig, tokenizer: SkillTokenizer, codes: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
    """What the translator reads: the codes, or the flow window the decoder makes of them."""
    return codes if cfg.translator_input == "tokens" else tokenizer.decode(codes, obs[:, -3:])


def load_skills(run_dir: str | Path) -> tuple[SkillTokenizer, SkillPrior, Translator, dict[str, Any]]:
    """The trained models of a skills run folder and its metadata (config, tasks, dataset)."""
    run_dir = Path(run_dir)
    missing = [f"{f}.pt" for f in STAGE_FILES.values() if not (run_dir / f"{f}.pt").exists()]
    if missing or not (run_dir / "config.json").exists():
        raise FileNotFoundError(f"{run_dir}: not a finished skills run (missing {missing or ['config.json']}); "
                                f"make one with python -m rl_laof.skills all --dataset DIR --out {run_dir}")
    meta = read_json(run_dir / "config.json")
    run = SkillRun(SkillsConfig(**{**_BEFORE_TIERS, **meta["config"]}), meta["dataset"], run_dir, flow=False,
                   write=False)
    ds = run.ds
    return run.tokenizer(False), run.prior(False), run.translator(False), {
        **meta, "image_size": run.image_size, "action_dim": ds.action_dim,
        "action_repeat": ds.config.get("action_repeat", 1)}
