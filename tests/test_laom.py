"""LAOM as its reference code (dunnolab/laom): per-image augmentation, a detached FDM input, an EMA target
encoder, the published config, the augmented action head, and exact resumption of a training run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rl_laof.lam.config import LAM_PRESETS, LAMConfig
from rl_laof.models import LAOMModel, build_lam, lam_augmentation
from rl_laof.models.augment import LAOM_COMPOSITIONS, laom_homographies
from rl_laof.presets import from_preset

# a tiny LAOM: 32 px, IMPALA width 4, a 32-d latent, heads 32 wide
SMALL = dict(width=4, latent_dim=32, head_width=32)


def small(method: str = "laom", **kw) -> LAMConfig:
    labels = {"labels": 0.1} if method.endswith("-action") else {}
    return LAMConfig(method=method, **{**SMALL, **labels, **kw})


def frames(b: int, seed: int, side: int = 32) -> torch.Tensor:
    return torch.randint(0, 256, (b, 9, side, side), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def window(b: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    return {"obs": frames(b, seed), "next_obs": frames(b, seed + 1), "future_obs": frames(b, seed + 2),
            "action": torch.randn(b, 6, generator=torch.Generator().manual_seed(seed + 3))}


def test_each_image_of_a_window_draws_its_own_augmentation():
    n = 512
    h = laom_homographies(n, torch.Generator().manual_seed(0), 64, images=3)
    assert h.shape == (n, 3, 3, 3)
    flat = h.reshape(n, 3, 9)
    # o_t, o_{t+k} and o_{t+1} of a window: the same only when both drew "nothing" (1 in 64)
    for i, j in ((0, 1), (0, 2), (1, 2)):
        same = (flat[:, i] - flat[:, j]).abs().amax(-1) < 1e-7
        assert same.float().mean() < 0.05, (i, j)
    # and samples differ from each other (all but the identities are distinct draws)
    assert len(torch.unique(flat[:, 0].round(decimals=5), dim=0)) > 0.8 * n
    # the 8 compositions, "nothing" among them: ~1/8 identities; pure shifts within +-14 px at 64 px
    ident = (h - torch.eye(3)).abs().amax((-1, -2)) < 1e-6
    assert len(LAOM_COMPOSITIONS) == 8 and 0.08 < ident.float().mean() < 0.17
    linear_part_is_eye = (h[..., :2, :2] - torch.eye(2)).abs().amax((-1, -2)) < 1e-6
    shifts = h[..., :2, 2][linear_part_is_eye & ~ident] * 63 / 2  # [-1, 1] -> px
    assert len(shifts) > 0.05 * 3 * n
    assert shifts.abs().max() <= 14 + 1e-4 and torch.allclose(shifts, shifts.round(), atol=1e-4)

    # through the model: one image repeated in every role and sample comes out warped differently
    model = build_lam(small(), 32, 6)
    same = frames(1, 7).expand(8, -1, -1, -1)
    hom = lam_augmentation(model.cfg, 32)(8, torch.Generator().manual_seed(1))
    assert hom.shape == (8, 3, 3, 3)
    o, f, nx = model.augment([same, same, same], hom)
    assert not torch.equal(o, f) and not torch.equal(o, nx) and not torch.equal(f, nx)
    assert len({tuple(o[i].flatten()[:64].tolist()) for i in range(8)}) >= 6
    # without augmentation only the pixel scaling: uint8 -> [-1, 1], as the reference's normalize_img
    plain = build_lam(small(augment=False), 32, 6)
    (x,) = plain.augment([same[:1]], None)
    assert torch.allclose(x, same[:1].float() / 127.5 - 1) and x.min() >= -1 and x.max() <= 1


def test_the_fdm_input_embedding_is_detached():
    """E learns from the FDM loss only through z: with the IDM's output cut from the graph, no gradient reaches E
    (it would through the FDM's o_t branch without the detach), while the FDM still gets one."""
    model = build_lam(small(), 32, 6)
    batch = window()

    loss, _ = model.losses(batch, None, torch.Generator().manual_seed(0))
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().max() > 0 for p in model.encoder.parameters())  # through z
    model.zero_grad(set_to_none=True)

    hook = model.idm.register_forward_hook(lambda mod, inp, out: out.detach())
    loss, _ = model.losses(batch, None, torch.Generator().manual_seed(0))
    loss.backward()
    hook.remove()
    assert all(p.grad is None or p.grad.abs().max() == 0 for p in model.encoder.parameters())
    assert all(p.grad is not None and p.grad.abs().max() > 0 for p in model.fdm.out.parameters())


