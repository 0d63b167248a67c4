"""PPO / SB3 agents acting in latent-action and skill spaces (built in the main-job issue)."""
