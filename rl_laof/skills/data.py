"""What the SOF stages learn from: H-step windows of a (multi-task) dataset's agent flow, with the frame stack at
each window's start, its task and (where labelled) its actions; and the flow loss in which the agent counts.

The flow windows are what the config's ``flow_tier`` allows (:mod:`rl_laof.flow.tiers`): the ``rgb`` tier reads the
RGB-estimated flow of every valid pixel and no simulator array (no agent mask: every cell counts as the agent's);
``estimated`` cuts that flow to the simulator's agent mask; ``oracle`` cuts the exact flow to it."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from rl_laof.data import VideoDataset, WindowConfig, WindowDataset
from rl_laof.data import format as fmt
from rl_laof.models.skill_models import SkillTokenizer
from rl_laof.skills.config import SkillsConfig


def pooled_agent_flow(flow: np.ndarray, mask: np.ndarray | None, valid: np.ndarray, size: int
                      ) -> tuple[np.ndarray, np.ndarray]:
    """The agent's flow (flow x agent mask of the first frame x validity; ``mask`` None: no mask, every valid
    pixel), average-pooled to ``size``^2 and expressed in pooled pixels: (N, 2, H, W) -> (N, 2, size, size)
    float32; and which pooled cells show the agent at all, (N, size, size) bool."""
    h = flow.shape[-1]
    if h % size:
        raise ValueError(f"flow_size={size} must divide the frame size {h}")
    out = np.empty((len(flow), 2, size, size), np.float32)
    agent = np.empty((len(flow), size, size), bool)
    for s in range(0, len(flow), 1024):
        f = torch.from_numpy(flow[s:s + 1024].astype(np.float32))
        v = np.asarray(valid[s:s + 1024], bool)
        keep = torch.from_numpy(v if mask is None else mask[s:s + 1024] & v)[:, None]
        out[s:s + 1024] = F.avg_pool2d(f * keep, h // size).numpy() / (h // size)
        agent[s:s + 1024] = F.max_pool2d(keep.float(), h // size)[:, 0].numpy() > 0
    return out, agent


def flow_l1(recon: torch.Tensor, target: torch.Tensor, agent: torch.Tensor, background: float) -> torch.Tensor:
    """L1 over the flow window, cells without the agent weighted by ``background``. The agent covers a small part
    of the frame and its flow is zero elsewhere, so a plain mean is won by predicting zero everywhere (the
    per-pixel median): the tokenizer collapses to a handful of codes (seen at background = 1)."""
    w = torch.where(agent, 1.0, background)[:, :, None]  # (B, H, 1, S, S)
    return ((recon - target).abs() * w).sum() / (w.sum() * 2).clamp_min(1.0)


def _require_flow(ds: VideoDataset, cfg: SkillsConfig) -> None:
    if ds.flow_path is None:
        raise ValueError(f"{ds.path}: no flow targets; make them with python -m rl_laof.flow --dataset "
                         f"{ds.path.parent} --method {cfg.flow_method} (SOF learns skills from flow; flow_tier "
                         f"{cfg.flow_tier!r} reads flow-{cfg.flow_method}.h5)")
    if ds.flow_path.name != fmt.flow_path(ds.path, cfg.flow_method).name:
        raise ValueError(f"{ds.path}: flow_tier {cfg.flow_tier!r} reads flow-{cfg.flow_method}.h5, but the dataset "
                         f"was opened with {ds.flow_path.name}: VideoDataset(path, flow={cfg.flow_method!r})")
    if cfg.masked and "agent_mask" not in ds.keys:
        raise ValueError(f"{ds.path}: no agent mask for flow_tier {cfg.flow_tier!r} (a video without the "
                         "simulator's arrays): use flow_tier 'rgb'")


def check_chunk_data(ds: VideoDataset, cfg: SkillsConfig) -> None:
    """Refuse a dataset that the skills of ``cfg`` cannot be learned from, before a run folder is made or a stage
    trains: no flow targets, no label split ``cfg.label_split``, frames that ``flow_size`` or ``frame_size`` do
    not divide, no training episode as long as a chunk, or no chunk of labelled steps (the translator's data:
    without it ``skills all`` would train two stages and then stop)."""
    _require_flow(ds, cfg)
    if cfg.label_split not in ds.labels:
        raise ValueError(f"{ds.path}: no label split {cfg.label_split!r} (available: {', '.join(ds.labels)}); "
                         f"set label_trajectories to one of them")
    side = ds.image_shape[-1]
    for name, size in (("flow_size", cfg.flow_size), ("frame_size", min(cfg.frame_size, side))):
        if side % size:
            raise ValueError(f"{name}={size} must divide the frame size {side} of {ds.path}")
    lengths = [e.length for e in ds.episodes["train"]]
    if max(lengths, default=0) < cfg.chunk:
        raise ValueError(f"{ds.path}: no train episode has {cfg.chunk} steps for one chunk")
    mask, start = ds.label_mask("train", cfg.label_split), 0
    for length in lengths:  # a window of chunk labelled steps inside one episode
        run = np.concatenate([[0], np.cumsum(mask[start:start + length])])
        if length >= cfg.chunk and (run[cfg.chunk:] - run[:-cfg.chunk] == cfg.chunk).any():
            return
        start += length
    raise ValueError(f"{ds.path}: label split {cfg.label_split} labels no whole {cfg.chunk}-step window (the "
                     "translator's data): label more trajectories, or use a shorter chunk")


class ChunkData:
    """Every H-step window inside one episode of a split: its agent-flow window, the frame stack at its start,
    its task, its actions and whether all of them are labelled. ``flow_scale`` (the std of the train split's
    agent flow) normalises flow for the tokenizer."""

    def __init__(self, ds: VideoDataset, cfg: SkillsConfig, split: str = "train", flow_scale: float | None = None):
        if split == "train":
            check_chunk_data(ds, cfg)
        else:
            _require_flow(ds, cfg)
        label_split = cfg.label_split if split == "train" else "all"
        wcfg = WindowConfig(frame_stack=cfg.frame_stack, max_offset=1, label_split=label_split,
                            with_masks=cfg.masked, with_states=False, with_flow=True)
        self.windows = w = WindowDataset(ds, split, wcfg, None, seed=cfg.seed)
        d = w.data
        first_frame_rows = np.repeat(d.frame_start, d.lengths) + w.t
        mask = d["agent_mask"][first_frame_rows] if cfg.masked else None
        pooled, agent = pooled_agent_flow(d["flow"], mask, d["flow_valid"], cfg.flow_size)
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


@torch.no_grad()
def all_tokens(tokenizer: SkillTokenizer, data: ChunkData, batch: int = 512) -> torch.Tensor:
    """(N, n) token indices of every window of ``data``."""
    out = []
    for s in range(0, len(data), batch):
        idx = np.arange(s, min(len(data), s + batch))
        out.append(tokenizer.fsq.codes_to_indices(tokenizer.encode(data.flow_windows(idx))))
    return torch.cat(out)
