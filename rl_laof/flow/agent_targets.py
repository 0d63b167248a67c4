"""LAOF's flow targets for a whole split, encoded once, and the flow loss in which the agent counts.

The target of transition t is the agent's flow of (t, t+1) (``observed``: the displayed frames' exact
flow x agent mask x validity; ``camfree``: the same with the camera shake removed, see
``rl_laof.flow.calibrate``), RGB-encoded with sigma (:func:`rl_laof.flow.encoding.encode_flow_rgb`).
At a ``resolution`` below the frame size each cell holds the mean flow of its agent pixels (in the
cell grid's pixels, so sigma means the same brightness): the agent's flow is smooth, so a coarser target
loses little and makes the decoder cheap. Deliberate deviation: LAOF encoded at 512 px and area-resized
the RGB image to 64 px, which on our thin 1-2 px cheetah limbs would dim a 16-px target ~4x into black.
Encoding every transition once at start-up (uint8, with the agent's coverage of each cell) costs a
few seconds and takes the HSV encoding out of every training step.

Why a weighted loss: the agent covers ~2.6 % of a 64-px cheetah-run frame and its target is black
everywhere else, so in a plain mean the loss of predicting black is already small and the decoder
learns little more (the README's LAOF flow loss sat at 0.0010 whatever its weight). ``agent`` weights
each cell showing the agent by 1 and every other cell by ``bg_weight``, and normalises per sample, so the
agent's cells carry most of the loss whatever its size; ``plain`` is the paper's MSE.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from rl_laof.flow.calibrate import masked_agent_flow, source_keys
from rl_laof.flow.encoding import encode_flow_rgb

FLOW_LOSSES = ("agent", "plain")


class AgentFlowTargets:
    """Encoded agent-flow targets of every transition of one split (rows = the split's transition rows)."""

    def __init__(self, dataset, split: str, sigma: float, source: str = "observed", resolution: int | None = None,
                 episodes: int | None = None, chunk: int = 512):
        keys = source_keys(source)
        missing = [k for k in keys if k not in dataset.keys]
        if missing:
            raise ValueError(f"{dataset.path}: no {missing} arrays for the {source!r} flow target (run python -m "
                             "rl_laof.flow --method exact; files written before camera-free flow lack it: delete "
                             "flow-exact.h5 first)")
        arrays = dataset.load_split(split, keys, episodes)
        h, w = dataset.image_shape[-2:]
        r = resolution or h
        if h % r or w % r:
            raise ValueError(f"flow resolution {r} must divide the frame size {h}x{w}")
        n = arrays.num_transitions
        self.sigma, self.source, self.resolution = sigma, source, r
        self.target = np.empty((n, 3, r, r), np.uint8)
        self.coverage = np.empty((n, r, r), np.uint8)
        masked_by_dataset = "agent_mask" in keys
        if masked_by_dataset:  # the mask of frame t of every transition row
            t_of = np.arange(n) - np.repeat(arrays.trans_start, arrays.lengths)
            frame_of = np.repeat(arrays.frame_start, arrays.lengths) + t_of
        for s in range(0, n, chunk):
            sl = slice(s, min(n, s + chunk))
            chunk_arrays = {k: arrays[k][sl] for k in keys if k != "agent_mask"}
            flow, mask = masked_agent_flow(source, chunk_arrays,
                                           arrays["agent_mask"][frame_of[sl]] if masked_by_dataset else None)
            if r != h:  # the mean flow of each cell's agent pixels, in the cell grid's pixels
                k = h // r
                f, m = torch.from_numpy(flow), torch.from_numpy(mask.astype(np.float32))[:, None]
                cov = F.avg_pool2d(m, k)
                flow = (F.avg_pool2d(f, k) / cov.clamp_min(1e-6) / k).numpy()
            else:
                cov = torch.from_numpy(mask.astype(np.float32))[:, None]
            self.target[sl] = np.rint(encode_flow_rgb(flow, sigma) * 255).astype(np.uint8)
            self.coverage[sl] = (cov[:, 0] * 255).round_().to(torch.uint8).numpy()

    def __len__(self) -> int:
        return len(self.target)

    def get(self, rows: np.ndarray) -> dict[str, torch.Tensor]:
        """``flow_target`` (B, 3, r, r) float in [0, 1] and ``flow_coverage`` (B, r, r) float in [0, 1]."""
        rows = np.asarray(rows, np.int64)
        return {"flow_target": torch.from_numpy(self.target[rows]).float().div_(255.0),
                "flow_coverage": torch.from_numpy(self.coverage[rows]).float().div_(255.0)}

    def mean_target(self) -> torch.Tensor:
        """(3, r, r) the per-cell mean target: the best constant prediction, a baseline the decoder must beat
        (it says where the agent usually is and which way it usually moves, and nothing about this transition)."""
        return torch.from_numpy(self.target.mean(0, dtype=np.float64).astype(np.float32) / 255.0)


def flow_loss(pred: torch.Tensor, target: torch.Tensor, coverage: torch.Tensor | None, form: str = "agent",
              bg_weight: float = 0.1) -> torch.Tensor:
    """MSE of an encoded flow prediction (B, 3, r, r); ``agent``: weighted to the agent's cells (see module)."""
    err = (pred - target).pow(2).mean(1)  # (B, r, r)
    if form == "plain":
        return err.mean()
    if form != "agent":
        raise ValueError(f"flow loss {form!r}: use one of {', '.join(FLOW_LOSSES)}")
    if coverage is None:
        raise ValueError("the agent-weighted flow loss needs the agent's coverage (flow_coverage)")
    w = torch.where(coverage > 0, 1.0, bg_weight)
    return ((err * w).sum((1, 2)) / w.sum((1, 2)).clamp_min(1e-8)).mean()
