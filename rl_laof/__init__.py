"""rl_laof: learning action spaces (latent actions, skills) from action-free video, and PPO in them."""

__version__ = "0.1.0"
