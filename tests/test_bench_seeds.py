"""The benchmarks' seeds (issue 31): each seed of bench_imitation on its own dataset and latent model, each PPO
seed of bench_train on the latent policy of its own imitation seed, Holm-adjusted claims over seeds, and a
partial run kept apart from the committed table. No training: the training functions are replaced."""

import argparse
import dataclasses
import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from rl_laof import stats

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def bench(monkeypatch, tmp_path):
    """The benchmark modules (benchmarks/ on sys.path, as when run as scripts), runs under ``tmp_path``."""
    monkeypatch.setenv("RL_LAOF_RUNS", str(tmp_path / "runs"))
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    mods = argparse.Namespace(**{name: importlib.import_module(name)
                                 for name in ("bench_latent_quality", "bench_imitation", "bench_train")})
    for name in ("bench_imitation", "bench_train"):  # a full run's records stay out of the committed results
        monkeypatch.setattr(getattr(mods, name), "RECORDS", tmp_path / "records" / name)
    yield mods


def _run(monkeypatch, module, argv: list[str]) -> dict:
    monkeypatch.setattr(sys, "argv", [f"benchmarks/{module.__name__}.py", *argv])
    return module.main()


ROWS = ["bc_labels", "lapo_bc", "laof_bc", "laof_lafp", "laof_bc_sample", "laof", "action_residual",
        "labels_residual", "lapo", "none", "drq"]


def _returns(name: str, seed: int) -> float:
    """A made-up raw return per method and seed (distinct, with one decimal)."""
    return round(100 + 10 * ROWS.index(name) + 3.1 * seed + (seed * seed) % 3, 1)


def test_lam_run_dir_is_the_latent_quality_run_of_that_seed(bench, monkeypatch, tmp_path):
    lq = bench.bench_latent_quality
    ran, trained = [], []
    monkeypatch.setattr(lq, "run", lambda cell, name, seed, quick, progress=True: ran.append((cell, name, seed)))
    monkeypatch.setattr(lq, "dataset", lambda cell, seed, quick, progress=True: tmp_path / f"{cell}-d{seed}")
    monkeypatch.setattr("rl_laof.lam.training.train_lam",
                        lambda cfg, data, out, progress=True: trained.append((cfg.seed, data, out)))
    path = lq.lam_run_dir("cheetah_laom", "laof", 3, quick=True, progress=False)
    assert ran == [("cheetah_laom", f"laof_{lq.DEFAULT_TIER}", 3)]
    runs = tmp_path / "runs" / "bench" / "latent_quality" / "quick" / "cheetah_laom"
    assert path == runs / f"laof_{lq.DEFAULT_TIER}-s3"
    assert trained == [(3, tmp_path / "cheetah_laom-d3", path)]  # no model in the folder yet: trained there
    (path / "model.pt").parent.mkdir(parents=True)
    (path / "model.pt").touch()
    (path / "report.json").touch()
    assert lq.lam_run_dir("cheetah_laom", "lapo", 1, quick=True) == path.with_name("lapo-s1")  # no model: trains
    trained.clear()
    assert lq.lam_run_dir("cheetah_laom", "laof", 3, quick=True) == path and trained == []  # finished: found


