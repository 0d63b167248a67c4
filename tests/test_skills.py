"""SOF skills: FSQ, the causal tokenizer, the first-frame decoder, the skill env, the translator's labels, and
the stages end to end on a tiny two-task walker dataset."""

import dataclasses
import json
import shutil

import gymnasium as gym
import h5py
import numpy as np
import pytest
import torch
from stable_baselines3.common.vec_env import VecEnv

from rl_laof.models.skill_models import FSQ, SkillPrior, SkillTokenizer, Translator
from rl_laof.skills.config import SkillsConfig

TINY = SkillsConfig(chunk=4, downsample=1, flow_size=8, d_model=32, heads=2, encoder_layers=1, decoder_layers=1,
                   width=8, prior_d_model=32, prior_layers=1, translator_hidden=32, tokenizer_steps=30,
                   prior_steps=20, translator_steps=20, batch_size=8, label_trajectories=1, checkpoint_every=10,
                   eval_episodes=1, fsq_levels=(5, 4, 3), frame_size=16)


@pytest.fixture(scope="module")
def skill_dataset(tmp_path_factory, gl):
    """walker-stand + walker-walk, random actions, 2 + 1 episodes of 24 steps each, 32 px, exact and RGB-estimated
    flow, merged."""
    from envs.config import DistractorConfig
    from rl_laof.data.collection import collect
    from rl_laof.data.config import CollectConfig
    from rl_laof.data.multitask import merge_datasets
    from rl_laof.flow.targets import fill_flow

    root = tmp_path_factory.mktemp("skills")
    sources = []
    for task in ("walker-stand", "walker-walk"):
        cfg = CollectConfig(task=task, expert="random", episodes=2, eval_episodes=1, heldout_bg_episodes=0,
                            val_episodes=0,
                            episode_steps=24, image_size=32, distractors=DistractorConfig.parse("hard"), workers=1,
                            label_fractions=(0.0,), label_trajectories=(1,))
        collect(cfg, root / task, progress=False)
        fill_flow(root / task, "exact", progress=False)  # the oracle tier's
        fill_flow(root / task, "estimate", progress=False)  # the default (rgb) and estimated tiers'
        sources.append(root / task)
    return merge_datasets(sources, root / "multi", progress=False)


# --------------------------------------------------------------------------- FSQ and the tokenizer

def test_fsq_codes_round_trip():
    fsq = FSQ((8, 5, 5, 5))
    assert fsq.codebook_size == 1000
    idx = torch.arange(1000)
    codes = fsq.indices_to_codes(idx)
    assert torch.equal(fsq.codes_to_indices(codes), idx)
    assert len(torch.unique(codes, dim=0)) == 1000  # one code per index
    assert codes.min() >= -1 and codes.max() <= 1
    z = torch.randn(256, 4, requires_grad=True) * 3
    q = fsq(z)
    assert torch.equal(fsq.indices_to_codes(fsq.codes_to_indices(q)), q.detach())  # quantised codes are on the grid
    for dim, levels in enumerate((8, 5, 5, 5)):  # every level is reachable, and no more
        assert len(torch.unique(q[:, dim])) <= levels
    zz = torch.randn(16, 4, requires_grad=True)  # straight-through: the gradient reaches z
    fsq(zz).sum().backward()
    assert zz.grad.abs().sum() > 0


def test_tokenizer_is_causal():
    """Changing the flow at step t and after leaves every token before t // 2^downsample unchanged (and does
    change later ones)."""
    torch.manual_seed(0)
    cfg = dataclasses.replace(TINY, chunk=8, downsample=2)  # 2 tokens, 4 steps each
    tok = SkillTokenizer(cfg, 32).eval()
    flow = torch.randn(4, 8, 2, 8, 8)
    with torch.no_grad():
        base = tok.pre_quant(flow)
        for t in range(8):
            other = flow.clone()
            other[:, t:] = torch.randn_like(other[:, t:])
            out = tok.pre_quant(other)
            first_affected = t // 4
            torch.testing.assert_close(out[:, :first_affected], base[:, :first_affected], rtol=0, atol=1e-6)
            assert (out[:, first_affected:] - base[:, first_affected:]).abs().max() > 1e-4


