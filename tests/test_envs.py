"""Environments: spaces, determinism, SB3 semantics, agent masks, and agreement of the backends."""

import numpy as np
import pytest
from conftest import key_mask

import envs
from envs.simulators import DMControlSimulator, agent_geoms
from envs.tasks import get_task

pytestmark = pytest.mark.usefixtures("gl")


def rollout(venv, steps, seed=0):
    rng = np.random.default_rng(seed)
    obs = [venv.reset()]
    for _ in range(steps):
        o, r, d, info = venv.step(rng.uniform(-1, 1, (venv.num_envs, *venv.action_space.shape)))
        obs.append(o)
    return np.stack(obs)


# ---------------------------------------------------------------- spaces and errors

@pytest.mark.parametrize("backend", ["envpool", "dm_control"])
def test_pixel_obs_shape_dtype_and_space(backend):
    venv = envs.make("walker-walk", num_envs=2, distractors="easy", backend=backend, image_size=48, frame_stack=2)
    obs = venv.reset()
    assert obs.shape == (2, 6, 48, 48) and obs.dtype == np.uint8
    assert venv.observation_space.shape == (6, 48, 48) and venv.observation_space.dtype == np.uint8
    assert venv.action_space.shape == (6,) and venv.action_space.dtype == np.float32
    o, r, d, info = venv.step(np.zeros((2, 6)))
    assert o.shape == obs.shape and r.dtype == np.float32 and d.dtype == bool
    assert all(venv.observation_space.contains(x) for x in o)
    venv.close()


@pytest.mark.parametrize("backend", ["envpool", "dm_control"])
def test_state_obs_flat_float32_and_dict(backend):
    venv = envs.make("cheetah-run", num_envs=3, obs="state", backend=backend)
    obs = venv.reset()
    assert obs.shape == (3, 17) and obs.dtype == np.float32  # position 8 + velocity 9
    assert np.all(np.isfinite(obs))
    venv.close()
    venv = envs.make("walker-walk", num_envs=2, obs="state", backend=backend, state_as_dict=True)
    obs = venv.reset()
    assert list(obs) == ["orientations", "height", "velocity"]
    assert obs["orientations"].shape == (2, 14) and obs["height"].shape == (2,)
    assert all(v.dtype == np.float32 for v in obs.values())
    venv.close()


def test_unknown_task_lists_the_valid_ones():
    with pytest.raises(ValueError) as err:
        envs.make("cheetah-fly")
    assert "cheetah-run" in str(err.value) and "walker-walk" in str(err.value)
    with pytest.raises(ValueError, match="Did you mean 'ball_in_cup-catch'"):
        get_task("ball_in_cup_catch")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(obs="rgb"), "pixels, state"),
        (dict(backend="gym"), "envpool, dm_control"),
        (dict(obs="state", distractors="hard"), "only apply to pixel"),
        (dict(distractors="hard:background,sparkles"), "valid kinds"),
        (dict(distractors={"difficulty": "hard", "background_source": "/nope"}), "does not exist"),
        (dict(image_size=4), "out of range"),
    ],
)
def test_bad_configuration_says_how_to_fix(kwargs, match):
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        envs.make("cheetah-run", num_envs=1, **kwargs)


def test_missing_gl_names_the_packages(monkeypatch):
    import ctypes

    from envs import gl

    monkeypatch.setattr(gl, "_EGL_HANDLE", None)
    monkeypatch.delitem(__import__("sys").modules, "envpool", raising=False)

    def no_egl(*a, **k):
        raise OSError("libEGL.so.1: cannot open shared object file")

    monkeypatch.setattr(ctypes, "CDLL", no_egl)
    with pytest.raises(gl.GLUnavailableError, match="apt-get install -y libegl1 libegl-mesa0 libgl1-mesa-dri"):
        gl.ensure_gl()


# ---------------------------------------------------------------- determinism