def _fake_imitation(bench, monkeypatch, tmp_path):
    """Replace bench_imitation's data, latent models and training; returns the list of imitate calls."""
    bi, lq = bench.bench_imitation, bench.bench_latent_quality
    calls = []
    monkeypatch.setattr(lq, "dataset", lambda cell, seed, quick, progress=True: tmp_path / f"{cell}-data-s{seed}")
    monkeypatch.setattr(lq, "lam_run_dir",
                        lambda cell, name, seed, quick=False, progress=True: tmp_path / "lam" / f"{name}-s{seed}")
    monkeypatch.setattr(bi, "mean_return", lambda data: 200.0 + int(str(data)[-1]))  # data seed s: 200 + s

    def imitate(cfg, data, out, progress=True):
        calls.append((cfg, Path(data), Path(out)))
        name = Path(out).name.rsplit("-s", 1)[0]
        ret = _returns(name, cfg.seed)
        return {"run_dir": str(out), "config": json.loads(json.dumps(cfg.to_dict())),
                "returns": {"train": {"mean": ret}, "eval": {"mean": ret - 1}}, "action_mse": {"eval": 0.5},
                "spread": 0.8}

    monkeypatch.setattr(bi, "imitate", imitate)
    monkeypatch.setattr(bi, "random_returns", lambda data, cfg, root, progress: {"train": {"mean": 10.0},
                                                                                 "eval": {"mean": 9.0}})
    monkeypatch.setattr(bi, "latencies", lambda records0, frame_stack, root: {})
    monkeypatch.setattr(bi, "plot_normalised_returns", lambda *a, **k: None)
    return calls


def test_imitation_seed_s_uses_its_own_dataset_and_latent_model(bench, monkeypatch, tmp_path):
    bi = bench.bench_imitation
    calls = _fake_imitation(bench, monkeypatch, tmp_path)
    methods = ["bc_labels", "lapo_bc", "laof_bc", "laof_lafp"]
    r = _run(monkeypatch, bi, ["--quick", "--no-progress", "--seeds", "3", "--methods", ",".join(methods)])
    seed_major = [(s, f"{m}-s{s}") for s in range(3) for m in methods]
    assert [(c[0].seed, c[2].name) for c in calls] == seed_major
    lams = {"lapo_bc": "lapo", "laof_bc": "laof", "laof_lafp": "laof"}
    for cfg, data, out in calls:
        name = out.name.rsplit("-s", 1)[0]
        assert data == tmp_path / f"cheetah_laom-data-s{cfg.seed}"
        assert out == bi.run_dir(name, cfg.seed, "laom", quick=True)
        assert cfg.lam_run == (str(tmp_path / "lam" / f"{lams[name]}-s{cfg.seed}") if name in lams else None)
    assert r["datasets"] == [str(tmp_path / f"cheetah_laom-data-s{s}") for s in range(3)]
    assert r["data_returns"] == [200.0, 201.0, 202.0] and r["data_return"] == 201.0
    # each seed normalised by its own dataset's return
    assert r["ret_laof_bc_seeds"] == [round(_returns("laof_bc", s) / (200 + s), 3) for s in range(3)]
    # the claims: one-sided permutation tests over the seeds' values, Holm-adjusted as one family
    values = {m: [_returns(m, s) / (200 + s) for s in range(3)] for m in methods}
    raw = {k: stats.permutation_test(values[a], values[b], alternative="greater") for k, (a, b) in bi.CLAIMS.items()}
    adjusted = stats.holm(raw)
    assert len(raw) == 3
    for k in raw:
        assert r[f"p_raw_{k}"] == float(f"{raw[k]:.3g}")
        assert r[f"p_{k}"] == float(f"{adjusted[k]:.3g}")
    assert any(adjusted[k] > raw[k] for k in raw)  # adjusted, not the raw values again
    assert r["spread_laof_bc"] == 0.8 and r["targets"]["spread_laof_bc_ge_0.7"] is True


