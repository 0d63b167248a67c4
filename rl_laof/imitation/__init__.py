"""Latent policies (latent BC, LAFP) and action decoders: the stage library behind ``python -m rl_laof.imitation``.

    config       ImitationConfig and its presets
    training     targets, policy, decoder; imitate (one run, evaluated and normalised)
    policy       the policy network, LatentPolicy (what an imitation run makes), load_latent_policy
    evaluation   action error, latency, the returns chart
"""
