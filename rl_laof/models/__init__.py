"""Networks only: the latent action models (``lam_model``: LAPO, LAOF; ``laom_model``: LAOM), pixel policies and
action decoders (``policy``), SOF skill models (``skill_models``), and their building blocks (``blocks``, ``vq``,
``augment``)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from rl_laof.models.augment import laom_homographies, random_homographies
from rl_laof.models.lam_model import LatentActionModel
from rl_laof.models.laom_model import LAOMModel

if TYPE_CHECKING:  # the config of the stage above (rl_laof.lam) types the factory, nothing more
    from rl_laof.lam.config import LAMConfig


def build_lam(cfg: LAMConfig, image_size: int, action_dim: int) -> LAOMModel | LatentActionModel:
    """The latent action model of ``cfg``: :class:`LAOMModel` for LAOM (its IMPALA encoder), else
    :class:`LatentActionModel` (LAPO, LAOF; and LAOM with ``encoder="conv"``: the variant this project ran before
    LAOM was ported, which runs saved then still load as)."""
    r = cfg.resolved()
    if r.base == "laom" and r.encoder == "impala":
        return LAOMModel(r, image_size, action_dim)
    return LatentActionModel(r, image_size, action_dim)


def lam_augmentation(cfg: LAMConfig, image_size: int) -> Callable[[int, torch.Generator], torch.Tensor] | None:
    """How a training batch of ``cfg``'s model draws its augmentation (None: it has none): ``draw(n, generator)``
    -> per window (n, 3, 3) (LatentActionModel: one warp per window) or per image (n, 3, 3, 3) (LAOM: o_t,
    o_{t+k}, o_{t+1} each their own). The training loop draws for the global batch and slices it."""
    r = cfg.resolved()
    if not r.augment:
        return None
    if r.base == "laom" and r.encoder == "impala":
        return functools.partial(laom_homographies, image_size=image_size, images=3)
    return random_homographies


__all__ = ["LAOMModel", "LatentActionModel", "build_lam", "lam_augmentation"]