def test_imitation_records_resume_a_fresh_clone_without_data_or_models(bench, monkeypatch, tmp_path):
    """Each finished run leaves a record; a second invocation (runs/ gone, as on a fresh clone) rebuilds the same
    table from the records alone, and a record of another config is not used."""
    import shutil

    bi, lq = bench.bench_imitation, bench.bench_latent_quality
    calls = _fake_imitation(bench, monkeypatch, tmp_path)
    argv = ["--quick", "--no-progress", "--seeds", "2", "--methods", "bc_labels,laof_bc"]
    first = _run(monkeypatch, bi, argv)
    assert len(calls) == 4
    records = bi.records_dir("laom", quick=True)
    assert sorted(p.name for p in records.glob("*-s*.json")) == [f"{m}-s{s}.json" for m in ("bc_labels", "laof_bc")
                                                                for s in (0, 1)]
    kept = tmp_path / "kept"
    shutil.copytree(records, kept)
    shutil.rmtree(tmp_path / "runs")  # a fresh clone: no runs, no datasets, no models; the records come back
    shutil.copytree(kept, records)

    def refuse(*a, **k):
        raise AssertionError("a recorded run needs neither data nor training")

    monkeypatch.setattr(bi, "imitate", refuse)
    monkeypatch.setattr(lq, "dataset", refuse)
    monkeypatch.setattr(lq, "lam_run_dir", refuse)
    second = _run(monkeypatch, bi, argv)
    for key in ("ret_laof_bc_seeds", "ret_bc_labels_seeds", "datasets", "data_returns", "spread_laof_bc"):
        assert second[key] == first[key], key
    # a record of another config stands for nothing: that run trains again
    rec = json.loads((records / "laof_bc-s1.json").read_text())
    rec["identity"]["imitation"]["steps"] += 1
    (records / "laof_bc-s1.json").write_text(json.dumps(rec))
    calls = _fake_imitation(bench, monkeypatch, tmp_path)
    _run(monkeypatch, bi, argv)
    assert [out.name for _, _, out in calls] == ["laof_bc-s1"]


def test_imitation_variants_run_only_by_name(bench, monkeypatch, tmp_path):
    bi = bench.bench_imitation
    assert set(bi.VARIANTS).isdisjoint(bi.METHODS)
    calls = _fake_imitation(bench, monkeypatch, tmp_path)
    _run(monkeypatch, bi, ["--quick", "--no-progress", "--seeds", "1", "--methods", "laof_bc_sample"])
    (cfg, _, out), = calls
    assert (cfg.latent, cfg.policy, cfg.decoder, out.name) == ("laof", "bc", "sample", "laof_bc_sample-s0")


def test_imitation_keeps_no_rows_of_other_datasets(bench):
    bi = bench.bench_imitation
    args = argparse.Namespace(quick=False, level="laom")
    datasets = [f"runs/datasets/cheetah-run/laom-ar4-quick-s{s}-lq" for s in range(5)]
    old_one_dataset = {"dataset": "runs/datasets/cheetah-run/laom-ar4-quick-s0", "level": "laom", "seeds": 5,
                       "ret_bc_labels_seeds": [0.1] * 5}
    assert bi.kept_rows(old_one_dataset, ["laof_bc"], args, datasets, 5) == {}  # other data: nothing kept
    same = {**old_one_dataset, "datasets": [f"/elsewhere/{d}" for d in datasets]}
    assert bi.kept_rows(same, ["laof_bc"], args, datasets, 5) == {"bc_labels": {"ret": [0.1] * 5}}


def _fake_train(bench, monkeypatch):
    """Replace bench_train's env timing, imitation runs and PPO; returns (train calls, imitation_run calls)."""
    bt, bi = bench.bench_train, bench.bench_imitation
    runs, built = [], []
    monkeypatch.setattr(bt, "env_only_sps", lambda cfg: 100.0)
    monkeypatch.setattr(bi, "imitation_run",
                        lambda name, seed, level="laom", quick=False, progress=True: built.append((name, seed, level)))

    def train(cfg, out, resume=False, progress=True):
        runs.append((cfg, Path(out)))
        row = Path(out).name.rsplit("-s", 1)[0]
        ret = _returns(row, cfg.seed)
        val = ret + (500.0 if row == "laof_lafp" else 0.0)  # the last periodic evaluation: the choice's split
        return {"eval_history": [{"step": 0, "mean": 10.0}, {"step": 2048, "mean": val}], "final": {"mean": ret},
                "best_eval": {"mean": ret}, "steps_per_s": 80.0}

    monkeypatch.setattr(bt, "train", train)
    written = []
    monkeypatch.setattr(bt, "write_result", lambda name, result: written.append(name))
    return runs, built, written


