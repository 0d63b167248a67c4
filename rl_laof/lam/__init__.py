"""Latent action models (LAPO, LAOM, LAOF): the stage library behind ``python -m rl_laof.pretrain``."""