def test_flow_loss_weights_the_agents_cells():
    """background 1 is the plain mean L1; background 0 is the mean over the agent's cells only."""
    from rl_laof.skills.data import flow_l1

    torch.manual_seed(0)
    target, recon = torch.randn(3, 4, 2, 8, 8), torch.randn(3, 4, 2, 8, 8)
    agent = torch.rand(3, 4, 8, 8) > 0.8
    torch.testing.assert_close(flow_l1(recon, target, agent, 1.0), (recon - target).abs().mean())
    cells = agent[:, :, None].expand_as(target)
    torch.testing.assert_close(flow_l1(recon, target, agent, 0.0), (recon - target).abs()[cells].mean())


def test_decoder_uses_the_first_frame():
    torch.manual_seed(0)
    tok = SkillTokenizer(TINY, 32).eval()
    codes = tok.fsq.indices_to_codes(torch.randint(0, tok.fsq.codebook_size, (3, TINY.tokens)))
    a = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    b = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        fa, fb = tok.decode(codes, a), tok.decode(codes, b)
        assert fa.shape == (3, TINY.chunk, 2, 8, 8)
        assert (fa - fb).abs().max() > 1e-3  # same tokens, another frame: another flow
        torch.testing.assert_close(tok.decode(codes, a), fa)  # and deterministic
    frame = a.float().requires_grad_(True)
    tok.decode(codes, frame / 255 - 0.5).abs().sum().backward()
    assert frame.grad.abs().sum() > 0


def test_prior_top_k_samples_only_the_k_best():
    torch.manual_seed(0)
    prior = SkillPrior(TINY, 32, num_tasks=2).eval()
    obs = torch.randint(0, 256, (5, 9, 32, 32), dtype=torch.uint8)
    task = torch.tensor([0, 1, 0, 1, 0])
    tokens = prior.sample(obs, task, top_k=1)
    # top-1 is greedy decoding: each token is the argmax given the ones before
    logits = prior(obs, task, tokens)
    assert torch.equal(logits.argmax(-1), tokens)
    many = torch.stack([prior.sample(obs, task, top_k=3, generator=torch.Generator().manual_seed(s))
                        for s in range(20)])
    first = prior.logits(prior.context(obs, task), tokens[:, :0])[:, -1]
    allowed = first.topk(3, -1).indices
    assert all(bool(torch.isin(many[s, i, 0], allowed[i])) for s in range(20) for i in range(5))


# --------------------------------------------------------------------------- the skill env

class ScriptedEnv(VecEnv):
    """N envs; reward = 1 + env index / 10 per step; env i ends at its scripted step (then auto-resets)."""

    def __init__(self, n: int, end_at: dict[int, int]):
        super().__init__(n, gym.spaces.Box(0, 255, (9, 32, 32), np.uint8), gym.spaces.Box(-1, 1, (6,), np.float32))
        self.end_at, self.t, self.sent = end_at, 0, []
        self.frames = np.random.default_rng(0).integers(0, 256, (n, 9, 32, 32), dtype=np.uint8)

    def reset(self):
        return self.frames.copy()

    def step_async(self, actions):
        self.sent.append(np.array(actions))

    def step_wait(self):
        self.t += 1
        rew = 1 + np.arange(self.num_envs) / 10
        dones = np.array([self.end_at.get(i) == self.t for i in range(self.num_envs)])
        infos = [{"t": self.t, **({"terminal_observation": self.frames[i]} if dones[i] else {})}
                 for i in range(self.num_envs)]
        return self.frames.copy(), rew.astype(np.float32), dones, infos

    def close(self):
        pass

    def get_attr(self, *a, **k):
        return [None] * self.num_envs

    def set_attr(self, *a, **k):
        pass

    def env_method(self, *a, **k):
        return [None] * self.num_envs

    def env_is_wrapped(self, *a, **k):
        return [False] * self.num_envs


