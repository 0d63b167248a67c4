"""Latent action models: every method learns, the flow decoder sees only z, exact resume, torchrun."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rl_laof.data.dataset import VideoDataset
from rl_laof.data.windows import WindowDataset
from rl_laof.lam.config import LAM_METHODS, LAMConfig

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("gl")

# a tiny model and run: 32 px frames, width 8, batch 16
TINY = dict(width=8, batch_size=16, labelled_batch_size=8, lr=1e-3, eval_windows=64, mlp_probe_steps=20,
            checkpoint_every=5, eval_every=10)


@pytest.fixture(scope="module")
def dataset(lam_dataset):
    return lam_dataset


# LAOM's published 8192-d latent and 1024-wide heads (~100M parameters) are sized down as the conv width is
TINY_LAOM = dict(latent_dim=64, head_width=64)


def tiny(method: str, **kw) -> LAMConfig:
    labels = {"labels": 0.1} if method.endswith("-action") else {}
    laom = TINY_LAOM if method.startswith("laom") else {}
    return LAMConfig(method=method, **{**TINY, **laom, **labels, **kw})


@pytest.mark.parametrize("method", LAM_METHODS)
def test_every_method_trains_and_its_loss_falls(dataset, tmp_path, method):
    from rl_laof.lam.training import train_lam

    report = train_lam(tiny(method, steps=30), dataset, tmp_path / method, progress=False)
    h = report["history"]
    assert [r["step"] for r in h] == [0, 10, 20, 30]
    assert h[-1]["eval/fdm"] < 0.8 * h[0]["eval/fdm"]
    if method.startswith("laof"):
        assert h[-1]["eval/flow"] < 0.8 * h[0]["eval/flow"]
    pr = report["probes"]["eval"]
    assert np.isfinite([pr["linear_action_mse"], pr["mlp_action_mse"], pr["state_change_mse"]]).all()
    assert set(pr["budget_curve"]) <= {"frac-0.1", "all"} and "all" in pr["budget_curve"]
    assert (tmp_path / method / "model.pt").exists() and report["train_samples_per_s"] > 0
    assert report["untrained_probes"]["eval"]["linear_action_mse"] > 0  # the floor, probed at step 0


def test_the_step_0_probes_can_be_left_out_and_the_run_is_the_same_run(dataset, tmp_path):
    from rl_laof.lam.training import train_lam

    report = train_lam(tiny("laom", steps=10, untrained_probes=False), dataset, tmp_path / "laom", progress=False)
    assert report["untrained_probes"] is None and np.isfinite(report["probes"]["eval"]["linear_action_mse"])
    # an evaluation-only field: the finished run is found, not refused, under the other value
    again = train_lam(tiny("laom", steps=10), dataset, tmp_path / "laom", progress=False)
    assert again["history"] == report["history"]


def _batch(dataset, cfg: LAMConfig, rows) -> dict:
    from rl_laof.flow.agent_targets import AgentFlowTargets

    ds = VideoDataset(dataset)
    w = WindowDataset(ds, "train", cfg.window_config())
    b = w.gather(np.asarray(rows))
    b.update(AgentFlowTargets(ds, "train", cfg.flow_sigma, cfg.flow_source, cfg.flow_resolution).get(rows))
    return b


def test_flow_decoder_sees_only_the_latent(dataset):
    """Hold z fixed and change o_t: the flow prediction (and flow loss) must not move, the FDM's must."""
    from rl_laof.models.lam_model import LatentActionModel

    cfg = tiny("laof").resolved(flow_sigma=0.05)
    model = LatentActionModel(cfg, 32, 6).eval()
    b1, b2 = _batch(dataset, cfg, [3, 4, 5, 6]), _batch(dataset, cfg, [40, 41, 42, 43])
    z_fixed = torch.randn(4, cfg.latent_dim)
    model.idm.register_forward_hook(lambda mod, inp, out: z_fixed)
    swapped = dict(b1, obs=b2["obs"])  # other o_t, same target, same z
    with torch.no_grad():
        _, m1 = model.losses(b1)
        _, m2 = model.losses(swapped)
    assert m1["flow"] == m2["flow"]
    assert m1["fdm"] != m2["fdm"]
    # and no gradient reaches the pixels through the flow branch when z is cut
    obs = b1["obs"].float().requires_grad_(True)
    z = model.idm(torch.cat([obs, b1["next_obs"].float()], 1)).detach()
    flow = model.flow_decoder(model.quantize(z)[0])
    assert torch.autograd.grad(flow.sum(), obs, allow_unused=True)[0] is None


