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
def latent_policies(lam_dataset, tmp_path_factory):
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
    return TrainConfig(latent="laof", policy=policy, latent_policy=agents[policy], **{**TINY_TRAIN, **kw})


@pytest.mark.parametrize("policy", ["bc", "lafp"])
def test_latent_env_decodes_exactly_what_the_decoder_gives_within_bounds(latent_policies, policy):
    from agents.training import load_latent_space, make_env

    cfg = _cfg(policy, latent_policies, residual_pcs=0)
    agent, meta = load_latent_space(cfg, Path(cfg.latent_policy))
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


def test_the_agent_starts_from_the_latent_bc_policy(latent_policies):
    from stable_baselines3 import PPO

    from agents.policy import init_from_latent_policy, policy_kwargs
    from agents.training import load_latent_space, make_env

    cfg = _cfg("bc", latent_policies, residual_pcs=0)
    agent, meta = load_latent_space(cfg, Path(cfg.latent_policy))
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


@pytest.mark.slow  # 16 s idle: a PPO update on the residual env
def test_a_residual_agent_acts_as_the_latent_bc_policy_plus_its_offset_along_the_principal_directions(
        latent_policies, tmp_path):
    from stable_baselines3 import PPO

    from agents.policy import policy_kwargs, zero_mean
    from agents.training import load_latent_space, make_env
    from rl_laof.imitation.policy import LatentPolicy
    from rl_laof.pipeline import agent as train

    cfg = _cfg("bc", latent_policies, residual_pcs=4)
    assert cfg.residual and cfg.tag.startswith("ppo-laof-bc-res4-")
    agent, meta = load_latent_space(cfg, Path(cfg.latent_policy))
    venv = make_env(cfg, 2, 0, agent, meta)
    try:
        assert venv.action_space.shape == (4,) and venv.observation_space.shape == (16,)  # the features
        obs = venv.reset()
        obs_pixels = venv.pixels
        with torch.no_grad():
            np.testing.assert_allclose(obs, agent.policy.encoder(torch.from_numpy(obs_pixels)).numpy(), atol=1e-6)
        bc_actions = LatentPolicy(agent.policy, agent.decoder)(obs_pixels)
        venv.step(np.zeros((2, 4), np.float32))  # no residual: exactly the latent policy
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
        train(_cfg("bc", latent_policies, residual_pcs=64), tmp_path / "too-many", progress=False)


def test_only_an_agent_that_starts_at_mean_zero_replays_its_start():
    from agents.replay import starts_at_zero_mean

    assert starts_at_zero_mean(TrainConfig(latent="laof", policy="bc"))  # the latent residual
    assert starts_at_zero_mean(TrainConfig(latent="action_residual"))
    assert starts_at_zero_mean(TrainConfig(latent="laof", policy="lafp"))  # LAFP's noise space: the flow's mean
    assert not starts_at_zero_mean(TrainConfig(latent="laof", policy="bc", residual_pcs=0))  # BC weights, not 0
    assert not starts_at_zero_mean(TrainConfig(latent="none"))  # a fresh agent: no start to replay
    assert not starts_at_zero_mean(TrainConfig(algo="drq", latent="none"))


def test_a_latent_policy_of_another_distractor_level_is_refused(latent_policies):
    from agents.training import load_latent_space

    cfg = _cfg("bc", latent_policies)
    _, meta = load_latent_space(cfg, Path(cfg.latent_policy))
    assert meta["distractors"] == "hard"
    with pytest.raises(ValueError, match="hard distractors \\(not none\\); pass --rebuild"):
        load_latent_space(_cfg("bc", latent_policies, distractors="none"), Path(cfg.latent_policy))


@pytest.mark.slow
def test_a_resumed_run_continues_its_steps_and_learning_rate_schedule(latent_policies, tmp_path):
    from rl_laof.pipeline import agent as train

    cfg = _cfg("bc", latent_policies, total_steps=192)
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


