"""What the agent's flow looks like in a dataset, and the LAOF encoding scale sigma set from it.

LAOF encodes flow as HSV with value = min(1, |f| / (sigma * diag)). Set by hand, sigma is easily off
by an order of magnitude: on 64-px cheetah-run at action repeat 4 the agent covers ~2.6 % of the
pixels and moves ~1.4 px (median), so the old default (sigma * diag = 10.9 px) left the median agent
pixel at 0.13 of full brightness and an all-black prediction already scored an MSE of ~0.001. Here
sigma is calibrated so that a chosen percentile of the agent-pixel speed maps to full value:

    sigma = percentile_p(|f| over valid agent pixels of the training split) / diag

The percentiles are computed once, when the flow file is written (``rl_laof.flow.targets``), from
every training transition, and stored in its attributes (``agent_speed``), so the calibration is
deterministic, costs nothing at training time, and is recorded with the flow file; the run's config
records the sigma it used.

Two sources of agent flow (``FLOW_SOURCES``):

- ``observed``: the flow of the displayed frames, masked to the agent (what the camera sees: it
  includes the camera-shake distractor's motion, which is not the action);
- ``camfree``: the agent's own motion with the shake removed: exact flow of the raw render (identity
  shake affines), masked by the raw render's agent geoms. A shaken clip and the unshaken clip of the
  same physics have the same ``camfree`` flow.
- ``unmasked``: the flow file's flow of every valid pixel, with no agent mask (the ``rgb`` tier of
  :mod:`rl_laof.flow.tiers`: nothing from the simulator; the background's and camera's motion included).
"""

from __future__ import annotations

import json
from typing import Any

import h5py
import numpy as np

from rl_laof.flow.encoding import _diag

FLOW_SOURCES = ("observed", "camfree", "unmasked")
PERCENTILES = (50, 75, 90, 95, 99)


def source_keys(source: str) -> tuple[str, ...]:
    """The arrays of a dataset (with its flow file) that the ``source`` agent flow is made from."""
    if source not in FLOW_SOURCES:
        raise ValueError(f"flow source {source!r}: use one of {', '.join(FLOW_SOURCES)}")
    return {"observed": ("flow", "flow_valid", "agent_mask"), "camfree": ("agent_flow_camfree", "agent_camfree"),
            "unmasked": ("flow", "flow_valid")}[source]


def masked_agent_flow(source: str, arrays, agent_mask_t: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The agent's flow of some transitions, (N, 2, H, W) float32 zero off the agent, and its mask (N, H, W).

    ``arrays``: the transitions' flow-file arrays of :func:`source_keys`; ``agent_mask_t`` (observed only): the
    dataset's agent mask of frame t of each transition. For ``unmasked`` "agent" means every valid pixel."""
    if source in ("observed", "unmasked"):
        mask = np.asarray(arrays["flow_valid"], bool)
        if source == "observed":
            mask = np.asarray(agent_mask_t, bool) & mask
        return arrays["flow"].astype(np.float32) * mask[:, None], mask
    return arrays["agent_flow_camfree"].astype(np.float32), np.asarray(arrays["agent_camfree"], bool)


def agent_speeds(flow: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """|f| (float64) of the pixels where ``mask`` holds: flow (..., 2, H, W), mask (..., H, W) bool."""
    f = np.asarray(flow, np.float64)
    speed = np.hypot(f[..., 0, :, :], f[..., 1, :, :])
    return speed[np.asarray(mask, bool)]


def speed_summary(speeds: np.ndarray, frames: int, pixels_per_frame: int) -> dict[str, Any]:
    """Percentiles of agent speed (pixels per transition), and how much of the image the agent covers."""
    out: dict[str, Any] = {f"p{p}": float(np.percentile(speeds, p)) if len(speeds) else 0.0 for p in PERCENTILES}
    out["mean"] = float(speeds.mean()) if len(speeds) else 0.0
    out["agent_pixels"] = int(len(speeds))
    out["agent_share"] = float(len(speeds) / max(1, frames * pixels_per_frame))
    return out


def sigma_from_speed(speed_px: float, height: int, width: int) -> float:
    """The sigma at which a speed of ``speed_px`` pixels encodes to full value."""
    if not np.isfinite(speed_px) or speed_px <= 0:
        raise ValueError(f"agent speed {speed_px}: cannot calibrate sigma from a dataset whose agent never moves")
    return float(speed_px / _diag(height, width))


def stored_speeds(flow_file) -> dict[str, dict[str, Any]] | None:
    """The ``agent_speed`` summary a flow file was written with (None for files written before it)."""
    with h5py.File(flow_file, "r") as f:
        raw = f.attrs.get("agent_speed")
    return json.loads(raw) if raw is not None else None


def calibrated_sigma(dataset, percentile: float, source: str = "observed") -> tuple[float, dict[str, Any]]:
    """sigma for ``dataset`` (a :class:`rl_laof.data.VideoDataset` with flow attached) such that the
    ``percentile``-th agent-pixel speed of its training split encodes to full value; returns (sigma,
    the summary it came from)."""
    source_keys(source)  # a clear error for an unknown source
    if dataset.flow_path is None:
        raise ValueError(f"{dataset.path}: no flow targets attached; run python -m rl_laof.flow first")
    key = f"p{percentile:g}"
    summary = (stored_speeds(dataset.flow_path) or {}).get(source)
    if summary is None or key not in summary:  # an older flow file, or a percentile it did not store
        speeds = training_speeds(dataset, source)
        h, w = dataset.image_shape[-2:]
        frames = sum(e.length for e in dataset.episodes["train"])
        summary = speed_summary(speeds, frames, h * w)
        summary[key] = float(np.percentile(speeds, percentile)) if len(speeds) else 0.0
    h, w = dataset.image_shape[-2:]
    return sigma_from_speed(summary[key], h, w), summary


def training_speeds(dataset, source: str) -> np.ndarray:
    """Agent-pixel speeds of every training transition of a dataset with flow attached."""
    keys = source_keys(source)
    missing = [k for k in keys if k not in dataset.keys]
    if missing:
        raise ValueError(f"{dataset.path}: no {missing} arrays for the {source!r} flow source (flow files written "
                         "before camera-free flow existed lack them: delete flow-exact.h5 and rerun "
                         "python -m rl_laof.flow)")
    out = []
    for e in dataset.episodes["train"]:
        ep = dataset.episode("train", e.index, keys)
        out.append(agent_speeds(*masked_agent_flow(source, ep, ep.get("agent_mask", np.zeros(0))[:-1])))
    return np.concatenate(out) if out else np.zeros(0)
