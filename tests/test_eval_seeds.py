"""Evaluations that must not share episodes do not: a pool of n envs made with seed s runs env i on seed s + i, so
seed blocks are n apart (envs.rollout.EVAL_SEED's rule)."""

from __future__ import annotations

import numpy as np
import pytest

from agents.config import TrainConfig
from envs import rollout
from envs.rollout import EVAL_SEED
from rl_laof.presets import EVAL_BACKGROUNDS


def test_env_i_of_seed_s_is_env_0_of_seed_s_plus_i():
    """The premise, on EnvPool itself: overlapping seed ranges give the same episodes."""
    import envpool

    a, _ = envpool.make_gymnasium("CheetahRun-v1", num_envs=3, seed=100).reset()
    b, _ = envpool.make_gymnasium("CheetahRun-v1", num_envs=2, seed=101).reset()

    def state(obs, i):
        return np.concatenate([np.ravel(v[i]) for k, v in obs.items() if k not in ("env_id", "players")])

    assert np.allclose(state(a, 1), state(b, 0)) and np.allclose(state(a, 2), state(b, 1))
    assert not np.allclose(state(a, 0), state(b, 0))


def test_policy_returns_gives_every_seed_and_background_episodes_of_its_own(monkeypatch):
    made = []

    class Pool:
        def close(self):
            pass

    def make(task, num_envs, seed, distractors, **kw):
        made.append((distractors.background_split, [seed + i for i in range(num_envs)]))
        return Pool()

    monkeypatch.setattr(rollout, "make", make)
    monkeypatch.setattr(rollout, "run_episodes", lambda venv, act, executed: (executed.append(np.zeros((1, 6))),
                                                                             np.zeros(8))[1])
    out = rollout.policy_returns(lambda obs: obs, "cheetah-run", "laom", 64, 3, 4, backgrounds=("train", "eval"),
                                 seeds=3, episodes=8, progress=False)
    assert out["train"]["episodes"] == out["eval"]["episodes"] == 24
    seeds = [s for _, block in made for s in block]
    assert len(seeds) == len(set(seeds)) == 48  # no episode seed twice
    assert made[0] == ("train", list(range(EVAL_SEED, EVAL_SEED + 8)))
    # "val": the data's background videos on episodes of its own (choices are made there)
    made.clear()
    rollout.policy_returns(lambda obs: obs, "cheetah-run", "laom", 64, 3, 4, backgrounds=("val", "train"), seeds=2,
                           episodes=8, progress=False)
    (val_split, val_seeds), (train_split, train_seeds) = made[0], made[2]
    assert val_split == train_split == "train" and not set(val_seeds) & set(train_seeds)
    assert train_seeds == list(range(EVAL_SEED, EVAL_SEED + 8))  # the order of the sets changes no seed
    assert set(rollout.EVAL_SETS) == set(EVAL_BACKGROUNDS)  # what the configs accept is what the rollout knows
    with pytest.raises(ValueError, match=r"evaluation sets \['test'\]"):
        rollout.policy_returns(lambda obs: obs, "cheetah-run", "laom", 64, 3, 4, backgrounds=("test",),
                               progress=False)
    with pytest.raises(ValueError, match="at most 1000 episodes per background set"):
        rollout.policy_returns(lambda obs: obs, "cheetah-run", "laom", 64, 3, 4, seeds=2, episodes=600,
                               progress=False)


def test_an_agents_final_evaluation_meets_episodes_its_periodic_ones_never_saw(monkeypatch, tmp_path):
    import agents.training as training

    pools = []
    real = training.make_env

    def make_env(cfg, num_envs, seed, *args, training=True, **kw):
        if not training:
            pools.append(set(range(seed, seed + num_envs)))
        return real(cfg, num_envs, seed, *args, training=training, **kw)

    monkeypatch.setattr(training, "make_env", make_env)
    cfg = TrainConfig(latent="none", obs="state", distractors="none", total_steps=128, num_envs=2, n_steps=32,
                      batch_size=32, n_epochs=1, hidden=32, eval_every=64, checkpoint_every=64, eval_episodes=4,
                      final_eval_episodes=4, seed=3)
    training.train(cfg, tmp_path / "run", progress=False)
    periodic, final = pools[0], pools[-1]
    assert periodic == set(range(3 + EVAL_SEED, 3 + EVAL_SEED + 4)) and not periodic & final and len(final) == 4
