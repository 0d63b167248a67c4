"""Networks of the latent action models (``rl_laof.models.lam``) and their building blocks."""

from rl_laof.models.lam import LatentActionModel

__all__ = ["LatentActionModel"]
