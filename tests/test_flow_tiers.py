"""Flow tiers: each builds LAOF's target from only what its name allows; LAOF-Action's lambda is the data's share."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest
from conftest import strip_simulator

from rl_laof.data import format as fmt
from rl_laof.data.dataset import VideoDataset
from rl_laof.flow.tiers import SIMULATOR_KEYS, agent_source, check_tier, flow_method
from rl_laof.lam.config import LAMConfig

pytestmark = pytest.mark.usefixtures("gl")

TINY = dict(width=8, batch_size=16, labelled_batch_size=8, lr=1e-3, eval_windows=32, mlp_probe_steps=0,
            checkpoint_every=4, eval_every=4, steps=4, precision="fp32")


@pytest.fixture(scope="module")
def both_flows(lam_dataset, tmp_path_factory):
    """The learning stages' dataset with exact and RGB-estimated flow beside it."""
    from rl_laof.flow.targets import fill_flow

    out = tmp_path_factory.mktemp("tiers") / "ds"
    shutil.copytree(lam_dataset, out)
    fill_flow(out, "estimate", progress=False)
    return out


def _targets(path, tier: str) -> np.ndarray:
    from rl_laof.flow.agent_targets import AgentFlowTargets

    cfg = LAMConfig(flow_tier=tier)
    ds = VideoDataset(path, flow=cfg.flow_method)
    return AgentFlowTargets(ds, "train", 0.01, cfg.agent_flow_source, 16).target


def test_tier_names_their_inputs():
    assert [flow_method(t) for t in ("oracle", "estimated", "rgb")] == ["exact", "estimate", "estimate"]
    assert [agent_source(t) for t in ("oracle", "estimated", "rgb")] == ["observed", "observed", "unmasked"]
    assert agent_source("oracle", "camfree") == "camfree"
    with pytest.raises(ValueError, match="oracle tier only"):
        check_tier("estimated", "camfree")
    with pytest.raises(ValueError, match="flow_tier='exact'"):
        LAMConfig(flow_tier="exact")


def test_rgb_tier_reads_no_simulator_array(both_flows, tmp_path):
    """Remove every simulator array and the exact flow: the rgb tier's targets are the same, and LAOF trains."""
    from rl_laof.lam.training import train_lam

    before = _targets(both_flows, "rgb")
    video = tmp_path / "video"
    shutil.copytree(both_flows, video)
    strip_simulator(video)
    ds = VideoDataset(video)
    assert not set(SIMULATOR_KEYS) & set(ds.keys) and ds.flow_path.name == "flow-estimate.h5"
    np.testing.assert_array_equal(_targets(video, "rgb"), before)
    report = train_lam(LAMConfig(method="laof", flow_tier="rgb", **TINY), video, tmp_path / "run", progress=False)
    assert report["flow_tier"] == "rgb" and report["flow_file"].endswith("flow-estimate.h5")
    assert report["config"]["flow_tier"] == "rgb" and np.isfinite(report["probes"]["eval"]["linear_action_mse"])
    # the tiers that need the simulator say what is missing
    with pytest.raises(fmt.DatasetError, match="no exact flow"):
        train_lam(LAMConfig(method="laof", flow_tier="oracle", **TINY), video, tmp_path / "oracle", progress=False)
    with pytest.raises((KeyError, ValueError), match="agent_mask"):
        _targets(video, "estimated")


def test_estimated_tier_reads_rgb_flow_and_the_mask_only(both_flows, tmp_path):
    before = _targets(both_flows, "estimated")
    assert not np.array_equal(before, _targets(both_flows, "oracle"))  # another flow than the oracle's
    assert not np.array_equal(before, _targets(both_flows, "rgb"))  # masked, unlike rgb
    no_exact = tmp_path / "no_exact"
    shutil.copytree(both_flows, no_exact)
    fmt.flow_path(no_exact / "dataset.h5", "exact").unlink()
    with h5py.File(no_exact / "dataset.h5", "a") as f:  # the exact-flow inputs are not read either
        for ep in f["episodes/train"].values():
            for key in ("depth", "geom_id", "geom_xpos", "geom_xmat", "camera_pos", "camera_mat", "states"):
                del ep[key]
    np.testing.assert_array_equal(_targets(no_exact, "estimated"), before)
    # outside the agent mask the estimated tier's target is black (no motion)
    ds = VideoDataset(both_flows, flow="estimate")
    mask = ds.load_split("train", ("agent_mask",))
    assert mask["agent_mask"].any()


