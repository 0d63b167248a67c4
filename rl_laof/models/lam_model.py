"""Latent action models: LAPO, LAOM and LAOF, each with an optional action head (``*-action``).

    IDM       (o_{t-s+1..t}, o_{t+k-s+1..t+k}) -> z            pre-quantisation latent action
    quantiser z -> z_q   (VQ-EMA, LAPO / LAOF)  or identity     (continuous, LAOM)
    FDM       pixel: U-Net(o_t stack, z_q) -> o_{t+1}           (LAPO, LAOF; at fdm_resolution)
              latent: MLP(E(o_t), z_q) -> E_ema(o_{t+1})        (LAOM; EMA target encoder)
    flow      D(z_q) -> RGB-encoded agent flow of (t, t+1)      (LAOF; D sees z and nothing else)
    action    linear / MLP head on z -> a_t, on labelled windows (*-action)

Policies and decoders downstream use the pre-quantisation latent ``encode(obs, next_obs)``.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from rl_laof.flow.agent_targets import flow_loss
from rl_laof.models.augment import random_homographies, warp
from rl_laof.models.blocks import ConvDecoder, ConvEncoder, LossModule, UNet, mlp
from rl_laof.models.vq import VectorQuantizerEMA

if TYPE_CHECKING:  # the config of the stage above (rl_laof.lam) types the constructor, nothing more
    from rl_laof.lam.config import LAMConfig

OBS_EMBED = 256  # LAOM's observation embedding size (latent FDM)


def to_float(frames: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> float in [-0.5, 0.5] (LAPO's scaling)."""
    return frames.float().div_(255.0).sub_(0.5)


