"""Latent policies: flow matching keeps both modes where BC averages them, the frozen policy stays frozen,
interpolation starts the ODE where LAFP's formula says, stages resume exactly, and a whole run reports."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rl_laof.imitation.config import ImitationConfig
from rl_laof.models.blocks import ConvEncoder, KeypointEncoder
from rl_laof.models.policy import ENCODERS, BCPolicy, FlowPolicy, PixelEncoder

ROOT = Path(__file__).resolve().parents[1]

# tiny networks and budgets for the 32 px test dataset
TINY = dict(width=4, features=16, hidden=32, steps=20, batch_size=8, decoder_steps=20, decoder_batch_size=8,
            idm_steps=20, eval_episodes=1, eval_seeds=1, eval_backgrounds=("train",), latency_calls=5,
            checkpoint_every=10, labels=0.1)


def _toy_encoder() -> PixelEncoder:
    return PixelEncoder(frame_stack=1, features=16, width=4, image_size=16)


def _bimodal(n: int, gen: torch.Generator) -> torch.Tensor:
    """Two modes at +-(0.8, 0.8), equally likely, with a small spread."""
    sign = torch.randint(0, 2, (n, 1), generator=gen).float() * 2 - 1
    return sign * 0.8 + 0.05 * torch.randn(n, 2, generator=gen)


def _train(policy, steps: int, gen: torch.Generator) -> None:
    opt = torch.optim.Adam(policy.parameters(), 2e-3)
    obs = torch.zeros(256, 3, 16, 16)  # one observation: the target distribution is unconditional
    for _ in range(steps):
        loss = policy.loss(obs, _bimodal(256, gen), gen)
        opt.zero_grad()
        loss.backward()
        opt.step()


def _coverage(z: torch.Tensor) -> tuple[float, float]:
    """Fractions of samples within 0.4 of each mode."""
    near = [float(((z - m).norm(dim=1) < 0.4).float().mean()) for m in (torch.tensor([0.8, 0.8]),
                                                                        torch.tensor([-0.8, -0.8]))]
    return near[0], near[1]


@pytest.mark.slow  # 9 s idle: two policies trained to convergence on a bimodal toy
def test_flow_matching_covers_both_modes_where_bc_collapses_to_the_mean():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    fm = FlowPolicy(_toy_encoder(), 2, 64, euler_steps=3, time_embed=16)
    bc = BCPolicy(_toy_encoder(), 2, 64)
    _train(fm, 1000, gen)
    _train(bc, 1000, gen)
    obs = torch.zeros(2000, 3, 16, 16)
    samples = fm.eval().act(obs, torch.Generator().manual_seed(1))
    pos, neg = _coverage(samples)
    assert pos > 0.3 and neg > 0.3 and pos + neg > 0.65, (pos, neg)
    # one Euler step is the x-prediction from pure noise: the mean again (LAFP: 1 step is clearly worse)
    one_step = fm.sample_from(fm.encoder(obs), torch.randn(2000, 2, generator=torch.Generator().manual_seed(1)),
                              steps=1)
    assert sum(_coverage(one_step)) < 0.05
    mean_pred = bc.eval().act(obs[:10])
    assert max(_coverage(mean_pred)) == 0.0  # BC predicts the average of the modes
    assert mean_pred.abs().max() < 0.3


@pytest.mark.parametrize("kind", ENCODERS)
def test_every_pixel_encoder_maps_a_frame_stack_to_bounded_features_in_fp32_and_bf16(kind):
    enc = PixelEncoder(frame_stack=3, features=32, width=8, image_size=64, kind=kind)
    x = torch.randint(0, 256, (2, 9, 64, 64), dtype=torch.uint8)
    y = enc(x)
    assert y.shape == (2, 32) and torch.isfinite(y).all() and y.abs().max() <= 1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.isfinite(enc(x).float()).all()


def test_the_conv_encoder_runs_channels_last_and_computes_the_nchw_function():
    """The halving encoder converts its input to channels-last (the faster layout on CPU) but keeps its weights
    contiguous, so inits that view weights flat (SB3's orthogonal init) still work, and its output is the
    plain NCHW computation's up to float rounding, whatever layout comes in."""
    torch.manual_seed(0)
    enc = ConvEncoder(9, 32, 8, 64)
    assert all(p.is_contiguous() for p in enc.parameters())
    for p in enc.parameters():
        if p.dim() >= 2:
            torch.nn.init.orthogonal_(p)
    x = torch.rand(4, 9, 64, 64)
    plain = enc.head(enc.convs(x))  # the NCHW path
    for inp in (x, x.contiguous(memory_format=torch.channels_last)):
        torch.testing.assert_close(enc(inp), plain, rtol=1e-4, atol=1e-5)


def test_keypoint_encoder_places_each_point_at_its_heat_maps_peak():
    enc = KeypointEncoder(cin=3, out_dim=4, width=8, image_size=64, keypoints=2)
    enc.convs = torch.nn.Identity()  # the input is the heat maps themselves (2 maps on the 16x16 grid)
    maps = torch.full((1, 2, 16, 16), -1e4)
    maps[0, 0, 3, 12] = 0.0  # row 3, column 12
    maps[0, 1, 15, 0] = 0.0  # bottom-left corner
    cell = 2 / 15
    expected = torch.tensor([[[-1 + 12 * cell, -1 + 3 * cell], [-1.0, 1.0]]])
    assert torch.allclose(enc.positions(maps), expected, atol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # positions stay fp32 under autocast
        assert torch.allclose(enc.positions(maps), expected, atol=1e-5)


def test_keypoint_encoder_refuses_frames_it_cannot_quarter_before_anything_is_written():
    from types import SimpleNamespace

    from rl_laof.imitation.training import check_inputs

    with pytest.raises(ValueError, match="multiple of 4"):
        KeypointEncoder(cin=3, out_dim=4, width=8, image_size=30)
    ds = SimpleNamespace(path="d.h5", image_shape=(3, 30, 30), label_mask=lambda split, name: None)
    with pytest.raises(ValueError, match="encoder=halving"):
        check_inputs(ImitationConfig(latent="none", encoder="keypoints"), ds)
    check_inputs(ImitationConfig(latent="none"), ds)  # the check is the keypoint encoder's only


def test_latent_pca_recovers_the_data_directions_and_spread():
    from rl_laof.models.policy import LatentPCA

    gen = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(16, 16, generator=gen))
    spread = torch.tensor([3.0, 2.0, 1.0] + [0.1] * 13)
    z = (torch.randn(20_000, 16, generator=gen) * spread) @ q.T + 5.0
    pca = LatentPCA.fit(z, 3)
    assert torch.allclose(pca.std, spread[:3], rtol=0.03)
    assert torch.allclose((pca.components @ q[:, :3]).abs(), torch.eye(3), atol=0.02)  # up to sign
    share = (spread[:3] ** 2).sum() / (spread ** 2).sum()
    assert abs(float(pca.explained.sum()) - float(share)) < 0.01
    u = torch.randn(5, 3, generator=gen)
    torch.testing.assert_close(pca.coords(pca.mean + pca.offset(u)), u, atol=1e-4, rtol=0)
    two = pca.leading(2)
    assert two.k == 2 and torch.equal(two.components, pca.components[:2])
    with pytest.raises(ValueError, match="1..16"):
        LatentPCA.fit(z, 17)


def test_sampler_steps_land_on_the_x_prediction():
    """z += (x - z) / (K - k) is Euler on v = (x - z) / (1 - tau) over an even grid: the last step returns x."""
    fm = FlowPolicy(_toy_encoder(), 2, 32, euler_steps=3, time_embed=16).eval()
    feats = torch.randn(5, 16)
    z0 = torch.randn(5, 2)
    seen = []
    orig = fm.predict_x
    fm.predict_x = lambda f, z, t: seen.append((z.clone(), t.clone())) or orig(f, z, t)
    out = fm.sample_from(feats, z0, 0.0)
    assert [float(t[0]) for _, t in seen] == pytest.approx([0.0, 1 / 3, 2 / 3])
    torch.testing.assert_close(seen[0][0], z0)
    # explicit Euler on the velocity v = (x - z) / (1 - tau), dt = 1/3
    z = z0
    for k in range(3):
        t = torch.full((5, 1), k / 3)
        z = z + (1 / 3) * (orig(feats, z, t) - z) / (1 - t)
    torch.testing.assert_close(out, z, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out, orig(feats, seen[-1][0], seen[-1][1]))  # the last x-prediction


@pytest.mark.parametrize("fixed_tau", [None, 0.4])
def test_interpolation_starts_the_ode_at_the_formula(fixed_tau):
    from rl_laof.imitation.training import decoder_inputs

    cfg = ImitationConfig(latent="laof", policy="lafp", decoder="interp", interp_tau=fixed_tau)
    fm = FlowPolicy(_toy_encoder(), 2, 32, euler_steps=3, time_embed=16).eval()
    feats, z_t = torch.randn(6, 16), torch.randn(6, 2)
    first = []
    orig = fm.predict_x
    fm.predict_x = lambda f, z, t: (first.append((z.clone(), t.clone())) if not first else None) or orig(f, z, t)
    decoder_inputs(cfg, "interp", fm, feats, z_t, torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)  # the same draws, in the same order: z0, then tau_i
    z0 = torch.randn(6, 2, generator=g)
    tau = torch.full((6,), fixed_tau) if fixed_tau is not None else torch.rand(6, generator=g)
    z_start, t_start = first[0]
    torch.testing.assert_close(z_start, (1 - tau[:, None]) * z0 + tau[:, None] * z_t)
    torch.testing.assert_close(t_start[:, 0], tau)
    # deployment: pure noise at tau = 0
    first.clear()
    fm.act(torch.zeros(6, 3, 16, 16), torch.Generator().manual_seed(4))
    torch.testing.assert_close(first[0][0], torch.randn(6, 2, generator=torch.Generator().manual_seed(4)))
    assert float(first[0][1].abs().max()) == 0.0


def test_the_cosine_schedule_decays_from_lr_to_zero_and_never_below():
    from rl_laof.fit import scheduled_lr

    lrs = [scheduled_lr(1e-3, "cosine", s, 100) for s in range(0, 120)]  # past the end too
    assert lrs[0] == 1e-3 and lrs[50] == pytest.approx(5e-4) and lrs[100] == pytest.approx(0.0)
    assert all(b <= a for a, b in zip(lrs, lrs[1:], strict=False)) and min(lrs) >= 0.0
    assert scheduled_lr(1e-3, "constant", 99, 100) == 1e-3
    with pytest.raises(ValueError, match="Unknown learning-rate schedule 'linear'"):
        scheduled_lr(1e-3, "linear", 0, 100)
    with pytest.raises(ValueError, match="lr_schedule='linear'"):
        ImitationConfig(lr_schedule="linear")


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_a_stage_killed_midway_resumes_to_the_same_weights(tmp_path, schedule):
    from rl_laof.fit import fit

    def make():
        torch.manual_seed(0)
        return torch.nn.Linear(4, 2)

    def loss_fn(module, kill_at=None):
        calls = [0]

        def f(rng, gen):
            calls[0] += 1
            if kill_at is not None and calls[0] == kill_at:
                raise KeyboardInterrupt
            x = torch.from_numpy(rng.normal(size=(8, 4)).astype(np.float32)) + torch.randn(8, 4, generator=gen)
            return ((module(x) - 1) ** 2).mean()
        return f

    ref = make()
    fit("stage", ref, loss_fn(ref), 25, 1e-2, 0.0, 1.0, tmp_path / "a", 7, checkpoint_every=10, progress=False,
        schedule=schedule)
    (tmp_path / "b").mkdir()
    (tmp_path / "a").mkdir(exist_ok=True)
    m = make()
    with pytest.raises(KeyboardInterrupt):
        fit("stage", m, loss_fn(m, kill_at=17), 25, 1e-2, 0.0, 1.0, tmp_path / "b", 7, checkpoint_every=10,
            progress=False, schedule=schedule)
    assert (tmp_path / "b" / "checkpoints" / "stage.pt").exists()
    m2 = make()
    hist = fit("stage", m2, loss_fn(m2), 25, 1e-2, 0.0, 1.0, tmp_path / "b", 7, checkpoint_every=10, progress=False,
               schedule=schedule)
    for p, q in zip(ref.parameters(), m2.parameters(), strict=True):
        assert torch.equal(p, q)
    if schedule == "cosine":  # the schedule acts: the same data at a constant rate ends elsewhere
        const = make()
        fit("stage", const, loss_fn(const), 25, 1e-2, 0.0, 1.0, tmp_path / "c", 7, checkpoint_every=10,
            progress=False)
        assert not torch.equal(const.weight, m2.weight)
    assert [h["step"] for h in hist] == [25]
    assert not (tmp_path / "b" / "checkpoints" / "stage.pt").exists()


@pytest.mark.usefixtures("gl")
def test_decoder_training_leaves_the_policy_frozen(lam_dataset, tmp_path):
    from rl_laof.data.dataset import VideoDataset
    from rl_laof.imitation.policy import make_policy
    from rl_laof.imitation.training import Transitions, train_decoder
    from rl_laof.models.policy import ActionDecoder

    ds = VideoDataset(lam_dataset)
    for policy_type, mode in (("lafp", "interp"), ("lafp", "sample"), ("bc", "sample")):
        cfg = ImitationConfig(latent="laof", policy=policy_type, decoder=mode, **TINY)
        data = Transitions(ds, cfg)
        policy = make_policy(cfg, 8, 32)
        before = {k: v.clone() for k, v in policy.state_dict().items()}
        decoder = ActionDecoder(8, ds.action_dim, 16)
        dec_before = [p.clone() for p in decoder.parameters()]
        z = torch.randn(data.n, 8)
        train_decoder(cfg, policy, decoder, data, z, tmp_path / f"{policy_type}-{mode}", progress=False)
        after = policy.state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before), (policy_type, mode)
        assert any(not torch.equal(a, b) for a, b in zip(dec_before, decoder.parameters(), strict=True))


