"""Issue 32: a tokenizer that uses its codes, measured on held-out windows; a collapsed one flagged and refused by
the benchmark; each PPO seed on the skills run of its own seed. Tiny tensors and stand-ins, no training."""

import importlib
import sys
import types
from pathlib import Path

import pytest
import torch

from agents.config import TrainConfig
from rl_laof.skills import evaluation

ROOT = Path(__file__).resolve().parents[1]
H, S, CODES = 4, 2, 8


class FakeWindows:
    """ChunkData's reading side: window i is the constant ``values[i]`` over its H steps, 2 channels, S x S cells."""

    def __init__(self, values):
        self.flow = torch.tensor(values, dtype=torch.float32)[:, None, None, None, None].expand(-1, H, 2, S, S)
        self.task = torch.zeros(len(values), dtype=torch.long)

    def __len__(self):
        return len(self.flow)

    def flow_windows(self, idx):
        return self.flow[torch.as_tensor(idx)]

    def agent_cells(self, idx):
        return torch.ones(len(idx), H, S, S, dtype=torch.bool)

    def first_frame(self, idx):
        return torch.zeros(len(idx), 3, 4, 4, dtype=torch.uint8)


class FakeTokenizer:
    """Two tokens per window, each the window's value (mod the codebook); reconstructs half the flow."""

    flow_scale = 1.0
    fsq = types.SimpleNamespace(codebook_size=CODES, codes_to_indices=lambda codes: codes.long())

    def encode(self, flow):
        return flow[:, :2, 0, 0, 0].round().remainder(CODES)

    def __call__(self, flow, frame):
        return 0.5 * flow, self.encode(flow)


def _report(monkeypatch, train_values, eval_values):
    splits = []

    def chunk_data(ds, cfg, split, flow_scale=None):
        splits.append(split)
        return FakeWindows(eval_values)

    monkeypatch.setattr(evaluation, "ChunkData", chunk_data)
    run = types.SimpleNamespace(ds=None, cfg=None, train_data=FakeWindows(train_values))
    report = evaluation.token_report(run, FakeTokenizer(), None)
    assert splits == ["eval"]
    return report


def test_code_usage_is_measured_on_the_held_out_windows(monkeypatch):
    # training windows all map to code 0; held-out ones to every code: the figure follows the held-out ones
    report = _report(monkeypatch, train_values=[0.0] * 16, eval_values=[float(i % CODES) for i in range(16)])
    assert report["split"] == "eval" and report["eval_windows"] == 16
    assert report["code_usage"] == 1.0 and report["codes_used"] == CODES and report["code_samples"] == 32
    assert report["code_usage_over"] == "token positions pooled"
    assert report["code_usage_per_position"] == [1.0, 1.0]
    assert report["perplexity"] == pytest.approx(CODES)
    assert report["collapsed"] is False
    # and the other way round: a tokenizer that used every code on training windows but one on held-out ones
    report = _report(monkeypatch, train_values=[float(i % CODES) for i in range(16)], eval_values=[3.0] * 16)
    assert report["codes_used"] == 1 and report["code_usage"] == 1 / CODES and report["collapsed"] is True


def test_recon_ratios_on_a_known_toy():
    # target 1 or 3 (mean of squares 5), recon half of it (MSE 1.25), the mean window 2 (MSE 1)
    target = torch.tensor([1.0, 3.0] * 4).reshape(8, 1)
    out = evaluation.recon_errors(0.5 * target, target, torch.tensor([2.0]))
    assert out["flow_mse"] == pytest.approx(1.25) and out["zero_flow_mse"] == pytest.approx(5.0)
    assert out["mean_window_mse"] == pytest.approx(1.0)
    assert out["recon_vs_zero"] == pytest.approx(0.25) and out["recon_vs_mean"] == pytest.approx(1.25)


def test_the_mean_window_is_that_of_the_training_windows(monkeypatch):
    train = FakeWindows([1.0, 2.0, 6.0])
    assert torch.allclose(evaluation.mean_window(train, batch=2), torch.full((H, 2, S, S), 3.0))
    # in the report: held-out windows of 3 against a training mean of 3 -> mean-window MSE 0, zero-flow MSE 9
    report = _report(monkeypatch, train_values=[1.0, 2.0, 6.0], eval_values=[3.0, 3.0])
    assert report["zero_flow_mse"] == pytest.approx(9.0) and report["mean_window_mse"] == pytest.approx(0.0)
    assert report["recon_vs_zero"] == pytest.approx(0.25)


def test_code_usage_below_the_floor_is_collapsed():
    few = torch.arange(20).reshape(10, 2) % 20  # 20 of 1000 codes: 0.02 < the floor 0.05
    assert evaluation.code_stats(few, 1000)["collapsed"] is True
    many = torch.arange(200).reshape(100, 2)
    stats = evaluation.code_stats(many, 1000)
    assert stats["code_usage"] == 0.2 and stats["collapsed"] is False