def test_train_records_resume_without_runs(bench, monkeypatch, tmp_path):
    """Each PPO run leaves a committed record; a second invocation with runs/ gone trains nothing."""
    bt = bench.bench_train
    runs, built, _ = _fake_train(bench, monkeypatch)
    argv = ["--no-progress", "--seeds", "2", "--latents", "laof,none"]
    first = _run(monkeypatch, bt, argv)
    assert sorted(p.name for p in bt.RECORDS.glob("*.json")) == ["laof-s0.json", "laof-s1.json", "none-s0.json",
                                                                 "none-s1.json"]
    runs.clear()
    built.clear()
    second = _run(monkeypatch, bt, argv)
    assert runs == [] and built == []
    for key in ("ret_laof_seeds", "ret_none_seeds", "first_eval_laof_seeds", "curves", "latent_policies"):
        assert second[key] == first[key], key
    rec = json.loads((bt.RECORDS / "none-s1.json").read_text())
    rec["identity"]["train"]["total_steps"] += 1  # a record of another config stands for nothing
    (bt.RECORDS / "none-s1.json").write_text(json.dumps(rec))
    _run(monkeypatch, bt, argv)
    assert [out.name for _, out in runs] == ["none-s1"]


def test_ppo_seed_s_acts_around_imitation_seed_s(bench, monkeypatch):
    bt, bi = bench.bench_train, bench.bench_imitation
    runs, built, written = _fake_train(bench, monkeypatch)
    r = _run(monkeypatch, bt, ["--no-progress", "--seeds", "5"])
    assert [(c.seed, out.name) for c, out in runs] == [(s, f"{row}-s{s}") for s in range(5) for row in bt.ROWS]
    assert bt.IMITATION["laof"] == "laof_bc"  # the main job's start: TrainConfig's default latent policy
    for cfg, out in runs:
        row = out.name.rsplit("-s", 1)[0]
        assert out.parent == bt.run_root(False)
        if row in bt.IMITATION:
            assert cfg.latent_policy == str(bi.run_dir(bt.IMITATION[row], cfg.seed, "laom", quick=False))
            assert cfg.latent_seed == cfg.seed and cfg.resolved_latent_seed == cfg.seed
            assert cfg.policy == bi.METHODS[bt.IMITATION[row]].get("policy", "bc")
        else:
            assert cfg.latent_policy is None and cfg.latent == "none"
    assert sorted(built) == sorted((bt.IMITATION[row], s, "laom") for s in range(5) for row in bt.IMITATION)
    assert written == ["train"]  # every row, 5 seeds: the table's file
    assert r["frames"] == r["total_steps"] * r["action_repeat"] == 240_000
    values = {row: [_returns(row, s) for s in range(5)] for row in bt.ROWS}
    raw = {k: stats.permutation_test(values[a], values[b], alternative="greater") for k, (a, b) in bt.CLAIMS.items()}
    adjusted = stats.holm(raw)
    assert set(raw) == {"laof_vs_action_residual", "laof_vs_drq", "laof_vs_none", "laof_vs_lapo"}
    for k in raw:
        assert r[f"p_{k}"] == float(f"{adjusted[k]:.3g}") and r[f"p_raw_{k}"] == float(f"{raw[k]:.3g}")
    assert r["ret_laof_seeds"] == values["laof"] and "ret_laof_lo" in r and "sps_env_only" in r
    # the main job's start is chosen on val (the last periodic evaluations), not on the reported final returns
    assert r["start_choice"]["chosen"] == "lafp" and r["start_choice"]["default"] == "bc"
    assert r["start_choice"]["agrees"] is False and r["val_laof_lafp"] > r["val_laof"]
    assert set(r["targets"]) == {"ret_laof_lo_gt_ret_action_residual_hi", "ret_laof_lo_gt_ret_drq_hi",
                                 "ret_laof_ge_1.25_first_eval_laof", "sps_laof_ge_0.7_env_only"}