def test_same_seed_same_pixels_different_seed_different():
    kw = dict(num_envs=2, distractors="hard", action_repeat=2)
    a = rollout(envs.make("cheetah-run", seed=3, **kw), 12)
    b = rollout(envs.make("cheetah-run", seed=3, **kw), 12)
    c = rollout(envs.make("cheetah-run", seed=4, **kw), 12)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


# ---------------------------------------------------------------- SB3 semantics

class CountingSim:
    """Wraps a simulator and records every reset(ids) call."""

    def __init__(self, sim):
        self.sim, self.resets = sim, []

    def reset(self, ids):
        self.resets.append(np.asarray(ids).tolist())
        return self.sim.reset(ids)

    def __getattr__(self, name):
        return getattr(self.sim, name)


# envpool: 17-27 s idle (a slow test); dm_control: 2-4 s
@pytest.mark.parametrize("backend", [pytest.param("envpool", marks=pytest.mark.slow), "dm_control"])
def test_truncation_terminal_observation_and_one_batched_reset(backend):
    venv = envs.make("cheetah-run", num_envs=3, backend=backend, action_repeat=50, monitor=False)
    venv.sim = CountingSim(venv.sim)
    obs = venv.reset()
    steps = 1000 // 50
    for t in range(1, steps + 1):
        prev = obs
        obs, rew, done, infos = venv.step(np.full((3, 6), 0.3))
        if t < steps:
            assert not done.any() and not any(i["TimeLimit.truncated"] for i in infos)
    assert done.all(), "DMC episodes end by truncation after 1000 control steps"
    assert all(i["TimeLimit.truncated"] for i in infos), "PPO needs the truncation flag to bootstrap"
    assert venv.sim.resets == [[0, 1, 2], [0, 1, 2]], "done envs must be reset in one batched call"
    for i in range(3):
        term = infos[i]["terminal_observation"]
        # the terminal stack continues the previous one; the new obs starts a fresh stack
        assert np.array_equal(term[:6], prev[i][3:])
        assert not np.array_equal(term, obs[i])
        assert np.array_equal(obs[i][:3], obs[i][6:]) and np.array_equal(obs[i][:3], obs[i][3:6])
    # after the batched reset every step is a real step: the next episode is again exactly `steps`
    # long (EnvPool's own auto-reset would spend one step with reward 0 and the action discarded)
    for t in range(1, steps + 1):
        obs, rew, done, infos = venv.step(np.full((3, 6), 0.3))
        assert done.all() == (t == steps) and done.any() == (t == steps)
    venv.close()


# envpool: 17-27 s idle (a slow test); dm_control: 2-4 s
@pytest.mark.parametrize("backend", [pytest.param("envpool", marks=pytest.mark.slow), "dm_control"])
def test_an_env_returns_exactly_to_its_last_common_episode_start(backend):
    """What an agent's exact resume rests on (envs.vec_env): a new env sent back to the envs' last common episode
    start (the earlier resets replayed on a fresh pool, the distractors' state restored) and stepped with the
    actions since is where the old env is, pixel for pixel, and stays with it."""
    def make():
        venv = envs.make("cheetah-run", num_envs=2, distractors="hard", image_size=32, action_repeat=50,
                         backend=backend, seed=3)
        venv.seed(3)  # as stable-baselines3 seeds it
        return venv

    actions = np.random.default_rng(0).uniform(-1, 1, (70, 2, 6)).astype(np.float32)
    old = make()
    old.reset()
    since = []
    for a in actions[:50]:  # 2.5 episodes of 20 steps
        old.step(a)
        since = [] if old.venv.steps_since_start == 0 else since + [a]
    start = old.venv.episode_start()
    assert start["resets"].tolist() == [3, 3] and len(since) == 10
    new = make()
    new.venv.resume_at(start)
    obs = new.reset()
    for a in since:
        obs, *_ = new.step(a)
    assert np.array_equal(obs, old.venv._stack.reshape(obs.shape))
    for a in actions[50:]:  # the next episode starts alike too
        (o1, r1, d1, _), (o2, r2, d2, _) = old.step(a), new.step(a)
        assert np.array_equal(o1, o2) and np.array_equal(r1, r2) and np.array_equal(d1, d2)
    naive = make()  # the same actions from a fresh start (the run's first episodes) end elsewhere
    naive.reset()
    for a in since:
        naive_obs, *_ = naive.step(a)
    assert not np.array_equal(naive_obs, obs)
    for venv in (old, new, naive):
        venv.close()