def test_pixel_agents_take_the_backend_that_renders_only_the_observed_frame():
    """EnvPool renders every control step, so at an action repeat above 1 a pixel agent runs on the dm_control
    backend (frames only: no mask or depth passes); state agents and repeat 1 stay on EnvPool; a named backend
    is kept, an unknown one refused. make_env builds the resolved one."""
    from agents.training import make_env
    from envs.config import resolve_backend
    from envs.simulators import DMControlSimulator, EnvpoolSimulator

    assert resolve_backend("auto", "pixels", 4) == "dm_control"
    assert resolve_backend("auto", "pixels", 1) == resolve_backend("auto", "state", 4) == "envpool"
    assert resolve_backend("envpool", "pixels", 4) == "envpool"
    assert TrainConfig().resolved_backend == "dm_control"  # cheetah-run's pixel action repeat is 4
    assert TrainConfig(obs="state", latent="none", distractors="none").resolved_backend == "envpool"
    with pytest.raises(ValueError, match="Unknown backend 'mujoco'; valid: auto, envpool, dm_control"):
        TrainConfig(backend="mujoco")
    for backend, kind in (("auto", DMControlSimulator), ("envpool", EnvpoolSimulator)):
        venv = make_env(TrainConfig(latent="none", backend=backend), 2, 0)
        try:
            sim = venv.unwrapped.sim
            assert isinstance(sim, kind)
            assert not getattr(sim, "want_extras", False)  # one render pass per frame
        finally:
            venv.close()


def test_a_run_recorded_before_the_backend_existed_is_an_envpool_run():
    """``backend`` came after runs were recorded, all of them on EnvPool: a config at backend envpool records
    what they recorded (so their folders and benchmark records still stand for it), one read back without the
    field is an EnvPool run (replays and held-out evaluations of old runs keep their simulator), and the new
    default records itself."""
    old = TrainConfig(backend="envpool")
    assert "backend" not in old.to_dict() and TrainConfig.from_recorded(old.to_dict()) == old
    assert TrainConfig.from_recorded(old.to_dict()).resolved_backend == "envpool"
    new = TrainConfig()
    assert new.to_dict()["backend"] == "auto" and TrainConfig.from_recorded(new.to_dict()) == new
    imitation = ImitationConfig(eval_backend="envpool")
    assert "eval_backend" not in imitation.to_dict()
    assert ImitationConfig.from_recorded(imitation.to_dict()).eval_backend == "envpool"
    assert ImitationConfig().to_dict()["eval_backend"] == "auto"


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
def test_a_run_that_overshoots_its_steps_ends_on_the_floor(latent_policies, tmp_path):
    """100 steps in 64-step rollouts end at 128: the last update runs past the total at the floor rate."""
    from rl_laof.pipeline import agent as train

    report = train(_cfg("bc", latent_policies, total_steps=100, learning_rate_end=1e-5), tmp_path, progress=False)
    assert report["steps"] == 128
    lrs = [h["lr"] for h in report["eval_history"]]
    assert lrs[-1] == pytest.approx(1e-5) and min(lrs) >= 1e-5


