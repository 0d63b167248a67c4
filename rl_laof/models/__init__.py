"""Networks only: the latent action model (``lam_model``), pixel policies and action decoders (``policy``), SOF
skill models (``skill_models``), and their building blocks (``blocks``, ``vq``, ``augment``)."""

from rl_laof.models.lam_model import LatentActionModel

__all__ = ["LatentActionModel"]
