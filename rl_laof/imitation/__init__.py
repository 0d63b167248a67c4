"""Latent policies (latent BC, LAFP) and action decoders: the stage library behind ``python -m rl_laof.imitate``.

    config       ImitationConfig and its presets
    training     targets, policy, decoder; imitate (one run, evaluated and normalised)
    agent        the policy network, ImitationAgent, load_agent
    evaluation   action error, latency, the returns chart
"""