def test_oracle_ignores_the_estimated_flow(both_flows, tmp_path):
    before = _targets(both_flows, "oracle")
    no_est = tmp_path / "no_est"
    shutil.copytree(both_flows, no_est)
    fmt.flow_path(no_est / "dataset.h5", "estimate").unlink()
    np.testing.assert_array_equal(_targets(no_est, "oracle"), before)


def test_lambda_is_the_labelled_share_of_the_data(lam_dataset, tmp_path):
    """XizoB/LAOF: lambda = M / (N + M), whatever the batch sizes; labelled and unlabelled steps alternate."""
    from rl_laof.lam.training import label_share, train_lam

    ds = VideoDataset(lam_dataset)
    share = float(ds.label_mask("train", "frac-0.1").mean())
    for batch, lab in ((16, 8), (32, 32)):
        cfg = LAMConfig(method="laof-action", labels=0.1, batch_size=batch, labelled_batch_size=lab).resolved()
        assert label_share(cfg, ds).label_share == pytest.approx(share)
    r = LAMConfig(method="laof-action", labels=0.1).resolved()
    assert (r.label_schedule, r.flow_weight, r.action_weight) == ("alternate", 1.0, 1.0)
    r = LAMConfig(method="laom-action", labels=0.1).resolved()
    assert (r.label_schedule, r.action_weight) == ("joint", 0.001)
    report = train_lam(LAMConfig(method="laof-action", labels=0.1, **TINY), lam_dataset, tmp_path / "r",
                       progress=False)
    assert report["config"]["label_share"] == pytest.approx(share)
    assert report["train_samples_per_s"] > 0


def test_alternate_steps_train_each_head_on_its_own_batches(lam_dataset):
    """A labelled step moves the action head and not the flow decoder; an unlabelled step the reverse."""
    from rl_laof.data.windows import WindowDataset
    from rl_laof.flow.agent_targets import AgentFlowTargets
    from rl_laof.models.lam_model import LatentActionModel

    ds = VideoDataset(lam_dataset)
    cfg = LAMConfig(method="laof-action", labels=0.1, **TINY).resolved(flow_sigma=0.01)
    model = LatentActionModel(cfg, ds.image_shape[-1], ds.action_dim)
    w = WindowDataset(ds, "train", cfg.window_config(), True)
    lab = w.gather(np.arange(8))
    loss, m = model.losses(lab, None, None, True)
    loss.backward()
    assert "action" in m and "flow" not in m
    assert model.action_head.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.flow_decoder.parameters())
    model.zero_grad(set_to_none=True)
    w_all = WindowDataset(ds, "train", cfg.window_config())
    b = w_all.gather(np.arange(8))
    b.update(AgentFlowTargets(ds, "train", 0.01, "observed", 16).get(np.arange(8)))
    loss, m = model.losses(b)
    loss.backward()
    assert "flow" in m and "action" not in m
    assert model.action_head.weight.grad is None
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.flow_decoder.parameters())


def test_the_tier_is_part_of_a_flow_runs_identity_only(lam_dataset, tmp_path):
    """A LAPO run is the same run whatever flow_tier says (its loss has no flow term): a run made under another
    default tier is found, not refused; a LAOF run of another tier is refused, and the default folders differ."""
    from rl_laof.lam.training import default_run_dir, train_lam

    lapo = train_lam(LAMConfig(method="lapo", flow_tier="oracle", **TINY), lam_dataset, tmp_path / "lapo",
                     progress=False)
    assert train_lam(LAMConfig(method="lapo", flow_tier="rgb", **TINY), lam_dataset, tmp_path / "lapo",
                     progress=False) == lapo
    train_lam(LAMConfig(method="laof", flow_tier="oracle", **TINY), lam_dataset, tmp_path / "laof", progress=False)
    with pytest.raises(ValueError, match="flow_tier"):
        train_lam(LAMConfig(method="laof", flow_tier="rgb", **TINY), lam_dataset, tmp_path / "laof", progress=False)
    dirs = {t: default_run_dir(LAMConfig(method="laof", flow_tier=t), lam_dataset, "cheetah-run").name
            for t in ("rgb", "oracle")}
    assert dirs == {"rgb": "laof-rgb-quick-s0", "oracle": "laof-oracle-quick-s0"}