class LatentActionModel(LossModule):
    def __init__(self, cfg: LAMConfig, image_size: int, action_dim: int):
        super().__init__()
        cfg = cfg.resolved()
        self.cfg = cfg
        c = 3 * cfg.frame_stack
        self.idm = ConvEncoder(2 * c, cfg.latent_dim, cfg.width, image_size)
        self.vq = (VectorQuantizerEMA(cfg.latent_dim, cfg.vq_codebooks, cfg.vq_positions, cfg.vq_codes,
                                      cfg.vq_decay, cfg.vq_commitment) if cfg.latent == "vq" else None)
        if cfg.fdm == "pixel":
            self.fdm_size = cfg.fdm_resolution or image_size
            if image_size % self.fdm_size:
                raise ValueError(f"fdm_resolution={self.fdm_size} must divide the frame size {image_size}")
            self.fdm = UNet(c, 3, cfg.latent_dim, cfg.width, self.fdm_size)
        else:
            self.obs_encoder = ConvEncoder(c, OBS_EMBED, cfg.width, image_size)
            self.target_encoder = copy.deepcopy(self.obs_encoder).requires_grad_(False)
            self.fdm = mlp(OBS_EMBED + cfg.latent_dim, OBS_EMBED)
        self.flow_decoder = None
        if cfg.flow_weight > 0:
            self.flow_decoder = ConvDecoder(cfg.latent_dim, 3, cfg.width, cfg.flow_resolution or image_size)
            # start at "no motion" (black): the untrained decoder scores exactly the zero-flow baseline, and
            # every gain below it is the latent's
            nn.init.zeros_(self.flow_decoder.out.weight)
            nn.init.zeros_(self.flow_decoder.out.bias)
        self.action_head = None
        if cfg.action_weight > 0:
            self.action_head = (nn.Linear(cfg.latent_dim, action_dim) if cfg.action_head == "linear"
                                else mlp(cfg.latent_dim, action_dim))

    # ------------------------------------------------------------------ inference
    def encode(self, obs: torch.Tensor, future: torch.Tensor) -> torch.Tensor:
        """The latent action of (o_t stack, o_{t+k} stack), before quantisation: (B, latent_dim)."""
        return self.idm(torch.cat([_as_float(obs), _as_float(future)], 1))

    def quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        if self.vq is None:
            return z, z.new_zeros(()), {}
        return self.vq(z)

    # ------------------------------------------------------------------ training
    def losses(self, batch: dict[str, torch.Tensor], labelled: dict[str, torch.Tensor] | None = None,
               generator: torch.Generator | None = None, with_labels: bool = False
               ) -> tuple[torch.Tensor, dict[str, float]]:
        """Weighted training loss of one step and its parts.

        ``batch``: windows (obs, next_obs, future_obs when k > 1; for LAOF flow_target and flow_coverage from
        :class:`rl_laof.flow.agent_targets.AgentFlowTargets`); ``labelled``:
        labelled windows for the action head ("joint" label schedule). ``with_labels``: ``batch`` is a labelled
        step of the "alternate" schedule (XizoB/LAOF): FDM + VQ + the action head on this batch's own latents,
        no flow term (the reference's labelled step trains no flow decoder). ``generator`` draws the augmentation.
        """
        cfg = self.cfg
        obs, nxt = _as_float(batch["obs"]), _as_float(batch["next_obs"])
        fut = _as_float(batch["future_obs"]) if "future_obs" in batch else nxt
        if cfg.augment:
            hom = batch["homography"] if "homography" in batch else random_homographies(len(obs), generator)
            obs, nxt, fut = (warp(x, hom) for x in (obs, nxt, fut))
        z = self.idm(torch.cat([obs, fut], 1))
        z_q, vq_loss, stats = self.quantize(z)
        parts: dict[str, torch.Tensor] = {}
        # trivial predictors, in evaluation only: a term whose loss sits at its baseline is not acting
        baselines: dict[str, torch.Tensor] = {}
        if cfg.fdm == "pixel":
            small, small_next = self._fdm_view(obs), self._fdm_view(nxt[:, -3:])
            parts["fdm"] = F.mse_loss(self.fdm(small, z_q, small[:, -3:]), small_next)
            if not self.training:  # o_{t+1} = o_t: the FDM's output when it ignores z
                baselines["fdm_copy"] = F.mse_loss(small[:, -3:], small_next)
        else:
            with torch.no_grad():
                target = self.target_encoder(nxt)
            parts["fdm"] = F.mse_loss(self.fdm(torch.cat([self.obs_encoder(obs), z_q], 1)), target)
            if not self.training:  # the next embedding = this one
                baselines["fdm_copy"] = F.mse_loss(self.target_encoder(obs), target)
        loss = cfg.fdm_weight * parts["fdm"]
        if self.vq is not None:
            parts["vq"] = vq_loss
            loss = loss + cfg.vq_weight * vq_loss
        if self.flow_decoder is not None and not with_labels:
            target, cover = batch["flow_target"], batch.get("flow_coverage")
            parts["flow"] = flow_loss(self.flow_decoder(z_q), target, cover, cfg.flow_loss, cfg.flow_bg_weight)
            loss = loss + cfg.flow_weight * parts["flow"]
            if not self.training:  # predicting no motion, and the best constant (the training split's mean target)
                baselines["flow_zero"] = flow_loss(torch.zeros_like(target), target, cover, cfg.flow_loss,
                                                   cfg.flow_bg_weight)
                if "flow_mean" in batch:
                    baselines["flow_mean"] = flow_loss(batch["flow_mean"].expand_as(target), target, cover,
                                                       cfg.flow_loss, cfg.flow_bg_weight)
        if self.action_head is not None and with_labels:
            parts["action"] = F.mse_loss(self.action_head(z), batch["action"])
            loss = loss + cfg.action_weight * parts["action"]
        elif self.action_head is not None and labelled is not None and len(labelled["obs"]):
            z_lab = self.encode(labelled["obs"], labelled["next_obs"])
            parts["action"] = F.mse_loss(self.action_head(z_lab), labelled["action"])
            loss = loss + cfg.action_weight * parts["action"]
        metrics = {k: float(v.detach()) for k, v in {**parts, **baselines}.items()}
        metrics.update({k: float(v) for k, v in stats.items()})
        metrics["loss"] = float(loss.detach())
        return loss, metrics

    def _fdm_view(self, x: torch.Tensor) -> torch.Tensor:
        """Frames at the pixel FDM's resolution (area-downsampled when ``fdm_resolution`` is below the frame
        size; the IDM always sees full resolution)."""
        k = x.shape[-1] // self.fdm_size
        return x if k == 1 else F.avg_pool2d(x, k)

    @torch.no_grad()
    def update_target(self) -> None:
        """LAOM's EMA target encoder: theta_target <- (1 - tau) theta_target + tau theta."""
        if self.cfg.fdm != "latent":
            return
        tau = self.cfg.ema_tau
        for pt, p in zip(self.target_encoder.parameters(), self.obs_encoder.parameters(), strict=True):
            pt.lerp_(p, tau)


def _as_float(x: torch.Tensor) -> torch.Tensor:
    return to_float(x) if x.dtype == torch.uint8 else x