@pytest.fixture
def bench_skills(monkeypatch, tmp_path):
    monkeypatch.setenv("RL_LAOF_RUNS", str(tmp_path / "runs"))
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    module = importlib.import_module("bench_skills")
    monkeypatch.setattr(module, "RECORDS", tmp_path / "records")  # a full run's records stay out of the results
    return module


def test_a_seed_s_record_stands_for_its_configs_and_spares_a_fresh_clone_its_runs(monkeypatch, bench_skills,
                                                                                 tmp_path):
    from agents.config import TRAIN_PRESETS
    from rl_laof.presets import from_preset

    built = []

    def seed_values(size, tag, root, base, seed, timings, progress):
        built.append(seed)
        timings["sof_s"] = 1.5
        return {"ret_sof": 10.0 + seed}

    monkeypatch.setattr(bench_skills, "seed_values", seed_values)
    base = from_preset(TrainConfig, TRAIN_PRESETS, "quick", task="walker-walk", distractors="laom", action_repeat=2)
    root = tmp_path / "runs" / "bench" / "skills" / "full"
    rec = bench_skills.seed_record(bench_skills.FULL, "full", root, base, 1, False)
    assert rec["values"] == {"ret_sof": 11.0} and rec["timings"] == {"sof_s": 1.5} and built == [1]
    assert (tmp_path / "records" / "s1.json").exists()
    assert bench_skills.seed_record(bench_skills.FULL, "full", root, base, 1, False) == rec and built == [1]
    other = {**bench_skills.FULL, "ppo_steps": 40_000}  # another budget: the record stands for nothing
    bench_skills.seed_record(other, "full", root, base, 1, False)
    assert built == [1, 1]
    identity = bench_skills.seed_identity(bench_skills.FULL, base, 2)
    assert identity["lam"]["seed"] == identity["imitation"]["seed"] == 2
    assert {row: c["seed"] for row, c in identity["skills"].items()} == {row: 2 for row in bench_skills.SOF_TIERS}


def test_the_benchmark_refuses_a_collapsed_tokenizer(monkeypatch, bench_skills):
    report = _report(monkeypatch, train_values=[0.0] * 8, eval_values=[5.0] * 1000)  # every window -> one code
    assert report["collapsed"] is True and report["codes_used"] == 1
    with pytest.raises(bench_skills.CollapsedTokenizer, match=r"runs/sof-s3: .*collapsed: code usage 0\.1250 "
                                                              r"\(1 of 8 codes"):
        bench_skills.refuse_collapsed(report, "runs/sof-s3")
    healthy = _report(monkeypatch, train_values=[0.0] * 8, eval_values=[float(i % CODES) for i in range(8)])
    bench_skills.refuse_collapsed(healthy, "runs/sof-s0")  # not refused


def test_each_ppo_seed_loads_the_skills_of_its_own_seed(monkeypatch, tmp_path):
    import agents.training as agent_training
    from rl_laof import pipeline

    cfg = TrainConfig(latent="sof", task="walker-walk", seed=3, skills=str(tmp_path / "sof-s{seed}"))
    assert cfg.resolved_skills == str(tmp_path / "sof-s3") and pipeline.skills(cfg) == tmp_path / "sof-s3"
    other = TrainConfig(latent="sof", task="walker-walk", seed=3, skills_seed=1, skills=str(tmp_path / "sof-s{seed}"))
    assert other.resolved_skills == str(tmp_path / "sof-s1") and other.tag.endswith("-k1-pixels-quick-s3")

    recorded = {"sof-s0": 0, "sof-s3": 3, "wrong-s3": 0}  # folder -> the seed its config.json records

    def load_skills(run):  # a skills run's models and metadata
        translator = types.SimpleNamespace(cfg=types.SimpleNamespace(frame_stack=3))
        return None, None, translator, {"tasks": ["walker-walk"], "image_size": 64, "action_repeat": 2,
                                        "config": {"seed": recorded[Path(run).name]}}

    monkeypatch.setattr(agent_training, "load_skills", load_skills)
    monkeypatch.setattr(agent_training, "SkillPolicy", lambda *args: args)
    for seed in (0, 3):
        c = TrainConfig(latent="sof", task="walker-walk", seed=seed, action_repeat=2,
                        skills=str(tmp_path / "sof-s{seed}"))
        _, meta = agent_training.load_skill_space(c, c.resolved_skills)
        assert meta["config"]["seed"] == seed and meta["run"] == str(tmp_path / f"sof-s{seed}")
    # a folder of another seed is refused: the one the {seed} folder holds, or the one skills_seed asks for
    wrong = TrainConfig(latent="sof", task="walker-walk", seed=3, action_repeat=2,
                        skills=str(tmp_path / "wrong-s{seed}"))
    with pytest.raises(ValueError, match=r"wrong-s3: the skills run is of skills seed 0 \(not the agent's seed 3\)"):
        agent_training.load_skill_space(wrong, wrong.resolved_skills)
    c = TrainConfig(latent="sof", task="walker-walk", seed=3, action_repeat=2, skills_seed=1,
                    skills=str(tmp_path / "sof-s0"))
    with pytest.raises(ValueError, match=r"skills seed 0 \(not skills_seed 1\)"):
        agent_training.load_skill_space(c, c.resolved_skills)
    # a fixed folder without {seed} and no skills_seed: loaded as given (the folder's own seed)
    c = TrainConfig(latent="sof", task="walker-walk", seed=3, action_repeat=2, skills=str(tmp_path / "sof-s0"))
    assert agent_training.load_skill_space(c, c.resolved_skills)[1]["config"]["seed"] == 0