def test_a_partial_train_run_does_not_write_train_json(bench, monkeypatch):
    bt = bench.bench_train
    runs, built, written = _fake_train(bench, monkeypatch)
    _run(monkeypatch, bt, ["--no-progress", "--seeds", "2", "--latents", "laof,action_residual,none"])
    assert written == ["train_partial"]
    written.clear()
    _run(monkeypatch, bt, ["--no-progress", "--seeds", "2"])  # every row, too few seeds
    assert written == ["train_partial"]
    written.clear()
    _run(monkeypatch, bt, ["--quick", "--no-progress", "--latents", "laof"])  # a smoke run writes nothing
    assert written == []
    assert all(dataclasses.replace(c) == c for c, _ in runs)  # every config is valid


def test_latent_quality_keys_lead_with_the_cells_prefix(bench):
    """cheetah-run at the LAOM level has bare keys, every other cell's lead with its prefix (the issue's names:
    ``hopper_probe_laof``, ``hopper_p_laof_vs_lapo``), its tests Holm-adjusted in one family with the others."""
    from rl_laof.lam import quality

    lq = bench.bench_latent_quality
    records, values = [], {}
    for cell in ("cheetah_laom", "hopper_laom"):
        for method, level in (("lapo", 0.9), (f"laof_{lq.DEFAULT_TIER}", 0.3)):
            for seed in range(5):
                p = level + 0.01 * seed
                report = {"probes": {s: {"linear_action_mse": 2 * p, "mean_action_mse": 2.0,
                                         "budget_curve": {"frac-0.01": 2 * p + 0.2}} for s in ("val", "eval")},
                          "history": [], "config": {"batch_size": 64}}
                records.append({"cell": cell, "method": method, "seed": seed, **quality.run_record(report)})
    out = {}
    for cell in ("cheetah_laom", "hopper_laom"):
        figures, values[cell] = lq.cell_figures(records, cell)
        out.update(figures)
    out.update(lq.claims(values))
    for key in ("probe_laof", "probe_lapo", "probe_few_laof", "p_laof_vs_lapo"):
        assert key in out and f"hopper_{key}" in out, key
    assert out["hopper_probe_laof"] == out["probe_laof"] == pytest.approx(0.32)
    assert not any(k.startswith(("probe_hopper", "p_hopper", "probe_few_hopper")) for k in out)
    assert out["p_laof_vs_lapo"] > out["p_raw_laof_vs_lapo"]  # adjusted over both cells' claims


def test_latent_quality_holm_families_split_targets_from_the_rest(bench):
    """The issue's target claims on the two LAOM-level cells form one Holm family; the oracle tier and the hard
    cell another; one family of all the claims is reported beside."""
    lq = bench.bench_latent_quality
    good, bad = [0.3, 0.31, 0.32, 0.33, 0.34], [0.9, 0.91, 0.92, 0.93, 0.94]
    cell_values = {f"probe_laof_{t}": good for t in lq.TIERS} | {"probe_lapo": bad, "probe_laom": bad,
                                                                 "probe_few_laof_action_1pct": good,
                                                                 "probe_few_laom_action_1pct": bad}
    out = lq.claims({cell: cell_values for cell in lq.CELLS})
    targets, reported = out["holm_families"]["targets"], out["holm_families"]["reported"]
    assert set(targets) == {f"{p}{c}" for p in ("", "hopper_") for c in lq.TARGET_CLAIMS}
    assert "laof_oracle_vs_lapo" in reported and "hard_laof_vs_lapo" in reported
    assert not set(targets) & set(reported) and len(targets) + len(reported) == len(out["holm_one_family"])
    floor = out["p_raw_laof_vs_lapo"]
    assert floor == pytest.approx(1 / 252, rel=1e-2)  # the exact 5-vs-5 test's smallest p
    # every target passes with 1/252 each: Holm over 8 claims, 8/252 = 0.032
    assert out["p_laof_vs_lapo"] == pytest.approx(len(targets) / 252, rel=1e-2)
    assert out["p_laof_vs_lapo"] < 0.05 < out["holm_one_family"]["laof_vs_lapo"]
    assert out["holm_one_family"]["laof_vs_lapo"] == pytest.approx(len(out["holm_one_family"]) / 252, rel=1e-2)
    assert out["p_laom_vs_lapo"] == 1.0 and out["hard_p_laof_vs_lapo"] < 0.05