def _skill_policy(cfg=TINY):
    from rl_laof.skills.policy import SkillPolicy

    torch.manual_seed(0)
    return SkillPolicy(SkillTokenizer(cfg, 32).eval(), SkillPrior(cfg, 32, 2).eval(), Translator(cfg, 32, 6).eval(),
                       task_id=1)


def test_skill_env_sums_rewards_and_ends_the_chunk_with_the_episode():
    from agents.skill_env import SkillVecEnv

    inner = ScriptedEnv(3, end_at={1: 2})  # env 1's episode ends at the chunk's 2nd step (of 4)
    env = SkillVecEnv(inner, _skill_policy(), "tokens")
    assert env.action_space.nvec.tolist() == [60] * TINY.tokens
    obs = env.reset()
    actions = np.array([[1, 2], [3, 4], [59, 0]])
    _, rewards, dones, infos = env.step(actions)
    assert len(inner.sent) == TINY.chunk  # one decision = H env steps
    np.testing.assert_allclose(rewards, [4 * 1.0, 2 * 1.1, 4 * 1.2], rtol=1e-6)
    assert dones.tolist() == [False, True, False]
    assert infos[1]["t"] == 2 and "terminal_observation" in infos[1]  # the info of the last step of its episode
    assert infos[0]["t"] == 4
    # env actions are the translator's chunk for these tokens, bit for bit; zeros after the episode ended
    expected = env.skills.decode(env.codes(actions), torch.from_numpy(obs))
    sent = np.stack(inner.sent, 1)  # (N, H, A)
    np.testing.assert_array_equal(sent[[0, 2]], expected[[0, 2]])
    np.testing.assert_array_equal(sent[1, :2], expected[1, :2])
    assert not sent[1, 2:].any()


def test_skill_policy_replans_after_each_executed_part_of_a_chunk():
    obs = np.random.default_rng(0).integers(0, 256, (2, 9, 32, 32), dtype=np.uint8)
    for execute, plans in ((None, 2), (2, 4), (1, 8)):
        policy = _skill_policy(dataclasses.replace(TINY, execute=execute))
        calls, plan = [], policy.plan
        policy.plan = lambda o, plan=plan, calls=calls: calls.append(1) or plan(o)
        actions = [policy(obs) for _ in range(8)]
        assert len(calls) == plans and all(a.shape == (2, 6) for a in actions)
        assert all(np.abs(a).max() <= 1 for a in actions)


def test_skill_env_continuous_codes_and_kl_term():
    from agents.skill_env import SkillVecEnv

    env = SkillVecEnv(ScriptedEnv(2, {}), _skill_policy(), "continuous")
    assert env.action_space.shape == (TINY.tokens * 3,)
    env.reset()
    wild = np.full((2, TINY.tokens * 3), 5.0, np.float32)
    codes = env.codes(wild)
    assert torch.equal(codes, torch.from_numpy(np.tile(env.action_space.high, (2, 1))).view(2, TINY.tokens, 3))
    with pytest.raises(ValueError, match="tokens"):
        SkillVecEnv(ScriptedEnv(2, {}), _skill_policy(), "continuous", kl_coef=0.1)
    # the KL term lowers the chunk reward by kl_coef (log pi - log prior)
    kl_env = SkillVecEnv(ScriptedEnv(2, {}), _skill_policy(), "tokens", kl_coef=0.5)
    kl_env.agent_log_prob = lambda obs, a: np.zeros(len(a))
    obs = kl_env.reset()
    actions = np.array([[0, 1], [2, 3]])
    _, rewards, _, _ = kl_env.step(actions)
    with torch.no_grad():
        log_prior = kl_env.skills.prior.log_prob(torch.from_numpy(obs), torch.tensor([1, 1]),
                                                 torch.as_tensor(actions)).numpy()
    np.testing.assert_allclose(rewards, [4.0 + 0.5 * log_prior[0], 4.4 + 0.5 * log_prior[1]], rtol=1e-5)


