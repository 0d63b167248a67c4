"""The main job: the latent action space decodes exactly what the decoder gives within its bounds, the agent
starts from the latent policy, a resumed run continues its step count and learning-rate schedule, and bad
flags give clear errors."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from agents.config import TrainConfig
from rl_laof.imitation.config import ImitationConfig

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("gl")

TINY_IMITATION = dict(width=4, features=16, hidden=32, steps=10, batch_size=8, decoder_steps=10,
                      decoder_batch_size=8, eval_episodes=1, eval_seeds=1, eval_backgrounds=("train",),
                      latency_calls=2, labels=0.1, normalise=False)
# 2 envs x 32-step rollouts, tiny nets, 32 px frames (the test dataset's)
TINY_TRAIN = dict(num_envs=2, n_steps=32, batch_size=32, n_epochs=1, width=4, features=16, hidden=32,
                  image_size=32, eval_every=64, checkpoint_every=64, eval_episodes=1, final_eval_episodes=1,
                  distractors="hard")


@pytest.fixture(scope="module")
def latent_agents(lam_dataset, tmp_path_factory):
    """Imitation runs (latent BC and LAFP) on a tiny LAOF model of the test dataset."""
    from rl_laof.imitation.training import imitate
    from rl_laof.lam.config import LAMConfig
    from rl_laof.lam.training import train_lam

    root = tmp_path_factory.mktemp("agents")
    lam = train_lam(LAMConfig(method="laof", width=8, batch_size=16, steps=5, eval_every=5, eval_windows=32,
                              mlp_probe_steps=5), lam_dataset, root / "lam", progress=False)
    out = {}
    for policy in ("bc", "lafp"):
        cfg = ImitationConfig(latent="laof", policy=policy, lam_run=lam["run_dir"], **TINY_IMITATION)
        out[policy] = imitate(cfg, lam_dataset, root / policy, progress=False)["run_dir"]
    return out


def _cfg(policy: str, agents: dict, **kw) -> TrainConfig:
    return TrainConfig(latent="laof", latent_policy=policy, latent_agent=agents[policy], **{**TINY_TRAIN, **kw})


@pytest.mark.parametrize("policy", ["bc", "lafp"])
def test_latent_env_decodes_exactly_what_the_decoder_gives_within_bounds(latent_agents, policy):
    from agents.training import load_latent_space, make_env

    cfg = _cfg(policy, latent_agents, residual_pcs=0)
    agent, meta = load_latent_space(cfg, Path(cfg.latent_agent))
    venv = make_env(cfg, 2, 0, agent, meta)
    try:
        bound = 3.0 if policy == "lafp" else 1.0
        assert venv.action_space.shape == (meta["out_dim"],)
        assert np.all(venv.action_space.low == -bound) and np.all(venv.action_space.high == bound)
        obs = venv.reset()
        rng = np.random.default_rng(0)
        for _ in range(3):
            actions = rng.normal(0, 2 * bound, (2, meta["out_dim"])).astype(np.float32)  # many out of bounds
            clipped = torch.from_numpy(np.clip(actions, -bound, bound))
            with torch.no_grad():
                z = clipped if policy == "bc" else agent.policy.sample_from(
                    agent.policy.encoder(torch.from_numpy(obs)), clipped, 0.0)
                expected = agent.decoder(z).numpy()
            obs, *_ = venv.step(actions)
            np.testing.assert_array_equal(venv.last_latents, z.numpy())
            np.testing.assert_array_equal(venv.last_env_actions, expected)
    finally:
        venv.close()


def test_the_agent_starts_from_the_latent_bc_policy(latent_agents):
    from stable_baselines3 import PPO

    from agents.policy import init_from_latent_policy, policy_kwargs
    from agents.training import load_latent_space, make_env

    cfg = _cfg("bc", latent_agents, residual_pcs=0)
    agent, meta = load_latent_space(cfg, Path(cfg.latent_agent))
    venv = make_env(cfg, 2, 0, agent, meta)
    try:
        model = PPO("MlpPolicy", venv, n_steps=32, batch_size=32, policy_kwargs=policy_kwargs(cfg), device="cpu")
        assert init_from_latent_policy(model, agent.policy) == ["encoder", "actor", "mean"]
        obs = venv.reset()
        with torch.no_grad():
            mean = model.policy.get_distribution(torch.from_numpy(obs).float()).distribution.mean
            bc = agent.policy(torch.from_numpy(obs))
        torch.testing.assert_close(mean, bc, atol=1e-5, rtol=1e-5)
    finally:
        venv.close()


def test_a_residual_agent_acts_as_the_latent_bc_policy_plus_its_offset_along_the_principal_directions(
        latent_agents, tmp_path):
    from stable_baselines3 import PPO

    from agents.policy import policy_kwargs, zero_mean
    from agents.training import load_latent_space, make_env
    from rl_laof.imitation.agent import ImitationAgent
    from rl_laof.pipeline import agent as train

    cfg = _cfg("bc", latent_agents, residual_pcs=4)
    assert cfg.residual and cfg.tag.startswith("ppo-laof-bc-res4-")
    agent, meta = load_latent_space(cfg, Path(cfg.latent_agent))
    venv = make_env(cfg, 2, 0, agent, meta)
    try:
        assert venv.action_space.shape == (4,) and venv.observation_space.shape == (16,)  # the features
        obs = venv.reset()
        obs_pixels = venv.pixels
        with torch.no_grad():
            np.testing.assert_allclose(obs, agent.policy.encoder(torch.from_numpy(obs_pixels)).numpy(), atol=1e-6)
        bc_actions = ImitationAgent(agent.policy, agent.decoder)(obs_pixels)
        venv.step(np.zeros((2, 4), np.float32))  # no residual: exactly the imitation agent
        np.testing.assert_allclose(venv.last_env_actions, bc_actions, atol=1e-6)
        pca = venv.pca
        assert pca.k == 4 and torch.all(pca.std[:-1] >= pca.std[1:])
        torch.testing.assert_close(pca.components @ pca.components.T, torch.eye(4), atol=1e-5, rtol=0)
        model = PPO("MlpPolicy", venv, n_steps=32, batch_size=32, policy_kwargs=policy_kwargs(cfg), device="cpu")
        assert zero_mean(model) == ["mean=0"]
        assert model.predict(obs, deterministic=True)[0].tolist() == [[0.0] * 4] * 2
        u = np.array([[9.0, 0, 0, 0], [0, -1.0, 0, 0]], np.float32)  # 9: clipped to the bound, 3
        obs_pixels = venv.pixels
        with torch.no_grad():
            z_bc = agent.policy(torch.from_numpy(obs_pixels))
            z = z_bc + torch.stack([3 * pca.std[0] * pca.components[0], -pca.std[1] * pca.components[1]])
        venv.step(u)
        np.testing.assert_allclose(venv.last_latents, z.numpy(), atol=1e-5)
        for _ in range(1000):  # to the end of an episode: SB3 bootstraps from the terminal observation's features
            _, _, dones, infos = venv.step(np.zeros((2, 4), np.float32))
            if dones.any():
                break
        assert dones.all()  # both envs started together
        for info in infos:
            assert info["terminal_observation"].shape == (16,) and np.abs(info["terminal_observation"]).max() <= 1
    finally:
        venv.close()
    report = train(dataclasses.replace(cfg, total_steps=64), tmp_path / "res", progress=False)
    assert report["initialised"][0] == "mean=0" and report["eval_history"][0]["step"] == 0
    with pytest.raises(ValueError, match="residual_pcs=64"):
        train(_cfg("bc", latent_agents, residual_pcs=64), tmp_path / "too-many", progress=False)


def test_a_latent_policy_of_another_distractor_level_is_refused(latent_agents):
    from agents.training import load_latent_space

    cfg = _cfg("bc", latent_agents)
    _, meta = load_latent_space(cfg, Path(cfg.latent_agent))
    assert meta["distractors"] == "hard"
    with pytest.raises(ValueError, match="hard distractors \\(not none\\); pass --rebuild"):
        load_latent_space(_cfg("bc", latent_agents, distractors="none"), Path(cfg.latent_agent))


@pytest.mark.slow
def test_a_resumed_run_continues_its_steps_and_learning_rate_schedule(latent_agents, tmp_path):
    from rl_laof.pipeline import agent as train

    cfg = _cfg("bc", latent_agents, total_steps=192)
    full = train(cfg, tmp_path / "full", progress=False)
    stopped = train(cfg, tmp_path / "cut", progress=False, stop_at=64)
    assert stopped["checkpoint_step"] == 64
    with pytest.raises(ValueError, match="--resume"):
        train(cfg, tmp_path / "cut", progress=False)
    resumed = train(cfg, tmp_path / "cut", resume=True, progress=False)
    assert resumed["steps"] == full["steps"] == 192
    steps = [0, 64, 128, 192]
    assert [h["step"] for h in resumed["eval_history"]] == [h["step"] for h in full["eval_history"]] == steps
    # the learning rate of the last update at each evaluation (step 0: the start, before any update): the resumed
    # run's match the uninterrupted run's
    lr_full = {h["step"]: h["lr"] for h in full["eval_history"]}
    lr_cut = {h["step"]: h["lr"] for h in resumed["eval_history"]}
    assert lr_cut == pytest.approx(lr_full)
    # linear decay: 3e-4 x (1 - step / 192) after the update at `step`
    assert lr_full[0] == pytest.approx(3e-4) and lr_full[64] > lr_full[128] > 0
    assert lr_full[128] == pytest.approx(3e-4 * (1 - 128 / 192))
    assert (tmp_path / "cut" / "learning_curve.png").exists() and resumed["final"]["episodes"] == 1
    # and the replay command rebuilds the env and action space from the run folder
    from agents.replay import evaluate_run

    replay = evaluate_run(tmp_path / "cut", episodes=1)
    assert Path(replay["gif"]).exists() and np.isfinite(replay["mean"])


def test_a_resumed_agent_is_the_uninterrupted_one_bit_for_bit(tmp_path):
    """Stopped after its envs' first episodes ended and resumed, an agent evaluates and ends exactly as the
    uninterrupted run of its seed (agents.resume: the random states, VecNormalize's returns, and the envs sent back
    to their last common episode start and stepped again). State observations: no rendering, so episodes are cheap
    (tests/test_envs.py replays pixel envs with distractors)."""
    import io
    import zipfile

    from agents.training import train
    from rl_laof.runs import load_torch, read_json

    tiny = {k: v for k, v in TINY_TRAIN.items() if k not in ("image_size", "distractors")}
    cfg = TrainConfig(latent="none", obs="state", distractors="none", total_steps=1280,
                      **{**tiny, "eval_every": 320, "checkpoint_every": 320})
    full = train(cfg, tmp_path / "full", progress=False)
    assert train(cfg, tmp_path / "cut", progress=False, stop_at=576)["checkpoint_step"] == 576
    ckpt = tmp_path / "cut" / "checkpoints" / read_json(tmp_path / "cut" / "checkpoints" / "latest.json")["dir"]
    envs_log = load_torch(ckpt / "resume.pt")["envs"]
    # 288 steps per env: every env ended its first 250-step episode at once, and 38 steps of the next are replayed
    assert envs_log["start"]["resets"].tolist() == [2, 2] and len(envs_log["actions"]) == 38
    resumed = train(cfg, tmp_path / "cut", resume=True, progress=False)

    def evals(report):
        return [(h["step"], h["mean"], h["std"], h["lr"]) for h in report["eval_history"]]

    assert evals(resumed) == evals(full) and [e[0] for e in evals(full)] == [0, 320, 640, 960, 1280]
    assert resumed["final"]["returns"] == full["final"]["returns"]

    def weights(run):
        with zipfile.ZipFile(tmp_path / run / "final_model.zip") as z:
            return torch.load(io.BytesIO(z.read("policy.pth")), weights_only=False)

    a, b = weights("full"), weights("cut")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_learning_rate_never_goes_below_its_floor_whatever_the_overshoot():
    import cloudpickle

    from agents.loop import LinearSchedule

    for end in (0.0, 1e-5):
        schedule = cloudpickle.loads(cloudpickle.dumps(LinearSchedule(3e-4, end)))  # as checkpoints store it
        assert schedule(1.0) == pytest.approx(3e-4) and schedule(0.5) == pytest.approx((3e-4 + end) / 2)
        assert [schedule(p) for p in (0.0, -0.024, -0.28, -5.0)] == [end] * 4  # past the total: the floor
        assert schedule(2.0) == pytest.approx(3e-4)  # never above the start either
    with pytest.raises(ValueError, match="learning_rate_end"):
        TrainConfig(learning_rate=1e-4, learning_rate_end=2e-4)
    with pytest.raises(ValueError, match="learning_rate=-0.1"):
        TrainConfig(learning_rate=-0.1)


@pytest.mark.slow
def test_a_run_that_overshoots_its_steps_ends_on_the_floor(latent_agents, tmp_path):
    """100 steps in 64-step rollouts end at 128: the last update runs past the total at the floor rate."""
    from rl_laof.pipeline import agent as train

    report = train(_cfg("bc", latent_agents, total_steps=100, learning_rate_end=1e-5), tmp_path, progress=False)
    assert report["steps"] == 128
    lrs = [h["lr"] for h in report["eval_history"]]
    assert lrs[-1] == pytest.approx(1e-5) and min(lrs) >= 1e-5


@pytest.mark.slow
def test_a_frozen_encoder_and_a_critic_warmup_hold_the_pretrained_start(latent_agents, tmp_path):
    """freeze_encoder keeps the latent policy's encoder; during the critic warm-up the actor (MLP, mean, log
    std) keeps the latent BC policy's weights too; after it, the actor learns."""
    from stable_baselines3 import PPO

    from rl_laof.imitation.agent import load_agent
    from rl_laof.pipeline import agent as train

    bc = load_agent(latent_agents["bc"])[0].policy

    def trained(**kw):  # three updates, at 64, 128 and 192 steps (the last one at learning rate 0)
        report = train(_cfg("bc", latent_agents, total_steps=192, freeze_encoder=True, residual_pcs=0,
                               **kw), tmp_path / str(kw),
                       progress=False)
        return report, PPO.load(Path(report["run_dir"]) / "final_model.zip", device="cpu").policy

    report, held = trained(critic_warmup_steps=192)
    assert "encoder frozen" in report["initialised"]
    for name, p in bc.encoder.state_dict().items():
        assert torch.equal(held.features_extractor.encoder.state_dict()[name], p), name
    assert torch.equal(held.action_net.weight, bc.head[-1].weight)
    assert torch.equal(held.mlp_extractor.policy_net[0].weight, bc.head[0].weight)
    assert torch.allclose(held.log_std, torch.full_like(held.log_std, -1.0))
    _, moved = trained(critic_warmup_steps=64)  # held for the first update only
    assert torch.equal(moved.features_extractor.encoder.conv.head[1].weight, bc.encoder.conv.head[1].weight)
    assert not torch.equal(moved.action_net.weight, bc.head[-1].weight)
    with pytest.raises(ValueError, match="off-policy"):
        TrainConfig(algo="sac", critic_warmup_steps=10)


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["recurrent-ppo", "sac", "a2c"])
def test_other_algorithms_train_through_the_same_registry(latent_agents, tmp_path, algo):
    """Each algorithm trains in the latent space on pixels; the recurrent policy gets the encoder only."""
    from rl_laof.pipeline import agent as train

    extra = dict(buffer_size=256, batch_size=16) if algo == "sac" else {}
    cfg = _cfg("bc", latent_agents, algo=algo, total_steps=64, eval_every=64, checkpoint_every=64,
               residual_pcs=0, **extra)
    report = train(cfg, tmp_path / algo, progress=False)
    assert report["steps"] >= 64 and np.isfinite(report["final"]["mean"])
    expected = {"recurrent-ppo": ["encoder"], "sac": ["encoder"], "a2c": ["encoder", "actor", "mean"]}[algo]
    assert report["initialised"] == expected


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (["--latent", "sof", "--task", "cheetah-run"], "no SOF skills for cheetah-run"),
    (["--latent", "sof", "--skills", "/nonexistent/skills"], "not a finished skills run"),
    (["--latent", "sof", "--skill-action", "continuous", "--kl-coef", "0.1"], "use --skill-action tokens"),
    (["--latent", "sof", "--algo", "sac"], "runs with ppo, a2c or trpo"),
    (["--algo", "dqn"], "invalid choice: 'dqn'"),
    (["--task", "cheetah-fly", "--latent", "none"], "cheetah-run"),
    (["--resume", "--fresh"], "give one"),
    (["--set", "num_envs=0"], "num_envs=0"),
    (["--latent-agent", "/nonexistent/agent"], "no agent.pt"),
    (["--obs", "state", "--latent-policy", "lafp"], "use --obs pixels"),
])
def test_bad_flags_give_clear_errors(args, message, tmp_path):
    # an empty runs root: the user's own runs (e.g. the main job's folder) must not change the answer
    env = {**os.environ, "RL_LAOF_RUNS": str(tmp_path / "runs")}
    proc = subprocess.run([sys.executable, "-m", "rl_laof.train", "--no-progress", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "pretrained" / "cheetah-run").iterdir()))