def test_the_target_encoder_is_an_ema_of_the_encoder_and_gets_no_gradient():
    from rl_laof.lam.training import make_optimizer

    model = build_lam(small(), 32, 6)
    tau = model.cfg.ema_tau
    assert tau == 0.001
    for pt, p in zip(model.target_encoder.parameters(), model.encoder.parameters(), strict=True):
        assert torch.equal(pt, p) and not pt.requires_grad  # starts as a copy of E
    opt = make_optimizer(model, model.cfg)
    target_ids = {id(p) for p in model.target_encoder.parameters()}
    assert not target_ids & {id(p) for g in opt.param_groups for p in g["params"]}
    for g in opt.param_groups:
        g["lr"] = 1e-2
    loss, _ = model.losses(window(), None, torch.Generator().manual_seed(0))
    loss.backward()
    assert all(p.grad is None for p in model.target_encoder.parameters())
    before = [p.detach().clone() for p in model.target_encoder.parameters()]
    opt.step()
    model.update_target()
    moved = 0
    for old, pt, p in zip(before, model.target_encoder.parameters(), model.encoder.parameters(), strict=True):
        torch.testing.assert_close(pt, (1 - tau) * old + tau * p, atol=1e-7, rtol=1e-6)
        moved += int(not torch.equal(pt, old))
    assert moved > 0
    assert any(k.startswith("target_encoder.") for k in model.state_dict())  # checkpointed: resume is exact


def test_laom_resolves_to_the_published_setting():
    r = LAMConfig(method="laom").resolved()
    assert (r.encoder, r.optimizer, r.lr, r.weight_decay, r.grad_clip) == ("impala", "adam", 1e-4, 0.0, 0.0)
    assert (r.lr_schedule, r.lr_warmup, r.latent_dim, r.head_width) == ("warmup_linear", 0.3, 8192, 1024)
    assert (r.latent, r.fdm, r.max_offset, r.augment, r.ema_tau) == ("continuous", "latent", 10, True, 0.001)
    # warm-up from 0 over 30 % of the steps, then linearly to 0, per update
    lrs = [r.learning_rate(s) for s in range(r.steps)]
    assert lrs[0] == 0.0 and max(lrs) == pytest.approx(1e-4) and int(np.argmax(lrs)) == 300
    assert lrs[150] == pytest.approx(0.5e-4) and lrs[650] == pytest.approx(0.5e-4) and lrs[-1] < 1e-6
    assert np.all(np.diff(lrs[:301]) > 0) and np.all(np.diff(lrs[300:]) < 0)
    # LAPO / LAOF keep theirs
    for m in ("laof", "lapo"):
        d = LAMConfig(method=m).resolved()
        assert (d.encoder, d.optimizer, d.lr, d.weight_decay, d.grad_clip) == ("conv", "adamw", 3e-4, 0.01, 2.0)
        assert (d.lr_schedule, d.latent_dim, d.width, d.batch_size) == ("constant", 128, 16, 64)
        assert d.learning_rate(0) == d.learning_rate(999) == 3e-4
    # the paper preset: each method's published sizes
    p = from_preset(LAMConfig, LAM_PRESETS, "paper", method="laom-action").resolved()
    assert (p.batch_size, p.labelled_batch_size, p.width, p.steps) == (512, 128, 96, 96_680)
    q = from_preset(LAMConfig, LAM_PRESETS, "paper", method="laof").resolved()
    assert (q.batch_size, q.labelled_batch_size, q.width, q.steps) == (128, 64, 64, 50_000)
    assert isinstance(build_lam(small(), 32, 6), LAOMModel)
    for bad, match in ((dict(encoder="resnet"), "encoder='resnet': use 'conv' or 'impala'"),
                       (dict(optimizer="sgd"), "optimizer='sgd': use 'adam' or 'adamw'"),
                       (dict(lr_schedule="cosine"), "lr_schedule='cosine': use one of constant, warmup_linear"),
                       (dict(lr_warmup=1.0), r"lr_warmup=1.0: the warm-up's share of the steps, in \[0, 1\)")):
        with pytest.raises(ValueError, match=match):
            LAMConfig(method="laom", **bad)
    with pytest.raises(ValueError, match="encoder='impala' is LAOM's model"):
        LAMConfig(method="laof", encoder="impala")


