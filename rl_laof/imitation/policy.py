"""A latent policy, what an imitation run makes: the policy network a config describes, :class:`LatentPolicy`
acting with it (policy, then the action decoder where there is one), ``load_latent_policy`` for an imitation
run's ``policy.pt`` (what the PPO stage starts from), and ``recorded_data``: the env its data was collected in
and the expert's action spread there."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from rl_laof.data.dataset import VideoDataset
from rl_laof.imitation.config import ImitationConfig
from rl_laof.models.policy import ActionDecoder, BCPolicy, FlowPolicy, PixelEncoder
from rl_laof.runs import load_torch, read_json

DATA_FILE = "data.json"  # beside a policy.pt made before policy.pt kept its data record (the shipped ones)


def make_policy(cfg: ImitationConfig, out_dim: int, image_size: int) -> BCPolicy | FlowPolicy:
    enc = PixelEncoder(cfg.frame_stack, cfg.features, cfg.width, image_size, cfg.encoder)
    if cfg.policy == "lafp":
        return FlowPolicy(enc, out_dim, cfg.hidden, cfg.euler_steps, cfg.time_embed)
    return BCPolicy(enc, out_dim, cfg.hidden)


class LatentPolicy:
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


#: an imitation run's agent file: the policy, decoder and normaliser with what later stages check and use
AGENT_FILE = "policy.pt"


def load_latent_policy(run_dir: str | Path, seed: int = 0) -> tuple[LatentPolicy, dict[str, Any]]:
    """The latent policy of an imitation run (:data:`AGENT_FILE`) and its saved metadata (config, task, latent
    normaliser, latent model run): what the PPO stage starts from."""
    path = Path(run_dir) / AGENT_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: no latent policy (run python -m rl_laof.imitation first)")
    saved = load_torch(path)
    cfg = ImitationConfig.from_recorded(saved["config"])
    policy = make_policy(cfg, saved["out_dim"], saved["image_size"])
    policy.load_state_dict(saved["policy"])
    decoder = None
    if saved["decoder"] is not None:
        decoder = ActionDecoder(saved["out_dim"], saved["action_dim"], cfg.decoder_hidden)
        decoder.load_state_dict(saved["decoder"])
    return LatentPolicy(policy, decoder, seed), saved


def data_record(ds: VideoDataset, frame_stack: int) -> dict[str, Any]:
    """What a latent policy's data was: the env it was collected in (task, distractors, image size, action repeat)
    with the policy's frame stack, and the expert's per-dimension action std on its training split (what a
    policy's action spread is measured against: ``rl_laof.imitation.evaluation.spread_ratio``)."""
    actions = np.asarray(ds.load_split("train", ("actions",))["actions"], np.float64)
    return {"env": {**ds.env_settings, "frame_stack": int(frame_stack)},
            "action_std": actions.std(0).round(6).tolist()}


def recorded_data(run_dir: str | Path, meta: dict[str, Any]) -> dict[str, Any] | None:
    """The data record (:func:`data_record`) of the imitation run in ``run_dir`` whose ``policy.pt`` holds ``meta``:
    kept in ``policy.pt``, else in ``data.json`` beside it (the shipped policies, made before it was kept), else
    read from its dataset where that file is still there; None where none of them is."""
    if meta.get("data") is not None:
        return meta["data"]
    if (Path(run_dir) / DATA_FILE).exists():
        return read_json(Path(run_dir) / DATA_FILE)
    dataset = meta.get("dataset")
    if dataset and Path(dataset).exists():
        return data_record(VideoDataset(dataset, flow=None), meta["config"]["frame_stack"])
    return None
