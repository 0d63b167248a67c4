"""LAOM (Nikulin et al. 2025), ported from its reference code (dunnolab/laom: ``src/nn.py`` ``LAOM`` /
``LAOMWithLabels``, ``train_laom.py``, ``train_laom_labels.py``, ``src/augmentations.py``)::

    E        IMPALA-ResNet, ONE encoder for both heads: per stage a 3x3 stride-2 conv and 2 residual blocks
             (ReLU6, 3x3 conv, ReLU6, 3x3 conv), channels (w, 2w, 2w); flattened (no linear layer, no norm)
    IDM      MLP head on [E(o_t), E(o_{t+k})] -> z (latent_dim, continuous; 8192 published), k ~ U{1..10}
    FDM      MLP head on [E(o_t).detach(), z] -> prediction of E_ema(o_{t+1})
    E_ema    EMA copy of E (tau 0.001 per update), no gradient
    loss     MSE(FDM, E_ema(o_{t+1})) (plain MSE over every element, embeddings not normalised)
             + 0.001 MSE(linear(z), a_t) on a labelled batch of augmented (o_t, o_{t+k}) (laom-action)

Each head (the reference's ``LatentActHead`` / ``LatentObsHead``, width ``head_width``, 1024 published) is
three (linear -> residual MLP block) stages, the later linears seeing the head's input again; a block is
LayerNorm(x + Linear(ReLU6(Linear(x, 4d)), d)). Weights orthogonal, biases 0, as the reference's
``weight_init``. Each image of a window (o_t stack, o_{t+k} stack, o_{t+1} stack) draws its own augmentation
(:func:`rl_laof.models.augment.laom_homographies`); so do the two images of a labelled window.

Pixels: uint8 -> [-1, 1] (the reference's ``normalize_img``: (x / 255 - 0.5) * 2). A float input is taken in
this project's [-0.5, 0.5] convention (``lam_model.to_float``) and doubled, so every caller passes what it
passes to :class:`LatentActionModel`.

Deliberate deviations from the reference:

- augmentation: one homography per image, resampled once with replicated borders, every image its own
  parameters (the reference draws one rotation / perspective per composition per batch, and resamples after
  each step); see :func:`~rl_laof.models.augment.laom_homographies`. The draws are made for the global batch
  by the training loop (``batch["homography"]``: (B, images, 3, 3)), so a data-parallel run slices them;
- not ported: the reference's online probes (state and action, trained on each training batch); the probes
  of :mod:`rl_laof.lam.evaluation` are fit on training windows and scored on held-out ones;
- the encoder downsamples with stride-2 convs as the reference code does ("conv downsampling is faster than
  maxpool, with same perf"), not with the IMPALA paper's max-pool; its output is the flattened feature map
  (w 96 at 64 px: 12288-d), as the reference's, with no linear projection.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from rl_laof.models.augment import laom_homographies, warp
from rl_laof.models.blocks import LossModule, mlp

if TYPE_CHECKING:  # the config of the stage above (rl_laof.lam) types the constructor, nothing more
    from rl_laof.lam.config import LAMConfig

IMAGES = ("obs", "future_obs", "next_obs")  # the images of a window, in the order of batch["homography"][:, i]


def to_unit(frames: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> [-1, 1] (LAOM's scaling); float frames in [-0.5, 0.5] -> [-1, 1]."""
    if frames.dtype == torch.uint8:
        return frames.float().div_(127.5).sub_(1.0)
    return frames * 2.0


