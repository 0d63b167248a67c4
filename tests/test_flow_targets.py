"""LAOF's flow target: sigma calibrated from the data, camera-free agent flow, the agent-weighted loss."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rl_laof.data.dataset import VideoDataset
from rl_laof.flow.agent_targets import AgentFlowTargets, flow_loss
from rl_laof.flow.calibrate import calibrated_sigma, stored_speeds, training_speeds
from rl_laof.lam.config import LAMConfig

pytestmark = pytest.mark.usefixtures("gl")


def test_sigma_calibration_is_deterministic_and_recorded(lam_dataset):
    ds = VideoDataset(lam_dataset)
    stored = stored_speeds(ds.flow_path)
    assert set(stored) == {"observed", "camfree", "unmasked"}  # unmasked: every valid pixel (the rgb tier)
    assert stored["unmasked"]["agent_share"] > stored["observed"]["agent_share"]
    for source in ("observed", "camfree", "unmasked"):
        speeds = training_speeds(ds, source)
        assert len(speeds) == stored[source]["agent_pixels"] > 0
        assert stored[source]["p90"] == pytest.approx(np.percentile(speeds, 90))
        sigma, summary = calibrated_sigma(ds, 90, source)
        assert sigma == calibrated_sigma(VideoDataset(lam_dataset), 90, source)[0]
        assert sigma == pytest.approx(np.percentile(speeds, 90) / np.hypot(32, 32))
        # a percentile the file did not store is computed from the same data
        s80, _ = calibrated_sigma(ds, 80, source)
        assert s80 == pytest.approx(np.percentile(speeds, 80) / np.hypot(32, 32)) and s80 < sigma
    assert 0 < stored["observed"]["agent_share"] < 0.5
    # at the calibrated sigma the chosen percentile of agent pixels saturates: 10 % of them encode to 1
    sigma, _ = calibrated_sigma(ds, 90, "observed")
    t = AgentFlowTargets(ds, "train", sigma, "observed")
    value = t.target.max(1).astype(np.float64) / 255  # HSV value = max(R, G, B)
    agent = t.coverage > 127
    assert 0.05 < (value[agent] > 0.99).mean() < 0.2


def test_run_config_records_the_calibrated_sigma(lam_dataset, tmp_path):
    from rl_laof.lam.training import train_lam

    cfg = LAMConfig(method="laof", width=8, batch_size=8, steps=2, eval_every=2, checkpoint_every=2, eval_windows=16,
                    mlp_probe_steps=0, flow_resolution=16)
    report = train_lam(cfg, lam_dataset, tmp_path / "run", progress=False)
    # the default tier's flow file and agent-flow source ("rgb": the RGB-estimated flow, every pixel)
    sigma, _ = calibrated_sigma(VideoDataset(lam_dataset, flow=cfg.flow_method), 90, cfg.agent_flow_source)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["config"]
    assert saved["flow_sigma"] == sigma and report["flow_calibration"]["sigma"] == sigma
    assert report["flow_calibration"]["calibrated"] and report["flow_calibration"]["agent_speed"]["p90"] > 0


def test_camfree_flow_of_a_shaken_clip_equals_the_unshaken_clips(tmp_path, gl):
    """Camera shake is image-space: the same physics seen through a shaking camera has the same camera-free
    agent flow as seen through a still one, while the observed flow differs."""
    from envs.config import DistractorConfig
    from rl_laof.data.collection import collect
    from rl_laof.data.config import CollectConfig
    from rl_laof.flow.targets import fill_flow

    def clip(distractors: str):
        cfg = CollectConfig(expert="random", episodes=1, eval_episodes=0, heldout_bg_episodes=0, val_episodes=0,
                            episode_steps=6,
                            image_size=32, workers=1, distractors=DistractorConfig.parse(distractors),
                            label_fractions=(0.0,), label_trajectories=(1,))
        path = collect(cfg, tmp_path / distractors.replace(":", "-"), progress=False)
        fill_flow(path.parent, "exact", progress=False)
        ds = VideoDataset(path)
        return ds.episode("train", 0, ("physics_states", "flow", "agent_flow_camfree", "agent_camfree",
                                       "shake_affine"))

    still, shaken = clip("none"), clip("hard:camera")
    np.testing.assert_array_equal(still["physics_states"], shaken["physics_states"])  # the same motion
    assert not np.allclose(shaken["shake_affine"], still["shake_affine"])  # seen through another camera
    assert still["agent_camfree"].sum() > 50
    np.testing.assert_array_equal(shaken["agent_camfree"], still["agent_camfree"])
    np.testing.assert_array_equal(shaken["agent_flow_camfree"], still["agent_flow_camfree"])
    assert np.abs(shaken["flow"].astype(np.float32) - still["flow"].astype(np.float32)).max() > 0.1


def test_agent_weighted_loss_counts_the_agent():
    """A prediction that is right everywhere but on a small agent region scores near zero in a plain mean and
    near the full error in the agent-weighted loss."""
    target = torch.zeros(2, 3, 16, 16)
    target[:, :, 6:8, 6:8] = 1.0  # 4 of 256 cells move
    cover = (target[:, 0] > 0).float()
    zero = torch.zeros_like(target)
    plain, agent = flow_loss(zero, target, cover, "plain"), flow_loss(zero, target, cover, "agent", 0.1)
    assert plain.item() == pytest.approx(4 / 256)
    assert agent.item() == pytest.approx(4 / (4 + 0.1 * 252))
    assert flow_loss(target, target, cover, "agent").item() == 0.0
    with pytest.raises(ValueError, match="coverage"):
        flow_loss(zero, target, None, "agent")


def test_flow_loss_falls_below_predicting_zero(lam_dataset, tmp_path):
    """A few dozen steps on the tiny dataset: the flow decoder's held-out error must drop below the error of
    predicting no motion (if it sat at that value the flow term would not be acting)."""
    from rl_laof.lam.training import train_lam

    cfg = LAMConfig(method="laof", width=8, batch_size=16, lr=1e-3, steps=60, eval_every=60, checkpoint_every=60,
                    eval_windows=64, mlp_probe_steps=0, flow_resolution=16)
    report = train_lam(cfg, lam_dataset, tmp_path / "run", progress=False)
    last = report["history"][-1]
    assert last["eval/flow"] < 0.9 * last["eval/flow_zero"], last
    assert report["history"][0]["eval/flow"] == pytest.approx(report["history"][0]["eval/flow_zero"])  # starts black
