"""Latent action models (LAPO, LAOM, LAOF): the stage library behind ``python -m rl_laof.lam``.

    config       LAMConfig and its presets
    training     train_lam (resumable, data-parallel), load_lam
    evaluation   latents, held-out losses and probes
    probes       linear / MLP / state probes, label-budget curves
"""