@pytest.mark.slow
@pytest.mark.usefixtures("gl")
def test_imitation_runs_report_returns_normalised_by_bc_on_all_labels(lam_dataset, tmp_path, monkeypatch):
    from rl_laof.imitation.training import imitate
    from rl_laof.lam.config import LAMConfig
    from rl_laof.lam.training import train_lam

    monkeypatch.setenv("RL_LAOF_RUNS", str(tmp_path / "runs"))
    lam = train_lam(LAMConfig(method="laof", width=8, batch_size=16, steps=10, eval_every=10, eval_windows=32,
                              mlp_probe_steps=10), lam_dataset, tmp_path / "lam", progress=False)
    cfg = ImitationConfig(latent="laof", policy="lafp", lam_run=lam["run_dir"], **TINY)
    report = imitate(cfg, lam_dataset, tmp_path / "lafp", progress=False)
    assert report["labelled_transitions"] == 12 and report["train_transitions"] == 120
    r = report["returns"]["train"]
    assert r["episodes"] == 1 and np.isfinite(r["mean"])
    assert np.shape(r["episode_returns"]) == (1, 1) and r["episode_returns"][0][0] == pytest.approx(r["mean"], abs=0.06)
    ref = json.loads((Path(report["reference_run"]) / "report.json").read_text())
    assert ref["tag"] == "bc-all" and ref["labelled_transitions"] == 120
    assert report["normalised"]["train"]["mean"] == pytest.approx(r["mean"] / ref["returns"]["train"]["mean"])
    assert report["ms_per_action"] > 0 and (tmp_path / "lafp" / "returns.png").exists()
    assert [h["step"] for h in report["stages"]["decoder"]] == [20] and report["decoder_mode"] == "interp"
    # a run recorded before configs named their decoder mode (decoder None then meant interp for lafp) is this run
    for name in ("config.json", "report.json"):
        path = tmp_path / "lafp" / name
        record = json.loads(path.read_text())
        path.write_text(json.dumps({**record, "config": {**record["config"], "decoder": None}}))
    assert imitate(cfg, lam_dataset, tmp_path / "lafp", progress=False)["returns"] == report["returns"]
    # an evaluation-only change re-evaluates the finished run on its trained policy and decoder
    again = imitate(dataclasses.replace(cfg, eval_episodes=2), lam_dataset, tmp_path / "lafp", progress=False)
    assert again["returns"]["train"]["episodes"] == 2 and again["stages"]["policy"] == report["stages"]["policy"]
    # the IDM baseline relabels every transition
    idm = imitate(ImitationConfig(latent="none", relabel="idm", normalise=False, **TINY), lam_dataset,
                  tmp_path / "idm", progress=False)
    assert idm["train_transitions"] == 120 and "decoder" not in idm["stages"]