class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.block = nn.Sequential(nn.ReLU6(), nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU6(),
                                   nn.Conv2d(channels, channels, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class ImpalaEncoder(nn.Module):
    """(C, H, W) -> flattened features: per stage a 3x3 stride-2 conv, then ``res_blocks`` residual blocks."""

    def __init__(self, cin: int, width: int, image_size: int, res_blocks: int = 2):
        super().__init__()
        stages, side = [], image_size
        for cout in (width, 2 * width, 2 * width):
            stages += [nn.Conv2d(cin, cout, 3, stride=2, padding=1), *[ResidualBlock(cout) for _ in range(res_blocks)]]
            cin, side = cout, (side + 1) // 2
        self.net = nn.Sequential(*stages, nn.Flatten())
        self.out_dim = cin * side * side

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MLPBlock(nn.Module):
    """LayerNorm(x + MLP(x)), the MLP 4x wide with ReLU6."""

    def __init__(self, dim: int, expand: int = 4):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, expand * dim), nn.ReLU6(), nn.Linear(expand * dim, dim))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x + self.mlp(x))


class Head(nn.Module):
    """The reference's heads: 3 x (linear over [hidden, context] -> MLP block), then a linear to ``out``; the
    first linear sees only the context. IDM: context [E(o_t), E(o_{t+k})]; FDM: [E(o_t), z]."""

    def __init__(self, context: int, hidden: int, out: int):
        super().__init__()
        self.proj = nn.ModuleList([nn.Linear(context, hidden), nn.Linear(hidden + context, hidden),
                                   nn.Linear(hidden + context, hidden)])
        self.blocks = nn.ModuleList([MLPBlock(hidden) for _ in range(3)])
        self.out = nn.Linear(hidden, out)

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        x = self.blocks[0](self.proj[0](context))
        for proj, block in zip(self.proj[1:], self.blocks[1:], strict=True):
            x = block(proj(torch.cat([x, context], -1)))
        return self.out(x)


def _init(m: nn.Module) -> None:
    if isinstance(m, (nn.Linear, nn.Conv2d)):
        nn.init.orthogonal_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


