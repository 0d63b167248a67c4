"""Values and sizes a run refuses before it starts: SB3 arguments outside their range, and sizes past what the data
or the machine holds (a batch, envs and their rollout, a dataset on disk), from estimates that are checked here
against what was measured."""

from __future__ import annotations

import pytest

from agents.config import ExpertConfig, TrainConfig
from rl_laof import presets


@pytest.mark.parametrize("cls, values, message", [
    (TrainConfig, dict(gamma=0.0), "gamma=0.0: the discount must be in (0, 1]"),
    (TrainConfig, dict(gamma=1.5), "gamma=1.5"),
    (TrainConfig, dict(gae_lambda=1.01), "gae_lambda=1.01"),
    (TrainConfig, dict(clip_range=0.0), "clip_range=0.0: PPO's clip range must be > 0"),
    (TrainConfig, dict(algo_kwargs={"gamma": 2}), "gamma=2"),  # SB3's arguments as it gets them
    (TrainConfig, dict(algo="sac", algo_kwargs={"tau": 1.5}), "tau=1.5"),
    (TrainConfig, dict(algo_kwargs={"max_grad_norm": 0}), "max_grad_norm=0"),
    (TrainConfig, dict(algo="sac", gae_lambda=2.0), "gae_lambda=2.0"),  # a field off-policy SB3 never gets
    (TrainConfig, dict(image_size=7), "image_size=7"),  # the env's own check, in the config's
    (TrainConfig, dict(frame_stack=0), "frame_stack"),
    (ExpertConfig, dict(algo_kwargs={"gamma": 5}), "gamma=5"),
    (ExpertConfig, dict(algo_kwargs={"clip_range": -0.1}), "clip_range=-0.1"),
])
def test_arguments_outside_their_range_are_refused_by_the_config(cls, values, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("]", r"\]")):
        cls(**values)


@pytest.mark.parametrize("cls, values", [
    (TrainConfig, dict(gamma=1.0, gae_lambda=0.0)),  # an undiscounted return; GAE's lambda 0 is one-step TD
    (TrainConfig, dict(algo="sac", algo_kwargs={"ent_coef": "auto", "tau": 1.0})),  # SAC's text value passes
    (ExpertConfig, dict(algo_kwargs={"learning_rate": 1e9})),  # large, but a learning rate (a divergence test's)
])
def test_arguments_inside_their_range_pass(cls, values):
    cls(**values)


def test_refuse_beyond_names_the_setting_both_sizes_and_the_fix():
    presets.refuse_beyond("x=1", 2e9, None, "memory", "less")  # unknown: nothing refused
    presets.refuse_beyond("x=1", 2e9, 3 * 10 ** 9, "memory", "less")
    with pytest.raises(ValueError, match=r"x=1 needs about 2\.0 GB of memory \(estimated\), more than the 512 MB "
                                         r"available: less"):
        presets.refuse_beyond("x=1", 2e9, 512 * 10 ** 6, "memory", "less")


def test_the_machine_reports_its_memory_disk_and_cores(tmp_path):
    total = next(int(line.split()[1]) * 1024 for line in open("/proc/meminfo") if line.startswith("MemTotal:"))
    assert 0 < presets.available_memory() <= total
    assert presets.free_disk(tmp_path / "not" / "yet") == presets.free_disk(tmp_path) > 0
    assert presets.cpu_count() >= 1


def test_an_agents_memory_is_its_envs_and_its_buffer():
    from agents.training import PIXEL_ENV_BYTES, agent_memory

    env = PIXEL_ENV_BYTES + 4 * 9 * 64 * 64
    raw = agent_memory(TrainConfig(latent="none"))
    # 8 + 4 evaluation envs and a rollout of 256 x 8 observations of 9 x 64 x 64 float32 (302 MB)
    assert raw == pytest.approx(12 * env + 4 * 256 * 8 * 9 * 64 * 64)
    assert agent_memory(TrainConfig(latent="none", num_envs=16)) > raw
    # the quick preset's residual agent observes the frozen policy's features, not frames
    assert agent_memory(TrainConfig()) == pytest.approx(12 * env + 4 * 256 * 8 * 1024)
    assert max(raw, agent_memory(TrainConfig())) < 1e9  # runs on a laptop
    sac = agent_memory(TrainConfig(algo="sac", latent="none", buffer_size=10_000))
    assert sac == pytest.approx(12 * (PIXEL_ENV_BYTES + 4 * 9 * 64 * 64) + 2 * 10_000 * 9 * 64 * 64)