def test_the_action_head_weighs_0_001_and_sees_augmented_o_t_and_o_t_plus_k():
    cfg = small("laom-action")
    assert cfg.resolved().action_weight == 0.001
    model = build_lam(cfg, 32, 6)
    assert isinstance(model.action_head, torch.nn.Linear)
    draw = lam_augmentation(model.cfg, 32)
    batch, lab = window(4, 0), window(3, 10)
    batch["homography"] = draw(4, torch.Generator().manual_seed(1))
    lab["homography"] = draw(3, torch.Generator().manual_seed(2))
    seen = []
    model.action_head.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].detach()))
    loss, m = model.losses(batch, lab)
    assert loss.item() == pytest.approx(m["fdm"] + 0.001 * m["action"], rel=1e-5)
    with torch.no_grad():
        a_obs, a_fut = model.augment([lab["obs"], lab["future_obs"]], lab["homography"][:, :2])
        expected = model.idm(torch.cat(model.embed(a_obs, a_fut), -1))
        plain = model.encode(lab["obs"], lab["future_obs"])
    torch.testing.assert_close(seen[0], expected)
    assert not torch.allclose(seen[0], plain, atol=1e-3)  # augmented, and on o_{t+k}, not o_{t+1}:
    with torch.no_grad():
        assert not torch.allclose(model.idm(torch.cat(model.embed(
            *model.augment([lab["obs"], lab["next_obs"]], lab["homography"][:, :2])), -1)), seen[0], atol=1e-3)


@pytest.mark.usefixtures("gl")
def test_laom_trains_resumes_exactly_and_loads(lam_dataset, tmp_path):
    from rl_laof.lam.training import load_lam, train_lam

    cfg = small("laom-action", batch_size=8, labelled_batch_size=4, steps=8, eval_every=4, checkpoint_every=3,
                eval_windows=32, mlp_probe_steps=5, precision="fp32")
    full = train_lam(cfg, lam_dataset, tmp_path / "full", progress=False)
    assert train_lam(cfg, lam_dataset, tmp_path / "cut", progress=False, stop_after=5) == {"steps_done": 5}
    resumed = train_lam(cfg, lam_dataset, tmp_path / "cut", progress=False)
    a = torch.load(tmp_path / "full" / "model.pt", weights_only=False)
    b = torch.load(tmp_path / "cut" / "model.pt", weights_only=False)
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert full["history"] == resumed["history"]
    h = full["history"]
    assert [r["step"] for r in h] == [0, 4, 8] and np.isfinite([r["eval/fdm"] for r in h]).all()
    assert a["config"]["optimizer"] == "adam" and a["config"]["lr_schedule"] == "warmup_linear"

    model = load_lam(tmp_path / "full")
    assert isinstance(model, LAOMModel) and not model.training
    z = model.encode(frames(2, 0), frames(2, 1))
    assert z.shape == (2, 32) and torch.isfinite(z).all()