def test_drq_budget_study_changes_only_drqs_settings(bench, monkeypatch, tmp_path):
    """study_drq_budget: the cpu variant is bench_train's drq row as it was when the study began (20k steps on
    EnvPool: the study's pinned settings); the paper variant the same run (env, frames, seed) with the paper's
    DrQConfig, the clean variant the cpu run without distractors, and nothing else changed. The committed cpu
    record, made before ``backend`` existed, stands for it."""
    import study_drq_budget as sd

    from agents.config import DRQ_PRESETS

    monkeypatch.setattr(sd, "RECORDS", tmp_path / "records" / "drq_budget")
    runs = []

    def train(cfg, out, resume=False, progress=True):
        runs.append((cfg, Path(out)))
        return {"eval_history": [{"step": 0, "mean": 2.0, "wall_s": 1.0}, {"step": 20_000, "mean": 4.0, "wall_s": 9.0}],
                "final": {"mean": 4.1, "std": 1.0}, "steps_per_s": 14.0,
                "drq": {"updates": 100, "actor_saturation": 1.0}}

    monkeypatch.setattr(sd, "train", train)
    written = []
    monkeypatch.setattr(sys.modules["bench_args"], "write_result", lambda name, result: written.append(name))
    r = _run(monkeypatch, sd, ["--no-progress"])
    assert written == ["study_drq_budget"]
    (cpu, cpu_dir), (paper, _), (clean, _) = runs
    assert cpu_dir == sd.run_dir("cpu", 0) and cpu_dir.parent == sd.run_dir("paper", 0).parent
    bt = bench.bench_train
    base = dataclasses.replace(bt.base_config(), total_steps=20_000, eval_every=5_000, checkpoint_every=5_000,
                               backend="envpool")
    assert cpu == bt.row_config(base, "drq", 0, None) and cpu.resolved_backend == "envpool"
    assert dataclasses.replace(paper, drq=cpu.drq) == cpu
    assert clean.distractors == "none" and dataclasses.replace(clean, distractors=cpu.distractors) == cpu
    assert {k: getattr(paper.drq, k) for k in DRQ_PRESETS["paper"]} == DRQ_PRESETS["paper"]
    assert r["frames"] == 80_000 and r["variants"]["paper"]["samples"] == 100 * 256
    assert r["variants"]["cpu"]["actor_saturation"] == 1.0
    runs.clear()
    _run(monkeypatch, sd, ["--no-progress"])  # the records stand for the finished runs
    assert runs == []
    committed = json.loads((bt.RESULTS.parent / "study_drq_budget_runs" / "cpu-s0.json").read_text())
    # recorded before backend existed and before PPO's defaults moved (fields DrQ ignores): the same config
    assert committed["identity"] == sd.record_identity(cpu)
    assert sd.record_identity(dataclasses.replace(cpu, total_steps=1)) != committed["identity"]


def test_ppo_finetune_study_recovers_each_rollouts_mean_and_changes_only_its_fields(bench, tmp_path):
    import study_ppo_finetune as sp


    rollouts = [[60.0] * 8, [80.0] * 8, [70.0] * 8, [90.0] * 8]  # 8 episodes a rollout
    seen: list[float] = []
    window = []
    for r in rollouts:
        seen += r
        window.append(float(np.mean(seen[-sp.WINDOW:])))
    assert sp.per_rollout(window, 8) == [60.0, 80.0, 70.0, 90.0]
    assert len(sp.per_rollout(window * 10, 8)) == sp.WINDOW // 8  # only while the window holds every episode
    bt = bench.bench_train
    base = bt.base_config()
    for variant, (row, changes) in sp.VARIANTS.items():
        cfg = sp.variant_config(base, variant, tmp_path)
        plain = bt.row_config(base, row, sp.SEED, tmp_path)
        assert dataclasses.replace(cfg, **{k: getattr(plain, k) for k in changes}) == plain
        # an unchanged row is bench_train's own run, read rather than trained again
        assert (sp.run_dir(variant) == bt.run_root(False) / f"{row}-s0") == (not changes)