@pytest.mark.slow
def test_a_frozen_encoder_and_a_critic_warmup_hold_the_pretrained_start(latent_policies, tmp_path):
    """freeze_encoder keeps the latent policy's encoder; during the critic warm-up the actor (MLP, mean, log
    std) keeps the latent BC policy's weights too; after it, the actor learns."""
    from stable_baselines3 import PPO

    from rl_laof.imitation.policy import load_latent_policy
    from rl_laof.pipeline import agent as train

    bc = load_latent_policy(latent_policies["bc"])[0].policy

    def trained(**kw):  # three updates, at 64, 128 and 192 steps (the last one at learning rate 0)
        report = train(_cfg("bc", latent_policies, total_steps=192, freeze_encoder=True, residual_pcs=0,
                               **kw), tmp_path / str(kw),
                       progress=False)
        return report, PPO.load(Path(report["run_dir"]) / "final_model.zip", device="cpu").policy

    report, held = trained(critic_warmup_steps=192)
    assert "encoder frozen" in report["initialised"]
    for name, p in bc.encoder.state_dict().items():
        assert torch.equal(held.features_extractor.encoder.state_dict()[name], p), name
    assert torch.equal(held.action_net.weight, bc.head[-1].weight)
    assert torch.equal(held.mlp_extractor.policy_net[0].weight, bc.head[0].weight)
    assert torch.allclose(held.log_std, torch.full_like(held.log_std, TrainConfig().log_std_init))
    _, moved = trained(critic_warmup_steps=64)  # held for the first update only
    assert torch.equal(moved.features_extractor.encoder.conv.head[1].weight, bc.encoder.conv.head[1].weight)
    assert not torch.equal(moved.action_net.weight, bc.head[-1].weight)
    with pytest.raises(ValueError, match="off-policy"):
        TrainConfig(algo="sac", critic_warmup_steps=10)


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["recurrent-ppo", "sac", "a2c"])
def test_other_algorithms_train_through_the_same_registry(latent_policies, tmp_path, algo):
    """Each algorithm trains in the latent space on pixels; the recurrent policy gets the encoder only."""
    from rl_laof.pipeline import agent as train

    extra = dict(buffer_size=256, batch_size=16) if algo == "sac" else {}
    cfg = _cfg("bc", latent_policies, algo=algo, total_steps=64, eval_every=64, checkpoint_every=64,
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
    (["--latent-policy", "/nonexistent/agent"], "no policy.pt"),
    (["--obs", "state", "--policy", "lafp"], "use --obs pixels"),
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
    from rl_laof.pipeline import shipped_policy

    latent, policy = name.rsplit("-", 1)
    path = shipped_policy("cheetah-run", latent, policy)
    agent, meta = load_latent_space(TrainConfig(latent=latent, policy=policy), path)
    assert f"--latent {latent} --policy {policy}" in (path / "command.txt").read_text()
    actions = agent(np.zeros((2, 9, 64, 64), np.uint8))
    assert actions.shape == (2, 6) and np.isfinite(actions).all() and meta["out_dim"] == 128


def _flip_middle_byte(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    data = bytearray(src.read_bytes())
    data[len(data) // 2] ^= 0xFF
    dst.write_bytes(bytes(data))
    return dst


def test_a_flipped_byte_in_a_model_a_latent_policy_or_a_checkpoint_is_refused_with_the_file_named(latent_policies,
                                                                                                   tmp_path):
    """Model and checkpoint files carry a checksum (rl_laof.runs.save_torch): one byte changed in the middle of a
    latent action model's model.pt, an imitation run's policy.pt or a checkpoint is refused by its loader in one
    line that names the file (torch's own reader checks nothing and would load the changed weights)."""
    import shutil

    from rl_laof.imitation.policy import load_latent_policy
    from rl_laof.lam.training import load_lam
    from rl_laof.loop import Checkpoints
    from rl_laof.runs import read_json

    agent_dir = Path(latent_policies["bc"])
    lam_dir = Path(read_json(agent_dir / "report.json")["lam_run"])
    ckpt = Checkpoints(lam_dir / "checkpoints").latest()
    assert ckpt is not None and Checkpoints(lam_dir / "checkpoints").load()["step"] == 5  # intact: loads
    shutil.copytree(lam_dir / "checkpoints", tmp_path / "ckpt" / "checkpoints")
    cases = [(_flip_middle_byte(lam_dir / "model.pt", tmp_path / "lam" / "model.pt"),
              lambda: load_lam(tmp_path / "lam")),
             (_flip_middle_byte(agent_dir / "policy.pt", tmp_path / "agent" / "policy.pt"),
              lambda: load_latent_policy(tmp_path / "agent")),
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
def test_the_agents_encoder_takes_the_latent_policys_size_whatever_the_config_says(latent_policies, tmp_path, policy):
    """A latent policy trained at another width than TrainConfig.width (the imitation preset's 32 vs the
    agent's 16) still hands its encoder over: the agent's encoder is sized like the policy's."""
    from agents.training import train

    cfg = _cfg(policy, latent_policies, residual_pcs=0, width=8, features=32, total_steps=64)
    report = train(cfg, tmp_path / "run", progress=False)
    assert "encoder" in report["initialised"]


# --------------------------------------------------------------------------- raw-action residuals (issue 31)

@pytest.fixture(scope="module")
def labels_agent(lam_dataset, latent_policies, tmp_path_factory):
    """BC on the labelled transitions only (an imitation run with latent none), the labels_residual's start."""
    from rl_laof.imitation.training import imitate

    cfg = ImitationConfig(latent="none", **TINY_IMITATION)
    return imitate(cfg, lam_dataset, tmp_path_factory.mktemp("labels") / "bc", progress=False)["run_dir"]


def _residual_cfg(latent: str, agent_dir: str, **kw) -> TrainConfig:
    return TrainConfig(latent=latent, latent_policy=agent_dir, **{**TINY_TRAIN, **kw})


def _check_action_residual(cfg: TrainConfig) -> None:
    """u = 0 executes the frozen policy's own action (LatentPolicy: policy, then decoder), to float precision;
    u moves it by scale x u (clipped to [-3, 3]), then the action bounds clip."""
    from agents.training import load_latent_space, make_env
    from rl_laof.imitation.policy import LatentPolicy

    agent, meta = load_latent_space(cfg, Path(cfg.latent_policy))
    venv = make_env(cfg, 2, 0, agent, meta)
    try:
        assert venv.action_space.shape == (6,) and np.all(venv.action_space.high == 3.0)
        obs = venv.reset()
        with torch.no_grad():  # the agent observes the frozen policy's features
            np.testing.assert_allclose(obs, agent.policy.encoder(torch.from_numpy(venv.pixels)).numpy(), atol=1e-6)
        for _ in range(3):
            own = np.clip(LatentPolicy(agent.policy, agent.decoder)(venv.pixels), -1, 1)
            venv.step(np.zeros((2, 6), np.float32))
            np.testing.assert_allclose(venv.last_env_actions, own, atol=1e-6)
            np.testing.assert_allclose(venv.unwrapped.last_actions, own, atol=1e-6)  # what the simulator got
        own = np.clip(LatentPolicy(agent.policy, agent.decoder)(venv.pixels), -1, 1)
        u = np.array([[9.0, -1, 0, 0, 0, 0], [0, 0, 0.5, 0, 0, -2]], np.float32)  # 9: clipped to the bound, 3
        venv.step(u)
        expected = np.clip(own + cfg.action_residual_scale * np.clip(u, -3, 3), -1, 1)
        np.testing.assert_allclose(venv.last_env_actions, expected, atol=1e-6)
        if agent.decoder is None:
            assert venv.last_latents is None
    finally:
        venv.close()


def test_an_action_residual_at_zero_acts_exactly_as_the_decoded_latent_policy(latent_policies):
    cfg = _residual_cfg("action_residual", latent_policies["bc"])
    assert cfg.action_residual and not cfg.residual and cfg.tag.startswith("ppo-action_residual-pixels-")
    _check_action_residual(cfg)
    _check_action_residual(dataclasses.replace(cfg, action_residual_scale=0.1))
    with pytest.raises(ValueError, match="latent laof / bc"):  # BC on the labels is not the decoded latent policy
        _check_action_residual(_residual_cfg("labels_residual", latent_policies["bc"]))


def test_a_labels_residual_at_zero_acts_exactly_as_bc_on_the_labels(labels_agent):
    _check_action_residual(_residual_cfg("labels_residual", labels_agent))
    with pytest.raises(ValueError, match="latent none / bc"):
        _check_action_residual(_residual_cfg("action_residual", labels_agent))


def test_the_spread_ratio_is_measured_on_the_policys_own_states():
    """The executed actions of the policy's own rollout, whose states are the ones it was given: a constant policy
    has spread 0; one whose action is a function of the state has the std of that function over its own states."""
    import envs
    from rl_laof.imitation.evaluation import action_spread

    data_std = np.array([0.5, 1.0, 0.5, 1.0, 0.5, 1.0])
    seen: list[np.ndarray] = []

    def follow(obs: np.ndarray) -> np.ndarray:  # beyond the bounds at times: the env's clipping counts
        seen.append(obs)
        return 2 * np.tanh(obs[:, :6]).astype(np.float32)

    venv = envs.make("cheetah-run", num_envs=2, obs="state", action_repeat=8, seed=3)
    try:
        const = action_spread(venv, lambda obs: np.full((len(obs), 6), 0.3, np.float32), data_std)
        assert const["spread"] == 0.0 and const["actions"] == 2 * 125 and const["action_std"] == [0.0] * 6
        out = action_spread(venv, follow, data_std)
    finally:
        venv.close()
    executed = np.clip(2 * np.tanh(np.concatenate(seen)[:, :6]), -1, 1)  # every env is in its first episode
    assert out["actions"] == len(executed) == 2 * 125
    np.testing.assert_allclose(out["action_std"], executed.std(0), atol=1e-4)
    assert out["spread"] == pytest.approx(executed.std(0).mean() / data_std.mean(), abs=1e-4) and out["spread"] > 0


def test_an_imitation_report_records_its_spread_and_its_data(latent_policies):
    """imitate's report keeps the spread of the policy's actions on its own states (its evaluation's rollouts on
    the data's backgrounds) over the data's; policy.pt keeps the data's env and action spread; run_spread measures
    a finished run the same way."""
    from rl_laof.imitation.evaluation import run_spread, spread_ratio
    from rl_laof.runs import load_torch, read_json

    report = read_json(Path(latent_policies["bc"]) / "report.json")
    data = load_torch(Path(latent_policies["bc"]) / "policy.pt")["data"]
    assert data["env"]["action_repeat"] == 4 and data["env"]["frame_stack"] == 3 and data["env"]["image_size"] == 32
    assert report["spread"] == round(spread_ratio(report["returns"]["train"]["action_std"], data["action_std"]), 4)
    assert 0 < report["spread"] < 5
    assert run_spread(latent_policies["bc"], seeds=1, episodes=1) == report["spread"]  # BC: deterministic


def test_a_latent_policy_of_another_action_repeat_or_env_is_refused_naming_both_values(latent_policies):
    from agents.training import env_mismatches, load_latent_space
    from rl_laof.pipeline import shipped_policy

    for kw, message in [(dict(action_repeat=2), "action repeat 4 \\(not 2\\)"),
                        (dict(frame_stack=2), "3 stacked frames \\(not 2\\)"),
                        (dict(image_size=64), "32 px images \\(not 64\\)"),
                        (dict(distractors="hard:background"),
                         "distractors with kinds=background,color,camera,objects \\(not background\\)"),
                        (dict(task="walker-walk"), "task cheetah-run \\(not walker-walk\\)")]:
        with pytest.raises(ValueError, match=f"the latent policy was made for {message}.*; pass --rebuild$"):
            load_latent_space(_cfg("bc", latent_policies, **kw), Path(latent_policies["bc"]))
    # the shipped policies keep their data's record beside policy.pt (data.json)
    with pytest.raises(ValueError, match="action repeat 4 \\(not 8\\); pass --rebuild"):
        load_latent_space(TrainConfig(latent="action_residual", action_repeat=8), shipped_policy("cheetah-run", "laof",
                                                                                                "bc"))
    # a policy.pt without a record still names its task, image size, frame stack and distractor level
    meta = {"task": "cheetah-run", "image_size": 32, "config": {"frame_stack": 3}, "distractors": "hard"}
    assert env_mismatches(_cfg("bc", latent_policies, action_repeat=2), meta, None) == []
    assert env_mismatches(_cfg("bc", latent_policies, distractors="easy"), meta, None) == \
        ["hard distractors (not easy)"]


@pytest.fixture(scope="module")
def per_seed_policies(lam_dataset, latent_policies, tmp_path_factory) -> str:
    """Latent BC policies of imitation seeds 0 and 1 as ``<dir>/bc-s{seed}`` (one latent model)."""
    from rl_laof.imitation.training import imitate
    from rl_laof.runs import read_json

    root = tmp_path_factory.mktemp("per-seed")
    lam = read_json(Path(latent_policies["bc"]) / "report.json")["lam_run"]
    (root / "bc-s0").symlink_to(latent_policies["bc"])
    imitate(ImitationConfig(latent="laof", policy="bc", lam_run=lam, **{**TINY_IMITATION, "seed": 1}), lam_dataset,
            root / "bc-s1", progress=False)
    return str(root / "bc-s{seed}")


def test_each_seed_loads_its_own_latent_policy(latent_policies, per_seed_policies):
    """latent_policy "...-s{seed}": agent seed s loads imitation seed s, latent_seed picks another, and a policy of
    another seed than latent_seed asks for is refused."""
    from agents.training import load_latent_space

    for seed, latent_seed, loaded in [(0, None, 0), (1, None, 1), (1, 0, 0)]:
        cfg = _residual_cfg("action_residual", per_seed_policies, seed=seed, latent_seed=latent_seed)
        _, meta = load_latent_space(cfg, Path(cfg.resolved_latent_policy))
        assert meta["config"]["seed"] == loaded
    with pytest.raises(ValueError, match="imitation seed 0 \\(not latent_seed 1\\)"):
        load_latent_space(_cfg("bc", latent_policies, latent_seed=1), Path(latent_policies["bc"]))


@pytest.mark.slow
def test_an_action_residual_run_records_the_latent_seed_it_loaded_and_its_spread(per_seed_policies, tmp_path):
    from rl_laof.pipeline import agent as train
    from rl_laof.runs import read_json

    report = train(_residual_cfg("action_residual", per_seed_policies, seed=1, total_steps=64), tmp_path / "run",
                   progress=False)
    assert report["latent_seed"] == 1 and report["latent_policy"] == per_seed_policies.replace("{seed}", "1")
    assert read_json(tmp_path / "run" / "config.json")["latent_seed"] == 1
    assert report["initialised"][0] == "mean=0" and "action residual" in report["initialised"][1]
    assert 0 <= report["spread"] < 5 and report["eval_history"][0]["step"] == 0
    # the start, replayed from the final model with its action mean zeroed, is the policy of the step-0 evaluation:
    # the same return on the same episodes
    from agents.replay import evaluate_run
    from envs.rollout import EVAL_SEED

    cfg = _residual_cfg("action_residual", per_seed_policies, seed=1, total_steps=64)
    start = evaluate_run(tmp_path / "run", episodes=cfg.eval_episodes, which="start", seed=cfg.seed + EVAL_SEED,
                         video=False)
    assert start["mean"] == pytest.approx(report["eval_history"][0]["mean"], abs=1e-4)
    assert (tmp_path / "run" / "evaluate_start.json").exists()