def test_shipped_latent_policies_load_and_record_their_command(name):
    from agents.training import load_latent_space
    from rl_laof.pipeline import shipped_agent

    latent, policy = name.rsplit("-", 1)
    path = shipped_agent("cheetah-run", latent, policy)
    agent, meta = load_latent_space(TrainConfig(latent=latent, latent_policy=policy), path)
    assert f"--latent {latent} --policy {policy}" in (path / "command.txt").read_text()
    actions = agent(np.zeros((2, 9, 64, 64), np.uint8))
    assert actions.shape == (2, 6) and np.isfinite(actions).all() and meta["out_dim"] == 128


def _flip_middle_byte(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    data = bytearray(src.read_bytes())
    data[len(data) // 2] ^= 0xFF
    dst.write_bytes(bytes(data))
    return dst


def test_a_flipped_byte_in_a_model_a_latent_policy_or_a_checkpoint_is_refused_with_the_file_named(latent_agents,
                                                                                                   tmp_path):
    """Model and checkpoint files carry a checksum (rl_laof.runs.save_torch): one byte changed in the middle of a
    latent action model's model.pt, an imitation run's agent.pt or a checkpoint is refused by its loader in one
    line that names the file (torch's own reader checks nothing and would load the changed weights)."""
    import shutil

    from rl_laof.imitation.agent import load_agent
    from rl_laof.lam.training import load_lam
    from rl_laof.loop import Checkpoints
    from rl_laof.runs import read_json

    agent_dir = Path(latent_agents["bc"])
    lam_dir = Path(read_json(agent_dir / "report.json")["lam_run"])
    ckpt = Checkpoints(lam_dir / "checkpoints").latest()
    assert ckpt is not None and Checkpoints(lam_dir / "checkpoints").load()["step"] == 5  # intact: loads
    shutil.copytree(lam_dir / "checkpoints", tmp_path / "ckpt" / "checkpoints")
    cases = [(_flip_middle_byte(lam_dir / "model.pt", tmp_path / "lam" / "model.pt"),
              lambda: load_lam(tmp_path / "lam")),
             (_flip_middle_byte(agent_dir / "agent.pt", tmp_path / "agent" / "agent.pt"),
              lambda: load_agent(tmp_path / "agent")),
             (_flip_middle_byte(ckpt, tmp_path / "ckpt" / "checkpoints" / ckpt.name),
              lambda: Checkpoints(tmp_path / "ckpt" / "checkpoints").load())]
    for path, load in cases:
        with pytest.raises(ValueError) as err:
            load()
        message = str(err.value)
        assert str(path) in message and "damaged" in message and "checksum" in message and "\n" not in message


def test_a_flipped_byte_in_an_agent_checkpoint_is_refused_with_the_file_named(tmp_path):
    """An agent's checkpoint folder holds a manifest of its files' checksums: SB3's zip checks its own CRCs, but
    VecNormalize's pickle would load changed statistics silently."""
    from agents.training import train
    from rl_laof.runs import read_json

    tiny = {k: v for k, v in TINY_TRAIN.items() if k not in ("image_size", "distractors")}
    cfg = TrainConfig(latent="none", obs="state", distractors="none", total_steps=256, **{**tiny, "eval_every": 256})
    train(cfg, tmp_path / "run", progress=False, stop_at=64)
    ckpt = tmp_path / "run" / "checkpoints" / read_json(tmp_path / "run" / "checkpoints" / "latest.json")["dir"]
    for name in ("vecnormalize.pkl", "model.zip", "resume.pt"):
        path = ckpt / name
        intact = path.read_bytes()
        _flip_middle_byte(ckpt / name, path)
        with pytest.raises(ValueError) as err:
            train(cfg, tmp_path / "run", resume=True, progress=False)
        assert str(path) in str(err.value) and "damaged" in str(err.value) and "\n" not in str(err.value)
        path.write_bytes(intact)
    assert train(cfg, tmp_path / "run", resume=True, progress=False)["steps"] == 256  # intact: it resumes


def test_a_diverging_agent_stops_with_one_line_and_never_saves_a_non_finite_policy(tmp_path):
    from conftest import assert_saved_values_finite

    from agents.training import train
    from rl_laof.finite import Diverged

    cfg = TrainConfig(latent="none", learning_rate=1e9, total_steps=512, **{**TINY_TRAIN, "checkpoint_every": 64})
    with pytest.raises(Diverged, match=r"(diverged|not finite) at step \d+.*lower the learning rate "
                                       r"\(--set learning_rate=\.\.\.\)") as err:
        train(cfg, tmp_path / "run", progress=False)
    assert "\n" not in str(err.value) and "tensor(" not in str(err.value)
    assert not (tmp_path / "run" / "final_model.zip").exists()
    assert_saved_values_finite(tmp_path / "run")


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["bc", "lafp"])
def test_the_agents_encoder_takes_the_latent_policys_size_whatever_the_config_says(latent_agents, tmp_path, policy):
    """A latent policy trained at another width than TrainConfig.width (the imitation preset's 32 vs the
    agent's 16) still hands its encoder over: the agent's encoder is sized like the policy's."""
    from agents.training import train

    cfg = _cfg(policy, latent_agents, residual_pcs=0, width=8, features=32, total_steps=64)
    report = train(cfg, tmp_path / "run", progress=False)
    assert "encoder" in report["initialised"]