@pytest.mark.slow
@pytest.mark.usefixtures("gl")
def test_decoder_val_keeps_the_mode_that_returns_most_on_the_val_episodes(lam_dataset, tmp_path, monkeypatch):
    from rl_laof.imitation import training
    from rl_laof.imitation.policy import load_latent_policy

    monkeypatch.setenv("RL_LAOF_RUNS", str(tmp_path / "runs"))
    seen: list[tuple] = []
    real = training.policy_returns

    def returns(act, *args, backgrounds, **kw):  # the val episodes score the sample decoder above the idm one
        seen.append(tuple(backgrounds))
        if tuple(backgrounds) != ("val",):
            return real(act, *args, backgrounds=backgrounds, **kw)
        out = real(act, *args, backgrounds=backgrounds, **kw)
        out["val"]["mean"] = 1000.0 if len(seen) == 2 else -1000.0
        return out

    monkeypatch.setattr(training, "policy_returns", returns)
    lam = tmp_path / "lam"
    from rl_laof.lam.config import LAMConfig
    from rl_laof.lam.training import train_lam
    train_lam(LAMConfig(method="laof", width=8, batch_size=16, steps=10, eval_every=10, eval_windows=32,
                        mlp_probe_steps=10), lam_dataset, lam, progress=False)
    cfg = ImitationConfig(latent="laof", policy="bc", lam_run=str(lam), normalise=False, **TINY)
    assert cfg.resolved_decoder == "val" and cfg.decoder_candidates == ("idm", "sample")
    report = training.imitate(cfg, lam_dataset, tmp_path / "bc", progress=False)
    assert seen[:2] == [("val",), ("val",)] and "val" not in seen[2]  # the choice first, then the reported sets
    assert report["decoder_mode"] == "sample" and report["stages"]["decoder_val_returns"] == {"idm": -1000.0,
                                                                                           "sample": 1000.0}
    assert set(report["stages"]["decoder_histories"]) == {"idm", "sample"}
    agent, _ = load_latent_policy(report["run_dir"])  # the saved decoder is the chosen one
    chosen = training.load_torch(tmp_path / "bc" / "decoder-sample.pt")["model"]
    assert all(torch.equal(v, agent.decoder.state_dict()[k]) for k, v in chosen.items())


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (["--latent", "none", "--policy", "lafp"], "use --policy bc"),
    (["--latent", "laof", "--decoder", "interp"], "needs --policy lafp"),
    (["--latent", "laof", "--relabel", "idm"], "use it with --latent none"),
    (["--latent", "laof", "--policy", "lafp", "--interp-tau", "1.5"], "interp_tau=1.5"),
    (["--labels", "0"], "labels=0.0"),
    (["--set", "bogus=1"], "ImitationConfig field"),
    (["--dataset", "/nonexistent/ds"], "nonexistent"),
])
def test_bad_flags_give_clear_errors(args, message, tmp_path):
    env = {**os.environ, "RL_LAOF_RUNS": str(tmp_path / "runs")}  # the user's own runs must not change the answer
    proc = subprocess.run([sys.executable, "-m", "rl_laof.imitation", "--no-progress", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_a_diverging_stage_stops_at_once_and_never_saves_a_non_finite_value(lam_dataset, tmp_path):
    from conftest import assert_saved_values_finite

    from rl_laof.finite import Diverged
    from rl_laof.imitation.training import imitate

    cfg = ImitationConfig(latent="none", normalise=False, **{**TINY, "lr": 1e9, "checkpoint_every": 1})
    with pytest.raises(Diverged, match=r"policy: (loss|grad norm) is (nan|inf|-inf) at step \d+; lower the "
                                       r"learning rate \(it is 1e\+09\)"):
        imitate(cfg, lam_dataset, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "policy.pt").exists()
    assert_saved_values_finite(tmp_path / "run")