class LAOMModel(LossModule):
    """LAOM with the interface of :class:`rl_laof.models.lam_model.LatentActionModel` (see the module doc)."""

    def __init__(self, cfg: LAMConfig, image_size: int, action_dim: int):
        super().__init__()
        cfg = cfg.resolved()
        if cfg.latent != "continuous" or cfg.fdm != "latent" or cfg.flow_weight > 0:
            raise ValueError(f"LAOM's model has a continuous latent, a latent FDM and no flow term (got "
                             f"latent={cfg.latent!r}, fdm={cfg.fdm!r}, flow_weight={cfg.flow_weight})")
        self.cfg, self.image_size = cfg, image_size
        self.encoder = ImpalaEncoder(3 * cfg.frame_stack, cfg.width, image_size)
        emb = self.encoder.out_dim
        self.idm = Head(2 * emb, cfg.head_width, cfg.latent_dim)
        self.fdm = Head(emb + cfg.latent_dim, cfg.head_width, emb)
        self.action_head = None
        if cfg.action_weight > 0:  # the reference's: linear
            self.action_head = (nn.Linear(cfg.latent_dim, action_dim) if cfg.action_head == "linear"
                                else mlp(cfg.latent_dim, action_dim))
        self.flow_decoder = None
        self.vq = None
        self.apply(_init)
        # made after the init: E_ema starts equal to E (the reference deep-copies the initialised model)
        self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False)

    # ------------------------------------------------------------------ inference
    def embed(self, *frames: torch.Tensor) -> list[torch.Tensor]:
        """E of each (B, 3s, H, W) stack (already in [-1, 1]), in one pass over the concatenated batch."""
        return list(self.encoder(torch.cat(frames)).split(len(frames[0])))

    def encode(self, obs: torch.Tensor, future: torch.Tensor) -> torch.Tensor:
        """The latent action of (o_t stack, o_{t+k} stack), un-augmented: (B, latent_dim)."""
        e_obs, e_fut = self.embed(to_unit(obs), to_unit(future))
        return self.idm(torch.cat([e_obs, e_fut], -1))

    def quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        return z, z.new_zeros(()), {}

    def augment(self, frames: list[torch.Tensor], homography: torch.Tensor | None,
                generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """``frames`` (uint8 or float stacks) in [-1, 1], each image i warped by ``homography[:, i]``
        (drawn here from ``generator`` when None). In fp32 outside autocast: the warp's coordinates need it."""
        x = [to_unit(f) for f in frames]
        if not self.cfg.augment:
            return x
        if homography is None:
            homography = laom_homographies(len(x[0]), generator, self.image_size, len(x))
        if homography.ndim != 4 or homography.shape[1] < len(x):
            raise ValueError(f"LAOM draws a homography per image: (B, {len(x)}, 3, 3), got "
                             f"{tuple(homography.shape)} (rl_laof.models.augment.laom_homographies)")
        with torch.autocast(x[0].device.type, enabled=False):
            return [warp(f.float(), homography[:, i]) for i, f in enumerate(x)]

    # ------------------------------------------------------------------ training
    def losses(self, batch: dict[str, torch.Tensor], labelled: dict[str, torch.Tensor] | None = None,
               generator: torch.Generator | None = None, with_labels: bool = False
               ) -> tuple[torch.Tensor, dict[str, float]]:
        """LAOM's loss of one step and its parts (``fdm``; ``action`` with labels; ``fdm_copy`` in eval mode).

        ``batch``: windows (obs, next_obs, future_obs when k > 1; ``homography`` (B, 3, 3, 3) per image, drawn
        from ``generator`` when absent); ``labelled``: labelled windows for the action head, augmented on
        (o_t, o_{t+k}) (``homography`` (B, >= 2, 3, 3)); ``with_labels``: ``batch`` itself is labelled (an
        "alternate" label schedule): the action head on its own z.
        """
        cfg = self.cfg
        fut = batch.get("future_obs", batch["next_obs"])
        obs, fut, nxt = self.augment([batch["obs"], fut, batch["next_obs"]], batch.get("homography"), generator)
        e_obs, e_fut = self.embed(obs, fut)
        z = self.idm(torch.cat([e_obs, e_fut], -1))
        with torch.no_grad():
            target = self.target_encoder(nxt)
        # the FDM sees o_t's embedding detached: E learns only through z (the IDM), as the reference
        pred = self.fdm(torch.cat([e_obs.detach(), z], -1))
        parts = {"fdm": F.mse_loss(pred.float(), target.float())}
        loss = cfg.fdm_weight * parts["fdm"]
        baselines: dict[str, torch.Tensor] = {}
        if not self.training:  # the trivial predictor: the next embedding = this one
            with torch.no_grad():
                baselines["fdm_copy"] = F.mse_loss(self.target_encoder(obs).float(), target.float())
        if self.action_head is not None:
            if with_labels:
                parts["action"] = F.mse_loss(self.action_head(z).float(), batch["action"])
            elif labelled is not None and len(labelled["obs"]):
                lab_fut = labelled.get("future_obs", labelled["next_obs"])
                hom = labelled.get("homography")
                l_obs, l_fut = self.augment([labelled["obs"], lab_fut], hom[:, :2] if hom is not None else None,
                                            generator)
                z_lab = self.idm(torch.cat(self.embed(l_obs, l_fut), -1))
                parts["action"] = F.mse_loss(self.action_head(z_lab).float(), labelled["action"])
            if "action" in parts:
                loss = loss + cfg.action_weight * parts["action"]
        metrics = {k: float(v.detach()) for k, v in {**parts, **baselines}.items()}
        metrics["latent_norm"] = float(z.detach().float().norm(dim=-1).mean())
        metrics["loss"] = float(loss.detach())
        return loss, metrics

    @torch.no_grad()
    def update_target(self) -> None:
        """E_ema <- (1 - tau) E_ema + tau E, after every update (the reference's ``soft_update``)."""
        for pt, p in zip(self.target_encoder.parameters(), self.encoder.parameters(), strict=True):
            pt.lerp_(p, self.cfg.ema_tau)
