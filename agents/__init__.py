"""stable-baselines3 / sb3-contrib agents: experts on state, and agents acting in latent-action and skill spaces.

    config       ExpertConfig, TrainConfig, DrQConfig and their presets
    algorithms   the algorithm registry
    expert       experts: training, evaluation, the Expert a dataset is collected with
    policy       the pixel features extractor and how an agent starts from what was pretrained
    latent_env   latent-action VecEnvs (latent, LAFP noise, residual)
    skill_env    the skill-action VecEnv
    loop         the shared SB3 loop: evaluation, checkpoints, learning curves
    training     training an agent (the main job's body)
    replay       replaying a trained agent, with a video
    drq          DrQ-v2, the pixel baseline (--algo drq): agent, checkpoints, its loop on the shared env and report
    drq_replay   DrQ-v2's replay buffer (each frame once, stacks and n-step returns per episode)
"""