def test_train_records_gain_the_heldout_replays_of_the_final_model_and_its_start(bench, monkeypatch, tmp_path):
    """Each run's final model (and, for an agent that starts at action mean 0, its start) on the same 32 held-out
    episodes: computed once for a record, kept in it, summarised per row with the per-seed gain."""
    bt = bench.bench_train
    runs, _, _ = _fake_train(bench, monkeypatch)
    calls = []

    def heldout_eval(folder):
        calls.append(folder.name)
        row, seed = folder.name.rsplit("-s", 1)
        start = None if row == "none" else 50.0 + int(seed)
        return {"episodes": 32, "seed": bt.HELDOUT_SEED, "ret": 60.0 + 2 * int(seed), "returns": [],
                "start": start, "start_returns": []}

    monkeypatch.setattr(bt, "heldout_eval", heldout_eval)
    argv = ["--no-progress", "--seeds", "2", "--latents", "laof,none"]
    r = _run(monkeypatch, bt, argv)
    assert sorted(calls) == ["laof-s0", "laof-s1", "none-s0", "none-s1"]
    assert r["heldout_laof_seeds"] == [60.0, 62.0] and r["start_heldout_laof_seeds"] == [50.0, 51.0]
    assert r["gain_heldout_laof_seeds"] == [10.0, 11.0] and "start_heldout_none" not in r
    assert r["heldout_checks"]["heldout_laof_ge_1.25_start_heldout_laof"] is False  # 61 < 1.25 x 50.5
    assert json.loads((bt.RECORDS / "laof-s1.json").read_text())["heldout"]["ret"] == 62.0
    calls.clear()
    assert _run(monkeypatch, bt, argv)["heldout_laof_seeds"] == [60.0, 62.0] and calls == []  # kept in the records


def test_heldout_eval_replays_the_start_only_where_the_agent_starts_at_mean_zero(bench, monkeypatch, tmp_path):
    from agents.config import TrainConfig

    bt = bench.bench_train
    seen = []
    monkeypatch.setattr(bt, "evaluate_run", lambda folder, episodes, which, seed, video: seen.append(
        (folder.name, episodes, which, seed, video)) or {"mean": 1.0, "returns": [1.0]})
    assert bt.heldout_eval(tmp_path / "missing") is None  # no final model: nothing to replay
    for name, cfg in {"laof-s0": TrainConfig(latent="laof"), "none-s0": TrainConfig(latent="none")}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "final_model.zip").write_bytes(b"")
        (tmp_path / name / "config.json").write_text(json.dumps({"config": dataclasses.asdict(cfg)}))
        out = bt.heldout_eval(tmp_path / name)
        assert out["ret"] == 1.0 and (out["start"] is None) == (name == "none-s0")
    assert seen == [("laof-s0", 32, "final", bt.HELDOUT_SEED, False), ("laof-s0", 32, "start", bt.HELDOUT_SEED, False),
                    ("none-s0", 32, "final", bt.HELDOUT_SEED, False)]


