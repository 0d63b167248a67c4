"""Experts: algorithm lookup, training that resumes after a kill, and agreement across backends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from agents.algorithms import resolve_algorithm
from agents.config import EXPERT_PRESETS, ExpertConfig
from agents.expert import Expert, train_expert
from agents.expert import evaluate_expert as evaluate
from rl_laof.presets import from_preset

ROOT = Path(__file__).resolve().parents[1]


def test_algorithms_and_bad_input():
    import sb3_contrib
    import stable_baselines3

    assert resolve_algorithm("PPO") is stable_baselines3.PPO
    assert resolve_algorithm("sac") is stable_baselines3.SAC
    assert resolve_algorithm("tqc") is sb3_contrib.TQC
    with pytest.raises(ValueError, match="discrete actions only"):
        resolve_algorithm("dqn")
    with pytest.raises(ValueError, match="Unknown algorithm 'ppp'.*ppo"):
        resolve_algorithm("ppp")
    with pytest.raises(ValueError, match="Unknown preset"):
        from_preset(ExpertConfig, EXPERT_PRESETS, "huge")
    with pytest.raises(TypeError, match="no field"):
        from_preset(ExpertConfig, EXPERT_PRESETS, "quick", episodes=3)
    assert ExpertConfig(algo="sac").num_envs == 4 and ExpertConfig().num_envs == 64
    assert ExpertConfig(algo="sac").resolved_normalize_reward is False


def expert_cmd(out: Path) -> list[str]:
    return [sys.executable, "-m", "rl_laof.expert", "--task", "cheetah-run", "--steps", "196608",
            "--checkpoint-every", "32768", "--eval-every", "65536", "--eval-episodes", "4",
            "--final-eval-episodes", "24", "--no-progress", "--out", str(out)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, request):
    """A small PPO expert, killed mid-training and resumed."""
    request.getfixturevalue("gl")
    out = tmp_path_factory.mktemp("expert") / "run"
    proc = subprocess.Popen(expert_cmd(out), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    latest = out / "checkpoints" / "latest.json"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not latest.exists():
        time.sleep(0.1)
    assert proc.poll() is None, "training finished (or crashed) before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = json.loads(latest.read_text())["step"]
    r = subprocess.run(expert_cmd(out), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return out, killed_at, r


@pytest.mark.slow
def test_expert_resumes_after_a_kill(trained):
    out, killed_at, r = trained
    assert 0 < killed_at < 196608
    assert f"from step {killed_at}" in r.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["steps"] >= 196608
    assert report["steps"] - killed_at < 196608  # it continued, it did not start over
    steps = [h["step"] for h in report["eval_history"]]
    assert steps == sorted(steps) and steps[-1] == report["steps"]
    assert (out / "learning_curve.png").exists() and list((out / "tb").rglob("events.*"))
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["reference_ppo_8M"] == [433, 83]
    # it learned something: far above the random policy's ~5
    assert report["best"]["envpool"]["mean"] > 50


@pytest.mark.slow
def test_expert_earns_the_same_on_both_backends(trained):
    out, _, _ = trained
    report = json.loads((out / "report.json").read_text())
    for which in ("final", "best"):  # independent episodes: equal means within noise
        ep, dm = report[which]["envpool"], report[which]["dm_control"]
        se = np.hypot(ep["stderr"], dm["stderr"])
        assert abs(ep["mean"] - dm["mean"]) < 3.5 * se + 5, (which, ep["mean"], dm["mean"], se)


@pytest.mark.slow
def test_same_start_same_rewards_on_both_backends(trained):
    """From one initial state (EnvPool's, copied into dm_control) the expert's rewards match step for step."""
    from envs import get_task
    from envs.simulators import DMControlSimulator, EnvpoolSimulator

    expert = Expert.load(trained[0], "best")
    task = get_task("cheetah-run")
    for seed in (0, 1):
        ep = EnvpoolSimulator(task, 1, False, 64, 1, seed)
        dm = DMControlSimulator(task, 1, False, 64, 1, 0)
        b = ep.reset(np.arange(1))
        dm.reset(np.arange(1))
        physics = dm.envs[0].physics
        with physics.reset_context():  # cheetah's state obs is qpos without root x, and qvel
            physics.data.qpos[:] = np.r_[0.0, b.state["position"][0]]
            physics.data.qvel[:] = b.state["velocity"][0]
        s_ep = s_dm = np.r_[b.state["position"][0], b.state["velocity"][0]][None]
        r_ep, r_dm = [], []
        for _ in range(150):
            be, re, _, _ = ep.step(expert.act(s_ep))
            bd, rd, _, _ = dm.step(expert.act(s_dm))
            s_ep = np.r_[be.state["position"][0], be.state["velocity"][0]][None]
            s_dm = np.r_[bd.state["position"][0], bd.state["velocity"][0]][None]
            r_ep.append(re[0])
            r_dm.append(rd[0])
        ep.close()
        dm.close()
        np.testing.assert_allclose(r_ep, r_dm, atol=1e-6)
        assert sum(r_ep) > 1.0  # the expert moves


def test_evaluate_counts_one_episode_per_env(gl):
    res = evaluate(lambda obs, det: np.zeros((len(obs), 6), np.float32), "cheetah-run", 3, seed=0,
                   backend="dm_control")
    assert res["episodes"] == 3 and len(res["returns"]) == 3 and res["mean"] >= 0


def test_a_diverging_expert_stops_with_one_line_and_never_saves_a_non_finite_policy(tmp_path, gl):
    from conftest import assert_saved_values_finite

    from rl_laof.finite import Diverged

    cfg = ExpertConfig(total_steps=4096, num_envs=4, eval_every=256, checkpoint_every=256, eval_episodes=1,
                       final_eval_episodes=1, algo_kwargs={"learning_rate": 1e9, "n_steps": 64, "batch_size": 64})
    with pytest.raises(Diverged, match=r"expert: .* at step \d+.*lower the learning rate") as err:
        train_expert(cfg, tmp_path / "run", progress=False)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "run" / "final").exists()
    assert_saved_values_finite(tmp_path / "run")