def test_too_many_envs_for_the_cores_or_the_memory_are_refused(monkeypatch):
    from agents import training

    monkeypatch.setattr(training, "cpu_count", lambda: 2)
    training.check_config(TrainConfig(num_envs=128, eval_episodes=128, final_eval_episodes=128, n_steps=8))
    with pytest.raises(ValueError, match="num_envs=129: 2 CPU core"):
        training.check_config(TrainConfig(num_envs=129))
    monkeypatch.setattr(training, "available_memory", lambda: 400 * 10 ** 6)  # less than raw actions' 555 MB
    with pytest.raises(ValueError, match=r"num_envs=8 needs about 555 MB of memory .* more than the 400 MB "):
        training.check_config(TrainConfig(latent="none"))
    monkeypatch.setattr(training, "available_memory", lambda: None)  # unknown: nothing refused
    training.check_config(TrainConfig(latent="none"))


def test_a_pretraining_batch_the_data_or_the_memory_cannot_hold_is_refused(lam_dataset, monkeypatch):
    from rl_laof.data.dataset import VideoDataset
    from rl_laof.lam import training
    from rl_laof.lam.config import LAMConfig

    ds = VideoDataset(lam_dataset, flow=None)
    assert sum(e.length for e in ds.episodes["train"]) == 120  # 3 training episodes of 40 steps
    training.check_batch(LAMConfig(method="lapo", batch_size=120).resolved(), ds)
    with pytest.raises(ValueError, match="batch_size=121: .* has 120 training windows"):
        training.check_batch(LAMConfig(method="lapo", batch_size=121).resolved(), ds)
    with pytest.raises(ValueError, match="batch_size=50: .* has 40 training windows"):
        training.check_batch(LAMConfig(method="lapo", batch_size=50, train_episodes=1).resolved(), ds)
    # 64 samples of 5 frames and a flow target at 32 px (69 kB), x 5.2 at width 16: 23 MB
    monkeypatch.setattr(training, "available_memory", lambda: 20 * 10 ** 6)
    with pytest.raises(ValueError, match=r"batch_size=64 at width=16 on 32-px frames needs about 23 MB"):
        training.check_batch(LAMConfig(method="lapo").resolved(), ds)
    monkeypatch.setattr(training, "available_memory", lambda: 30 * 10 ** 6)
    training.check_batch(LAMConfig(method="lapo").resolved(), ds)


def test_a_datasets_estimated_size_is_near_its_real_size(lam_dataset):
    """The estimate the disk check uses, against the fixture's dataset as written (32 px, hard distractors,
    exact-flow inputs, lzf)."""
    from envs.config import DistractorConfig
    from rl_laof.data.collection import dataset_bytes
    from rl_laof.data.config import CollectConfig

    cfg = CollectConfig(expert="random", episodes=3, eval_episodes=1, heldout_bg_episodes=1, val_episodes=0,
                        episode_steps=40, image_size=32, distractors=DistractorConfig.parse("hard"), workers=1,
                        label_fractions=(0.0, 0.1))
    frames, size = dataset_bytes(cfg)
    assert frames == 5 * 41
    assert 0.6 < size / (lam_dataset / "dataset.h5").stat().st_size < 1.5


def test_a_collection_the_disk_cannot_hold_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    from rl_laof.data import collection
    from rl_laof.data.config import CollectConfig

    cfg = CollectConfig(expert="random", episodes=10, eval_episodes=0, heldout_bg_episodes=0, val_episodes=0,
                        episode_steps=99, image_size=64)
    # 10 x 100 frames of 64 x 64 pixels at 5 bytes: 20.5 MB, twice that while the parts merge
    assert collection.dataset_bytes(cfg) == (1000, 1000 * 64 * 64 * 5)
    monkeypatch.setattr(collection, "free_disk", lambda path: 40 * 10 ** 6)
    with pytest.raises(ValueError, match=r"10 episodes \(1000 frames at 64 px\) needs about 41 MB of disk space"):
        collection.finished(cfg, tmp_path / "ds")
    assert not (tmp_path / "ds").exists()
    monkeypatch.setattr(collection, "free_disk", lambda path: 42 * 10 ** 6)
    assert collection.finished(cfg, tmp_path / "ds") is None