def test_the_benchmark_gives_ppo_seed_s_the_models_of_seed_s(bench_skills, tmp_path):
    from agents.config import TRAIN_PRESETS
    from rl_laof.presets import from_preset

    base = from_preset(TrainConfig, TRAIN_PRESETS, "quick", task="walker-walk", distractors="hard", action_repeat=2)
    for row in bench_skills.PPO_ROWS:
        cfg = bench_skills.ppo_config(base, row, 2, tmp_path)
        assert cfg.seed == 2
        if cfg.latent == "sof":
            assert cfg.resolved_skills == str(tmp_path / "sof-s2") and cfg.asked_skills_seed == 2
        else:
            assert cfg.resolved_latent_policy == str(tmp_path / "walker-walk" / "laof_bc-s2")
            assert cfg.latent_seed == 2
    assert bench_skills.ppo_config(base, "sof_kl", 0, tmp_path).kl_coef > 0
    assert bench_skills.ppo_config(base, "sof", 0, tmp_path).kl_coef == 0


def test_each_sof_row_learns_its_skills_on_its_own_flow_tier(monkeypatch, bench_skills, tmp_path):
    import rl_laof.skills.training as skills_training

    made = {}

    class Stop(Exception):
        pass

    def skill_run(cfg, dataset, run_dir):
        made[Path(run_dir).name] = cfg.flow_tier
        raise Stop

    monkeypatch.setattr(skills_training, "SkillRun", skill_run)
    for row in bench_skills.SOF_TIERS:
        with pytest.raises(Stop):
            bench_skills.sof_run(bench_skills.QUICK, tmp_path / "data", tmp_path, 3, False, row)
    assert made == {"sof-s3": "rgb", "sof_oracle-s3": "oracle"}  # the PPO rows' "sof-s{seed}" is the default tier


def test_a_run_of_five_seeds_writes_skills_json_and_fewer_the_partial_one(monkeypatch, bench_skills):
    order, written = [], []

    def seed_values(size, tag, root, base, seed, timings, progress):
        order.append(seed)
        out = {"sof_code_usage": 0.6 + 0.01 * seed, "sof_recon_vs_zero": 0.5, "ret_sof": 80.0 + seed,
               "ret_laof_bc": 70.0 - seed, "ppo_sof": 60.0 + seed, "ppo_sof_first_eval": 40.0,
               "ppo_action_residual": 30.0 - seed}
        return out

    monkeypatch.setattr(bench_skills, "seed_values", seed_values)
    monkeypatch.setattr(bench_skills, "write_result", lambda name, result: written.append((name, result)))
    for seeds, name in ((5, "skills"), (3, "skills_partial")):
        monkeypatch.setattr(sys, "argv", ["benchmarks/bench_skills.py", "--seeds", str(seeds), "--no-progress"])
        result = bench_skills.main()
        assert written[-1][0] == name and result["seeds"] == seeds and "seeded_from_readme" not in result
    assert order == [0, 1, 2, 3, 4]  # seed-major; the 3-seed run reads seeds 0-2 from their records
    result = written[0][1]
    assert result["flow_tier"] == "rgb" and result["sof_flow_tiers"] == {"sof": "rgb", "sof_oracle": "oracle"}
    assert result["distractors"] == "laom" and "sof_oracle" in result["privileged"]
    assert result["ret_sof_seeds"] == [80.0, 81.0, 82.0, 83.0, 84.0] and result["ret_sof_lo"] <= 82.0
    assert 0 < result["p_sof_vs_laof_bc"] < 0.05 and "p_ppo_sof_vs_action_residual" in result
    assert result["targets"] == {"sof_code_usage_ge_0.5": True, "ret_sof_lo_gt_ret_laof_bc_hi": True,
                                 "ppo_sof_lo_gt_ppo_action_residual_hi": True,
                                 "ppo_sof_ge_1.25_ppo_sof_first_eval": True}
    monkeypatch.setattr(sys, "argv", ["benchmarks/bench_skills.py", "--quick", "--no-progress"])
    assert bench_skills.main()["seeds"] == 2 and len(written) == 2  # the smoke run: 2 seeds, writes nothing