def test_vec_monitor_reports_episode_returns():
    venv = envs.make("cheetah-run", num_envs=2, action_repeat=100)
    venv.reset()
    total = np.zeros(2)
    for _ in range(10):
        _, r, d, infos = venv.step(np.zeros((2, 6)))
        total += r
    assert d.all()
    assert np.allclose([i["episode"]["r"] for i in infos], total, atol=1e-4)
    assert [i["episode"]["l"] for i in infos] == [10, 10]


def test_ppo_trains_on_pixel_env():
    from stable_baselines3 import PPO

    venv = envs.make("cheetah-run", num_envs=2, distractors="medium", action_repeat=8)
    model = PPO("CnnPolicy", venv, n_steps=16, batch_size=16, n_epochs=1, seed=0, device="cpu")
    model.learn(total_timesteps=32)
    assert model.num_timesteps == 32
    venv.close()


# ---------------------------------------------------------------- dm_control extras and agent masks

def test_agent_geoms_are_the_robot_only():
    import mujoco

    from envs.assets import model_and_assets

    def names(domain):
        m = mujoco.MjModel.from_xml_string(*model_and_assets(domain))
        flags = agent_geoms(m)
        return {mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_GEOM, g): bool(flags[g]) for g in range(m.ngeom)}

    cheetah = names("cheetah")
    assert cheetah["torso"] and cheetah["head"] and cheetah["bfoot"] and not cheetah["ground"]
    reacher = names("reacher")
    assert reacher["arm"] and reacher["finger"] and not reacher["target"] and not reacher["ground"]
    finger = names("finger")
    assert finger["proximal"] and finger["fingertip"] and not finger["cap1"]  # the spinner is not the agent


def test_agent_mask_covers_the_agent_and_nothing_else():
    sim = DMControlSimulator(get_task("cheetah-run"), 4, pixels=True, size=64, action_repeat=4, seed=0)
    batch = sim.reset(np.arange(4))
    rng = np.random.default_rng(0)
    for _ in range(5):
        batch, *_ = sim.step(rng.uniform(-1, 1, (4, 6)))
    frames = batch.frames.astype(int)
    mask = np.stack([e["agent_mask_raw"] for e in batch.extras]).astype(bool)
    sky = key_mask(batch.frames)
    assert mask.sum(axis=(1, 2)).min() > 40
    assert not (mask & sky).any(), "agent mask covers sky"
    r, b = frames[:, 0], frames[:, 2]
    # cheetah is orange (r > b), the floor blue (b > r): the mask separates them
    assert np.all(r[mask] > b[mask])
    floor = ~mask & ~sky
    assert floor.any() and np.mean(b[floor] > r[floor]) > 0.95
    # depth is finite on the agent and the camera pose is a rotation
    e = batch.extras[0]
    assert np.all(np.isfinite(e["depth"][mask[0]])) and e["depth"][mask[0]].max() < 10
    assert np.allclose(e["camera_mat"] @ e["camera_mat"].T, np.eye(3), atol=1e-6)
    assert e["geom_xpos"].shape == (sim.envs[0].physics.model.ngeom, 3)
    sim.close()


def test_env_info_has_mask_after_distractors():
    venv = envs.make("cheetah-run", num_envs=2, backend="dm_control", distractors="hard:objects", monitor=False)
    venv.reset()
    _, _, _, infos = venv.step(np.zeros((2, 6)))
    for i in infos:
        assert i["agent_mask"].shape == (64, 64) and i["shake_affine"].shape == (2, 3)
        assert np.all(i["agent_mask"] <= i["agent_mask_raw"])  # occluders only remove agent pixels
        assert i["frame"].shape == (3, 64, 64) and i["state"].shape == (17,)
    venv.close()


