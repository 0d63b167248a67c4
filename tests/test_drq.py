"""DrQ-v2 (``--algo drq``): the random shift moves each image by its own offset (and is the reference's bilinear
grid sample at pixel centres), n-step targets stop at episode ends, the replay buffer gives back the stacks the
env observed, a short run trains and reports, and a resumed run is the uninterrupted one."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import assert_saved_values_finite

from agents.config import DrQConfig, TrainConfig
from agents.drq_replay import FrameReplay
from rl_laof.models.drq import random_shift

# 2 envs of 32-px frames at action repeat 8 (125-step episodes), tiny networks, 100 random steps before updates
TINY_DRQ = dict(algo="drq", latent="none", num_envs=2, image_size=32, action_repeat=8, distractors="hard",
                eval_every=200, checkpoint_every=200, eval_episodes=1, final_eval_episodes=1, threads=1,
                drq=dict(batch_size=16, channels=8, feature_dim=16, hidden=32, seed_frames=800,
                         update_every_frames=32))


@pytest.fixture
def one_thread():
    """Tiny networks run fastest on one thread (the loaded test machine's second one only spins); restored after."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def reference_shift(x: torch.Tensor, shifts: torch.Tensor, pad: int) -> torch.Tensor:
    """DrQ-v2's RandomShiftsAug with given per-sample shifts (n, 2) in 0..2 pad: replicate padding, a grid on the
    padded image's pixel centres, bilinear grid_sample."""
    n, _, h, _ = x.shape
    x = F.pad(x, (pad,) * 4, "replicate")
    eps = 1.0 / (h + 2 * pad)
    arange = torch.linspace(-1.0 + eps, 1.0 - eps, h + 2 * pad)[:h]
    arange = arange.unsqueeze(0).repeat(h, 1).unsqueeze(2)
    base = torch.cat([arange, arange.transpose(1, 0)], dim=2).unsqueeze(0).repeat(n, 1, 1, 1)
    grid = base + shifts.view(n, 1, 1, 2).float() * 2.0 / (h + 2 * pad)
    return F.grid_sample(x, grid, padding_mode="zeros", align_corners=False)


def test_the_random_shift_moves_the_image_by_its_own_offset_per_sample_as_the_reference_does():
    image = torch.randint(0, 256, (1, 9, 20, 20), dtype=torch.uint8)
    batch = image.expand(64, -1, -1, -1).contiguous()
    out = random_shift(batch, 4, torch.Generator().manual_seed(0))
    assert out.dtype == torch.uint8 and out.shape == batch.shape
    moved = (out != batch).flatten(1).any(1)
    assert moved.float().mean() > 0.9  # 1 in 81 offsets is (0, 0)
    assert len({o.numpy().tobytes() for o in out}) > 30  # each sample its own offset (81 possible)
    # every frame of a sample moves with it: the same offset for all 9 channels
    offsets = torch.randint(0, 9, (64, 2), generator=torch.Generator().manual_seed(0)) - 4
    for i in range(8):
        dx, dy = offsets[i].tolist()
        rows = np.clip(np.arange(20) + dy, 0, 19)
        cols = np.clip(np.arange(20) + dx, 0, 19)
        assert torch.equal(out[i], batch[i][:, rows][:, :, cols])
    # the reference's bilinear grid sample on pixel centres is the same integer shift, borders replicated
    ref = reference_shift(batch.float(), offsets + 4, 4)
    assert torch.allclose(ref, out.float(), atol=1e-3)


def _ids(stack: np.ndarray) -> list[int]:
    """The slot ids of a stack of the test's frames (each frame is filled with its slot's id)."""
    return [int(stack[3 * j, 0, 0]) for j in range(len(stack) // 3)]


def test_n_step_targets_stop_at_episode_ends_and_bootstrap_only_from_non_terminal_ones():
    """One env: an episode of 5 steps ended by the time limit, one of 4 ended in a terminal state, one of 2 steps
    under way. Every frame holds its slot's id and every reward 10 x the id of the slot it leaves."""
    buf = FrameReplay(1, 100, (3, 2, 2), 1, frame_stack=3)
    gamma, n = 0.5, 3
    frame = lambda i: np.full((1, 3, 2, 2), i, np.uint8)  # noqa: E731
    slot = 0
    buf.start(frame(slot))
    for length, terminal in ((5, False), (4, True), (2, None)):
        for t in range(length):
            done = t == length - 1 and terminal is not None
            buf.step(np.zeros((1, 1)), np.array([10.0 * slot]), frame(slot + 1), np.array([done]),
                     np.array([bool(terminal)]), frame(slot + 2) if done else None)
            slot += 1 + done
    # slots: 0-5 episode 1 (5 its end), 6-10 episode 2 (10 terminal), 11-13 under way
    batch = buf.sample(4000, n, gamma, np.random.default_rng(0))
    starts = {}
    for obs, r, disc, nxt in zip(batch["obs"], batch["reward"], batch["discount"], batch["next_obs"], strict=True):
        p, q = _ids(obs)[-1], _ids(nxt)[-1]
        starts[p] = (q, float(r), float(disc), _ids(obs), _ids(nxt))
    # never from an episode's last slot, never with n steps not yet written (11: 13 is the newest, no action yet)
    assert sorted(starts) == [0, 1, 2, 3, 4, 6, 7, 8, 9]
    episode_end = {p: 5 if p <= 5 else 10 for p in starts}
    for p, (q, r, disc, obs_ids, next_ids) in starts.items():
        assert q == min(p + n, episode_end[p])  # the horizon, or the episode's last observation
        steps = q - p
        assert r == pytest.approx(sum(gamma ** j * 10 * (p + j) for j in range(steps)))
        assert disc == pytest.approx(0.0 if q == 10 else gamma ** steps)  # no bootstrap from the terminal state
        first = 0 if p <= 5 else 6  # stacks repeat the episode's first frame, never the one before
        assert obs_ids == [max(p - 2, first), max(p - 1, first), p]
        assert next_ids == [max(q - 2, first), max(q - 1, first), q]


def _tiny_model(cfg: TrainConfig, venv):
    from agents.drq import DrQ

    return DrQ(cfg, venv.observation_space, venv.action_space)


@pytest.mark.slow  # 14 s idle: hundreds of env steps through the replay buffer
def test_the_buffer_gives_back_the_stacks_the_env_observed(one_thread):
    """300 random steps of 2 pixel envs (125-step episodes, so two episode ends each) stored through DrQ.observe:
    every kept slot's stack is the env's observation there, the last ones of episodes their terminal observation,
    in a buffer that keeps everything and in a ring of 100 slots per env that has wrapped."""
    from agents.training import make_env

    cfg = TrainConfig(**TINY_DRQ)
    venv = make_env(cfg, cfg.num_envs, 0)
    full = _tiny_model(cfg, venv)
    ring = _tiny_model(dataclasses.replace(cfg, drq=dataclasses.replace(cfg.drq, buffer_size=200)), venv)
    seen: list[list[np.ndarray]] = [[], []]  # per env, the observation at every slot
    try:
        obs = venv.reset()
        rng = np.random.default_rng(0)
        for model in (full, ring):
            model.buffer.start(obs[:, -3:])
        for e in range(2):
            seen[e].append(obs[e].copy())
        for _ in range(300):
            actions = rng.uniform(-1, 1, (2, *venv.action_space.shape)).astype(np.float32)
            obs, rewards, dones, infos = venv.step(actions)
            for model in (full, ring):
                model.observe(actions, rewards, obs, dones, infos)
            for e in range(2):
                if dones[e]:
                    seen[e].append(infos[e]["terminal_observation"].copy())
                seen[e].append(obs[e].copy())
    finally:
        venv.close()
    assert all(len(s) == 303 for s in seen) and full.buffer.count.tolist() == [303, 303]
    for e in range(2):
        pos = np.arange(303)
        assert np.array_equal(full.buffer.stacks(np.full(303, e), pos), np.stack(seen[e]))
    assert ring.buffer.cap == 100
    envs, starts, n_eff = ring.buffer.draw(500, 3, np.random.default_rng(1))
    assert starts.min() >= 203  # only what the ring still holds
    for e, p, k in zip(envs, starts, n_eff, strict=True):
        assert np.array_equal(ring.buffer.stacks(np.array([e]), np.array([p]))[0], seen[e][p])
        assert np.array_equal(ring.buffer.stacks(np.array([e]), np.array([p + k]))[0], seen[e][p + k])


def test_drq_refuses_a_latent_other_than_none_and_takes_its_settings_over_the_preset():
    with pytest.raises(ValueError, match="--latent none"):
        TrainConfig(algo="drq", latent="laof")
    with pytest.raises(ValueError, match="pixels"):
        TrainConfig(algo="drq", latent="none", obs="state")
    with pytest.raises(ValueError, match="drq=lr"):
        TrainConfig(algo="drq", latent="none", learning_rate=1e-3)
    with pytest.raises(ValueError, match="--algo drq only"):
        TrainConfig(algo="ppo", latent="none", drq={"lr": 1e-3})
    assert TrainConfig(latent="none").drq is None  # other algorithms' configs (and run folders) are unchanged
    paper = TrainConfig(algo="drq", latent="none", preset="paper", drq="lr=3e-4")
    assert (paper.drq.lr, paper.drq.batch_size, paper.drq.hidden) == (3e-4, 256, 1024)
    assert TrainConfig(algo="drq", latent="none").drq == DrQConfig()
    saved = TrainConfig(**TrainConfig(algo="drq", latent="none", drq='{"batch_size": 32}').to_dict())
    assert saved.drq.batch_size == 32 and saved.tag == "drq-none-pixels-quick-s0"


@pytest.mark.slow
def test_a_short_drq_run_trains_and_writes_the_report_of_a_ppo_run(tmp_path, one_thread):
    from agents.replay import evaluate_run
    from agents.training import train
    from rl_laof.runs import read_json

    cfg = TrainConfig(**TINY_DRQ, total_steps=400)
    report = train(cfg, tmp_path / "run", progress=False)
    assert report["steps"] == 400 and report["algo"] == "drq" and report["steps_per_s"] > 0
    assert [h["step"] for h in report["eval_history"]] == [0, 200, 400]
    assert np.isfinite(report["final"]["mean"]) and report["final"]["episodes"] == 1
    # (400 steps x 8 frames - 800 seed frames) / 32 frames per update
    # each env: its first frame, 200 steps, one more first frame after its episode ended at step 125
    assert report["drq"]["updates"] == 75 and report["drq"]["replay_frames"] == 2 * (1 + 200 + 1)
    assert 0.0 <= report["drq"]["actor_saturation"] <= 1.0  # the saturation diagnostic (docs/train.md, DrQ-v2)
    for name in ("config.json", "eval.json", "report.json", "learning_curve.png", "final_model.pt",
                 "best_model.pt", "checkpoints/latest.json"):
        assert (tmp_path / "run" / name).exists(), name
    assert any((tmp_path / "run" / "tb").rglob("events.out.tfevents.*"))
    assert assert_saved_values_finite(tmp_path / "run") >= 4
    assert read_json(tmp_path / "run" / "config.json")["config"]["drq"]["batch_size"] == 16
    assert train(cfg, tmp_path / "run", progress=False) == read_json(tmp_path / "run" / "report.json")  # finished
    replay = evaluate_run(tmp_path / "run", episodes=1)  # python -m rl_laof.evaluate: final_model.pt, a video
    assert np.isfinite(replay["mean"]) and (tmp_path / "run" / "replay.gif").exists()


@pytest.mark.slow
def test_a_resumed_drq_run_is_the_uninterrupted_one(tmp_path, one_thread):
    """Stopped after its envs' first episodes ended (step 300: 150 steps per env, 25 into the second episode) and
    resumed: networks, optimisers, generators, replay buffer and envs restored, so every evaluation, the final
    return, every weight and the buffer equal the uninterrupted run's."""
    from agents.training import train
    from rl_laof.runs import load_torch, read_json

    cfg = TrainConfig(**TINY_DRQ, total_steps=400)
    full = train(cfg, tmp_path / "full", progress=False)
    assert train(cfg, tmp_path / "cut", progress=False, stop_at=300)["checkpoint_step"] == 300
    ckpt = tmp_path / "cut" / "checkpoints" / read_json(tmp_path / "cut" / "checkpoints" / "latest.json")["dir"]
    state = load_torch(ckpt / "drq.pt")
    assert state["envs"]["start"]["resets"].tolist() == [2, 2] and len(state["envs"]["actions"]) == 25
    assert state["model"]["updates"] == (300 * 8 - 800) // 32
    resumed = train(cfg, tmp_path / "cut", resume=True, progress=False)
    evals = [(h["step"], h["mean"], h["std"]) for h in resumed["eval_history"]]
    assert evals == [(h["step"], h["mean"], h["std"]) for h in full["eval_history"]]
    assert resumed["final"]["returns"] == full["final"]["returns"]
    assert resumed["drq"] == full["drq"]

    def final(run):
        folder = tmp_path / run / "checkpoints" / read_json(tmp_path / run / "checkpoints" / "latest.json")["dir"]
        return load_torch(folder / "drq.pt")["model"], load_torch(folder / "replay.pt")

    (a, ra), (b, rb) = final("full"), final("cut")
    for net in ("policy", "critic", "critic_target"):
        assert all(torch.equal(a[net][k], b[net][k]) for k in a[net]), net
    assert a["rng"] == b["rng"] and torch.equal(a["generator"], b["generator"])
    assert all(np.array_equal(np.asarray(ra[k]), np.asarray(rb[k])) for k in ra if k != "cap")


def test_a_drq_run_folder_ignores_the_ppo_fields_drq_does_not_read(tmp_path):
    """A DrQ run recorded when PPO's defaults were other is the same run (it resumes); a change DrQ reads is not."""
    import json

    from agents.training import open_run

    cfg = TrainConfig(**TINY_DRQ)
    then = {**cfg.to_dict(), "log_std_init": -1.0, "n_epochs": 4, "batch_size": 256}
    (tmp_path / "config.json").write_text(json.dumps({"config": then}))
    assert open_run(cfg, tmp_path).recorded["config"]["n_epochs"] == 4
    other = dataclasses.replace(cfg, drq=dataclasses.replace(cfg.drq, batch_size=32))
    with pytest.raises(ValueError, match=r"another config \(differs in \['drq'\]\)"):
        open_run(other, tmp_path)
    ppo = TrainConfig(latent="none", num_envs=2)
    (tmp_path / "config.json").write_text(json.dumps({"config": {**ppo.to_dict(), "n_epochs": 4}}))
    with pytest.raises(ValueError, match=r"differs in \['n_epochs'\]"):  # PPO reads them: another run
        open_run(ppo, tmp_path)