# --------------------------------------------------------------------------- data and stages

def test_multitask_merge_keeps_tasks_and_per_task_labels(skill_dataset):
    from rl_laof.data import VideoDataset
    from rl_laof.data.multitask import merge_datasets, multitask_name

    ds = VideoDataset(skill_dataset)
    assert ds.task == "walker-multitask" and ds.tasks == ["walker-stand", "walker-walk"]
    assert ds.task_ids("train").tolist() == [0, 0, 1, 1] and ds.task_ids("eval").tolist() == [0, 1]
    assert ds.flow_path is not None and ds.flow_path.name == "flow-exact.h5"
    mask = ds.labels["traj-1"]  # one labelled trajectory per task
    per_episode = mask.reshape(4, 24).all(1)
    assert mask.reshape(4, 24).any(1).tolist() == per_episode.tolist()
    assert per_episode[:2].sum() == 1 and per_episode[2:].sum() == 1
    with pytest.raises(ValueError, match="already holds"):
        merge_datasets([ds.path.parents[1] / "walker-walk"], ds.path.parent)
    with pytest.raises(ValueError, match="one embodiment"):
        multitask_name(["walker-walk", "cheetah-run"])
    # the baselines take the same per-task budget: label_trajectories -> traj-<n>
    from rl_laof.imitation.config import ImitationConfig

    assert ImitationConfig(label_trajectories=1).label_split == "traj-1"
    assert ImitationConfig(label_trajectories=1, labels=1.0).label_split == "all"