def test_ppo_val_study_changes_only_its_fields_and_pairs_start_and_final_on_val_episodes(bench, monkeypatch,
                                                                                          tmp_path):
    """Each variant is the main job's config at a non-benchmark seed with only its own fields changed; start and final
    are replayed on the same val episodes, outside every benchmark's test block; the record ignores threads."""
    import study_ppo_val as sv

    from envs.rollout import EVAL_SEED

    bt = bench.bench_train
    monkeypatch.setattr(sv, "RECORDS", tmp_path / "records")
    assert not set(sv.SEEDS) & set(range(bt.DEFAULT_SEEDS))  # no bench_train PPO seed
    val = set(range(sv.VAL_SEED, sv.VAL_SEED + sv.VAL_EPISODES))
    assert not val & set(range(bt.HELDOUT_SEED, bt.HELDOUT_SEED + bt.HELDOUT_EPISODES))
    for seed in (*sv.SEEDS, *range(bt.DEFAULT_SEEDS)):  # nor any run's own periodic / final evaluation episodes
        assert not val & set(range(seed + EVAL_SEED, seed + EVAL_SEED + 4 + 8))
    for variant, changes in sv.VARIANTS.items():
        cfg = sv.variant_config(variant, 100)
        assert cfg.latent == "laof" and cfg.latent_policy is None  # the main job's start: the shipped policy
        assert dataclasses.replace(cfg, **{k: getattr(bt.base_config(), k) for k in changes}, seed=0) \
            == bt.base_config()
    trained, replays = [], []

    def train(cfg, folder, resume=True, progress=True):
        trained.append((cfg, folder.name))
        folder.mkdir(parents=True)  # what a finished run leaves for the replays
        (folder / "final_model.zip").write_bytes(b"")
        (folder / "config.json").write_text(json.dumps({"config": dataclasses.asdict(cfg)}))
        return {"latent_policy": "shipped", "final": {"mean": 1.0}, "steps_per_s": 100.0,
                "eval_history": [{"step": 0, "mean": 1.0}]}

    def evaluate_run(folder, episodes, which, seed, video):
        replays.append((folder.name, episodes, which, seed))
        returns = [10.0, 20.0, 30.0] if which == "start" else [12.0, 26.0, 31.0]
        return {"mean": float(np.mean(returns)), "returns": returns, "spread": 0.8}

    monkeypatch.setattr(sv, "train", train)
    monkeypatch.setattr(bt, "evaluate_run", evaluate_run)  # the replays are bench_train's paired heldout_eval
    rec = sv.run_record("std06", 100, progress=False, threads=1)
    assert trained[0][0].log_std_init == -0.5 and trained[0][0].threads == 1 and trained[0][1] == "std06-s100"
    assert replays == [("std06-s100", 32, "final", sv.VAL_SEED), ("std06-s100", 32, "start", sv.VAL_SEED)]
    assert rec["gain"]["mean"] == 3.0 and rec["gain"]["lo"] <= 1.0 and rec["gain"]["hi"] >= 5.0  # paired: 2, 6, 1
    trained.clear()
    assert sv.run_record("std06", 100, progress=False, threads=None) == rec and trained == []  # threads: same run


def test_residual_scale_study_measures_both_spaces_deviation_from_the_policys_own_action(bench):
    """An identity decoder on 6-d latents whose 6 principal directions have spread 0.5: at a small std nothing
    clips, so the latent space moves the executed action by 0.5 std RMS and the raw one by scale x std: they match
    at scale 0.5."""
    import study_residual_scale as rs
    import torch
    from torch import nn

    from rl_laof.models.policy import LatentPCA

    pol = argparse.Namespace(policy=argparse.Namespace(encoder=nn.Identity(), head=lambda f: f * 0),
                             decoder=nn.Identity())
    pca = LatentPCA.fit(torch.randn(4000, 6, generator=torch.Generator().manual_seed(0)), 6)
    pca.std.fill_(0.5)
    out = rs.deviations(pol, pca, np.zeros((20_000, 6), np.float32), log_std=float(np.log(0.1)))
    assert out["std"] == pytest.approx(0.1) and out["latent"] == pytest.approx(0.05, rel=0.03)
    assert out["raw_at_scale"]["0.3"] == pytest.approx(0.03, rel=0.03)
    assert out["matching_scale"] == pytest.approx(0.5, abs=0.02)
