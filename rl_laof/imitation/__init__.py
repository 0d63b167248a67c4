"""Latent policies (latent BC, LAFP) and action decoders: the stage library behind ``python -m rl_laof.imitate``."""