def test_translator_never_sees_unlabelled_actions(skill_dataset, tmp_path):
    """The translator trained on a copy of the dataset whose unlabelled actions are garbage is bit-identical to
    the one trained on the real data; and a window with an unlabelled step cannot hand out its actions."""
    from rl_laof.data import VideoDataset
    from rl_laof.skills.data import ChunkData
    from rl_laof.skills.training import SkillRun

    copy = tmp_path / "garbage"
    shutil.copytree(skill_dataset, copy)
    ds = VideoDataset(copy)
    labelled_eps = ds.labels["traj-1"].reshape(4, 24).all(1)
    with h5py.File(copy / "dataset.h5", "r+") as f:
        for e, lab in enumerate(labelled_eps):
            if not lab:
                acts = f[f"episodes/train/{e:05d}/actions"]
                acts[...] = np.random.default_rng(e).uniform(-1, 1, acts.shape).astype(np.float32)
    weights = []
    for data_dir, run_dir in ((skill_dataset, tmp_path / "a"), (copy, tmp_path / "b")):
        if run_dir.name == "b":  # the same tokenizer for both
            run_dir.mkdir()
            for f in ("tokenizer.pt", "tokenizer_meta.json"):
                shutil.copy(tmp_path / "a" / f, run_dir / f)
        run = SkillRun(TINY, data_dir, run_dir)
        run.tokenizer(progress=False)
        weights.append(run.translator(progress=False).state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    data = ChunkData(VideoDataset(copy, flow=TINY.flow_method), TINY)
    unlabelled = np.flatnonzero(~data.labelled)
    assert len(unlabelled) and data.labelled.sum() == 2 * (24 - TINY.chunk + 1)
    with pytest.raises(ValueError, match="unlabelled"):
        data.chunk_actions(unlabelled[:1])


def test_each_flow_tier_builds_its_windows_from_only_what_it_may_read(skill_dataset, tmp_path):
    """The rgb tier's windows are the same on a copy without any simulator array or exact flow, and a tokenizer
    trains there; the oracle tier (exact flow x agent mask) differs and is zero off the agent; the tiers that need
    the simulator say what is missing; a dataset opened with another flow file is refused."""
    from conftest import strip_simulator

    from rl_laof.data import VideoDataset
    from rl_laof.data import format as fmt
    from rl_laof.skills.data import ChunkData
    from rl_laof.skills.training import SkillRun

    tiers = {t: dataclasses.replace(TINY, flow_tier=t) for t in ("rgb", "estimated", "oracle")}
    windows = {t: ChunkData(VideoDataset(skill_dataset, flow=c.flow_method), c) for t, c in tiers.items()}
    assert windows["rgb"].agent.all()  # no mask: every cell is the agent's
    assert not windows["oracle"].agent.all() and not windows["estimated"].agent.all()
    oracle = windows["oracle"]
    assert (oracle.flow.permute(1, 0, 2, 3)[:, ~oracle.agent] == 0).all()  # cut to the agent's cells
    assert not torch.equal(windows["rgb"].flow, oracle.flow)
    video = tmp_path / "video"
    shutil.copytree(skill_dataset, video)
    strip_simulator(video)
    stripped = ChunkData(VideoDataset(video, flow="estimate"), tiers["rgb"])
    assert torch.equal(stripped.flow, windows["rgb"].flow) and stripped.flow_scale == windows["rgb"].flow_scale
    run = SkillRun(tiers["rgb"], video, tmp_path / "rgb-run")
    run.tokenizer(progress=False)
    assert run.ds.flow_path.name == "flow-estimate.h5"
    with pytest.raises(fmt.DatasetError, match="no exact flow"):
        SkillRun(tiers["oracle"], video, tmp_path / "oracle-run")
    with pytest.raises(ValueError, match="no agent mask for flow_tier 'estimated'"):
        SkillRun(tiers["estimated"], video, tmp_path / "estimated-run")
    with pytest.raises(ValueError, match="reads flow-estimate.h5"):
        ChunkData(VideoDataset(skill_dataset, flow="exact"), tiers["rgb"])


@pytest.mark.slow
def test_skills_cli_all_stages(skill_dataset, tmp_path):
    from rl_laof.commands.skills import main

    out = tmp_path / "run"
    sets = [f"{k}={json.dumps(v) if isinstance(v, tuple | list) else v}" for k, v in dataclasses.asdict(TINY).items()
            if k != "preset"]
    argv = ["all", "--dataset", str(skill_dataset), "--out", str(out), "--no-progress",
            *sum((["--set", s] for s in sets), [])]
    report = main(argv)
    assert report["config"]["fsq_levels"] == (5, 4, 3)
    assert report["flow_tier"] == "rgb" and report["flow_file"].endswith("flow-estimate.h5")
    assert set(report["returns"]) == {"walker-stand", "walker-walk"}
    for task in report["returns"]:
        assert np.isfinite(report["returns"][task]["train"]["mean"])
    tokens = report["tokens"]
    assert tokens["zero_flow_l1"] > 0 and np.isfinite(tokens["flow_l1"]) and 1 <= tokens["codes_used"] <= 1000
    assert np.isfinite(tokens["prior_nll_per_token"])
    assert tokens["split"] == "eval" and 0 < tokens["code_usage"] <= 1 and tokens["perplexity"] >= 1
    assert np.isfinite(tokens["recon_vs_zero"]) and np.isfinite(tokens["recon_vs_mean"])
    assert report["collapsed"] == tokens["collapsed"]
    for f in ("tokenizer.pt", "prior.pt", "translator.pt", "report.json", "config.json"):
        assert (out / f).exists()
    assert not (out / "checkpoints" / "tokenizer.pt").exists()  # finished stages leave no checkpoint
    with pytest.raises(ValueError, match="another config"):
        main(["pretrain", "--dataset", str(skill_dataset), "--out", str(out), "--set", "chunk=8", "--no-progress"])
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["tasks"] == ["walker-stand", "walker-walk"]


@pytest.mark.slow
def test_train_with_sof_skills(skill_dataset, tmp_path):
    """PPO over skill tokens: one decision per chunk, env steps counted, gamma^H, actor distilled from the prior."""
    from agents.config import TrainConfig
    from rl_laof.pipeline import agent as train
    from rl_laof.skills.training import SkillRun

    run = SkillRun(TINY, skill_dataset, tmp_path / "skills")
    run.tokenizer(False), run.prior(False), run.translator(False)
    for action in ("tokens", "continuous"):
        cfg = TrainConfig(task="walker-walk", latent="sof", skills=str(run.dir), skill_action=action, image_size=32,
                          num_envs=2, total_steps=64, n_steps=16, batch_size=8, n_epochs=1, eval_every=10**6,
                          checkpoint_every=10**6, eval_episodes=1, final_eval_episodes=1, width=8, features=32,
                          hidden=32, skill_init_steps=5, kl_coef=0.1 if action == "tokens" else 0.0)
        report = train(cfg, tmp_path / action, progress=False)
        assert report["chunk"] == TINY.chunk and report["steps"] == report["decisions"] * TINY.chunk
        assert report["steps"] >= 64
        assert report["sb3_config"]["gamma"] == pytest.approx(0.99 ** TINY.chunk)
        assert report["initialised"] and report["initialised"][0].startswith("actor<-prior")
        assert np.isfinite(report["final"]["mean"])
    with pytest.raises(ValueError, match="not walker-run"):
        train(dataclasses.replace(cfg, task="walker-run"), tmp_path / "bad", progress=False)


@pytest.mark.slow
def test_a_resumed_skill_agent_with_the_kl_term_is_the_uninterrupted_one(skill_dataset, tmp_path):
    """Resuming replays the skill env (agents.resume), whose KL reward reads the agent's log-density: the resumed
    run of a KL-shaped skill agent evaluates and ends as the uninterrupted one, bit for bit."""
    import io
    import zipfile

    from agents.config import TrainConfig
    from agents.training import train
    from rl_laof.skills.training import SkillRun

    run = SkillRun(TINY, skill_dataset, tmp_path / "skills")
    run.tokenizer(False), run.prior(False), run.translator(False)
    cfg = TrainConfig(task="walker-walk", latent="sof", skills=str(run.dir), skill_action="tokens", image_size=32,
                      num_envs=2, total_steps=192, n_steps=16, batch_size=8, n_epochs=1, eval_every=96,
                      checkpoint_every=96, eval_episodes=1, final_eval_episodes=1, width=8, features=32, hidden=32,
                      skill_init_steps=5, kl_coef=0.1)
    full = train(cfg, tmp_path / "full", progress=False)
    assert train(cfg, tmp_path / "cut", progress=False, stop_at=16)["checkpoint_step"] == 16  # decisions
    resumed = train(cfg, tmp_path / "cut", resume=True, progress=False)
    assert [(h["step"], h["mean"]) for h in resumed["eval_history"]] == [(h["step"], h["mean"])
                                                                        for h in full["eval_history"]]
    assert resumed["final"]["returns"] == full["final"]["returns"]
    weights = []
    for name in ("full", "cut"):
        with zipfile.ZipFile(tmp_path / name / "final_model.zip") as z:
            weights.append(torch.load(io.BytesIO(z.read("policy.pth")), weights_only=False))
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_a_diverging_stage_stops_at_once_and_never_saves_a_non_finite_value(skill_dataset, tmp_path):
    from conftest import assert_saved_values_finite

    from rl_laof.finite import Diverged
    from rl_laof.skills.training import SkillRun

    run = SkillRun(dataclasses.replace(TINY, lr=1e9, checkpoint_every=1), skill_dataset, tmp_path / "run")
    with pytest.raises(Diverged, match=r"(loss|grad norm) is (nan|inf|-inf) at step \d+; lower the learning rate"):
        run.tokenizer(progress=False)
    assert not (tmp_path / "run" / "tokenizer.pt").exists()
    assert_saved_values_finite(tmp_path / "run")