# ---------------------------------------------------------------- the backends agree

def test_backends_frame_the_scene_alike():
    """Same camera, assets and colours: agent placement, size, colour and the floor band match.

    EnvPool cannot be set to a physics state, so we compare statistics over several envs."""
    stats = {}
    for backend in ("envpool", "dm_control"):
        venv = envs.make("cheetah-run", num_envs=8, backend=backend, action_repeat=4, monitor=False)
        raw = venv.sim.reset(np.arange(8)).frames
        venv.close()
        sky = key_mask(raw)
        f = raw.astype(int)
        agent = (f[:, 0] > f[:, 2] + 20) & ~sky  # cheetah is orange
        floor = ~agent & ~sky
        ys, xs = zip(*(np.argwhere(a).mean(0) for a in agent), strict=False)
        floor_rows = np.flatnonzero(floor.mean(axis=(0, 2)) > 0.5)
        stats[backend] = dict(
            y=np.mean(ys), x=np.mean(xs), area=agent.sum((1, 2)).mean(),
            color=raw.transpose(0, 2, 3, 1)[agent].mean(0), floor=(floor_rows.min(), floor_rows.max()),
        )
    a, b = stats["envpool"], stats["dm_control"]
    assert abs(a["y"] - b["y"]) < 1.0 and abs(a["x"] - b["x"]) < 1.0, (a, b)
    assert abs(a["area"] - b["area"]) < 0.1 * a["area"], (a, b)
    assert np.abs(a["color"] - b["color"]).max() < 8, (a, b)
    assert np.abs(np.subtract(a["floor"], b["floor"])).max() <= 1, (a, b)


def test_backends_give_the_same_mean_return_for_a_fixed_policy():
    """A fixed linear feedback policy on state: mean returns agree within sampling noise."""
    w = np.random.default_rng(0).normal(0, 0.5, (6, 17))
    returns = {}
    for backend in ("envpool", "dm_control"):
        venv = envs.make("cheetah-run", num_envs=16, obs="state", backend=backend, action_repeat=4, seed=11)
        obs = venv.reset()
        ep = np.zeros(16)
        for _ in range(250):
            obs, r, d, _ = venv.step(np.tanh(obs @ w.T))
            ep += r
        assert d.all()
        returns[backend] = ep
        venv.close()
    a, b = returns["envpool"], returns["dm_control"]
    se = np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    assert abs(a.mean() - b.mean()) <= 3 * se + 0.05 * max(abs(a.mean()), 1.0), (a, b)
    assert a.mean() > 0.5  # the policy moves: returns are not trivially zero on both


@pytest.mark.parametrize("task", ["walker-walk", "hopper-hop", "finger-spin"])
def test_backends_run_the_same_control_timestep(task):
    """Tasks with physics substeps (walker 10, hopper 4, finger 2): one step is one *control* step on
    both backends. Zero actions from random initial states: after 100 steps the state distribution
    (bodies fallen and settled, or not yet) must agree; a substep mismatch makes them far apart."""
    n = 32
    finals = {}
    for backend in ("envpool", "dm_control"):
        venv = envs.make(task, num_envs=n, obs="state", backend=backend, seed=3, monitor=False)
        venv.reset()
        zero = np.zeros((n, *venv.action_space.shape), np.float32)
        for _ in range(100):
            obs, _, _, _ = venv.step(zero)
        finals[backend] = obs
        venv.close()
    a, b = finals["envpool"], finals["dm_control"]
    se = np.sqrt(a.var(0, ddof=1) / n + b.var(0, ddof=1) / n)
    z = np.abs(a.mean(0) - b.mean(0)) / np.maximum(se, 1e-3)
    assert np.median(z) < 2.0 and z.max() < 6.0, np.round(z, 1)