@pytest.mark.parametrize("method", ["laom-action", "laof-action"])
def test_resume_reproduces_an_uninterrupted_run(dataset, tmp_path, method):
    from rl_laof.lam.training import train_lam

    cfg = tiny(method, steps=12, eval_every=6, checkpoint_every=4)
    full = train_lam(cfg, dataset, tmp_path / "full", progress=False)
    # a finished run keeps its last checkpoint only (what a run given more steps resumes from)
    assert [p.name for p in (tmp_path / "full" / "checkpoints").glob("step-*.pt")] == ["step-00000012.pt"]
    assert train_lam(cfg, dataset, tmp_path / "cut", progress=False, stop_after=6) == {"steps_done": 6}
    assert not (tmp_path / "cut" / "report.json").exists()
    resumed = train_lam(cfg, dataset, tmp_path / "cut", progress=False)
    a = torch.load(tmp_path / "full" / "model.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "cut" / "model.pt", weights_only=False)["model"]
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert full["history"] == resumed["history"]
    with pytest.raises(ValueError, match="another config"):
        train_lam(tiny(method, steps=12, lr=5e-4), dataset, tmp_path / "cut", progress=False)


def _cli(dataset, out, *extra, method: str = "laof-action") -> list[str]:
    laom = [a for k, v in TINY_LAOM.items() for a in ("--set", f"{k}={v}")] if method.startswith("laom") else []
    return ["-m", "rl_laof.lam", "--method", method, "--dataset", str(dataset), "--out", str(out),
            "--steps", "8", "--batch-size", "16", "--width", "8", "--labels", "0.1", "--threads", "1",
            "--set", "labelled_batch_size=8", "--set", "eval_windows=64", "--set", "mlp_probe_steps=20",
            "--set", "eval_every=4", "--no-progress", *laom, *extra]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["laof-action", "laom-action"])
def test_torchrun_two_processes_match_one(dataset, tmp_path, method):
    """In fp32: under bf16 autocast a conv's rounding depends on the batch it sees, so halves drift apart."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    fp32 = ("--set", "precision=fp32")
    one = subprocess.run([sys.executable, *_cli(dataset, tmp_path / "one", *fp32, method=method)], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          *_cli(dataset, tmp_path / "two", *fp32, method=method)], cwd=ROOT, env=env,
                         capture_output=True,
                         text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    import json

    r1 = json.loads((tmp_path / "one" / "report.json").read_text())
    r2 = json.loads((tmp_path / "two" / "report.json").read_text())
    assert r2["world_size"] == 2 and r1["world_size"] == 1
    for h1, h2 in zip(r1["history"], r2["history"], strict=True):
        assert h1["step"] == h2["step"]
        assert h2["eval/loss"] == pytest.approx(h1["eval/loss"], rel=1e-3)
    a = torch.load(tmp_path / "one" / "model.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "two" / "model.pt", weights_only=False)["model"]
    for k in a:
        if k.startswith("vq."):
            continue
        torch.testing.assert_close(b[k].float(), a[k].float(), atol=2e-4, rtol=1e-3, msg=k)
    if "vq.embed" in a:
        # the codebooks follow hard nearest-code assignments: a latent within rounding of two codes may
        # take the other one under a different float summation order, so they agree more loosely
        torch.testing.assert_close(b["vq.embed"], a["vq.embed"], atol=1e-2, rtol=0)


def test_bad_input_is_named(dataset, tmp_path):
    from rl_laof.commands.lam import main

    with pytest.raises(ValueError, match="Unknown method"):
        LAMConfig(method="lapa")
    with pytest.raises(ValueError, match="uses no labels"):
        LAMConfig(method="laof", labels=0.01)
    with pytest.raises(KeyError, match="no label split 'frac-0.05'"):
        main(_cli(dataset, tmp_path / "x")[2:] + ["--labels", "0.05"])
    with pytest.raises(ValueError, match="--set 'flow_wieght=1'"):
        main(_cli(dataset, tmp_path / "y")[2:] + ["--set", "flow_wieght=1"])


def test_a_diverging_run_stops_at_once_and_never_saves_a_non_finite_value(dataset, tmp_path):
    """lr=1e9: the first non-finite loss or gradient ends the run with one line saying what to change; every
    checkpoint left is finite, so a rerun resumes a finite state and stops the same way."""
    from conftest import assert_saved_values_finite

    from rl_laof.finite import Diverged
    from rl_laof.lam.training import train_lam

    cfg = tiny("laof", lr=1e9, steps=30, checkpoint_every=1, eval_every=30)
    for _ in range(2):
        with pytest.raises(Diverged, match=r"lam: (loss|grad norm) is (nan|inf|-inf) at step \d+; lower the "
                                           r"learning rate"):
            train_lam(cfg, dataset, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "model.pt").exists() and not (tmp_path / "run" / "report.json").exists()
    assert assert_saved_values_finite(tmp_path / "run") >= 1  # the finite steps before it were checkpointed
