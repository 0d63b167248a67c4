"""The pipeline resolves the chain top to bottom before a library runs: it asks the run folder below whether an
upstream artifact is needed (a finished run needs nothing, a resumed agent keeps what its folder records, a
folder of another config is refused before anything is built), finds or builds what is needed, and hands the
library plain paths, never a function. The libraries are replaced here by recorders: nothing trains."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agents.config import TrainConfig
from rl_laof import pipeline
from rl_laof.imitation.config import ImitationConfig

TINY_TRAIN = dict(num_envs=2, n_steps=32, batch_size=32, n_epochs=1, width=4, features=16, hidden=32,
                  image_size=32, total_steps=64, eval_every=64, checkpoint_every=64, distractors="hard")


class Calls:
    """Records, in order, which pipeline step or library ran, with its arguments."""

    def __init__(self):
        self.log: list[tuple[str, tuple, dict]] = []

    def names(self) -> list[str]:
        return [name for name, _, _ in self.log]

    def record(self, name: str, result=None):
        def fake(*args, **kwargs):
            self.log.append((name, args, kwargs))
            if isinstance(result, BaseException):
                raise result
            return result

        return fake


def _no_functions(args: tuple, kwargs: dict) -> None:
    passed = [*args, *(v for k, v in kwargs.items() if k != "on_eval")]  # on_eval: the caller's own hook
    assert not [a for a in passed if callable(a)], f"a function travelled down: {passed}"


@pytest.fixture
def calls(monkeypatch):
    c = Calls()
    monkeypatch.setattr("agents.training.train", c.record("train", {"trained": True}))
    return c


def _record_run(run_dir: Path, cfg: TrainConfig, latent_policy: Path, checkpoint: bool = False,
                report: bool = False) -> None:
    """A run folder as agents.training leaves it: config.json, and a checkpoint or a finished report."""
    run_dir.mkdir(parents=True)
    config = json.loads(json.dumps(cfg.to_dict()))
    (run_dir / "config.json").write_text(json.dumps({"config": config, "latent_policy": str(latent_policy),
                                                      "skills": None}))
    if checkpoint:
        (run_dir / "checkpoints" / "step-64").mkdir(parents=True)
        (run_dir / "checkpoints" / "latest.json").write_text(json.dumps({"dir": "step-64", "step": 64}))
    if report:
        (run_dir / "report.json").write_text(json.dumps({"steps": cfg.total_steps, "finished": True}))


def test_the_agent_library_gets_the_latent_policy_found_or_built_first_as_a_path(calls, monkeypatch, tmp_path):
    built = tmp_path / "imitation" / "laof-bc"
    monkeypatch.setattr(pipeline, "latent_policy", calls.record("latent_policy", built))
    cfg = TrainConfig(latent="laof", **TINY_TRAIN)
    assert pipeline.agent(cfg, tmp_path / "run", progress=False) == {"trained": True}
    assert calls.names() == ["latent_policy", "train"]
    _, args, kwargs = calls.log[-1]
    _no_functions(args, kwargs)
    assert kwargs["latent_policy"] == built and kwargs["skills"] is None
    assert args[1] == tmp_path / "run"  # the run folder the pipeline checked


def test_skills_reach_the_agent_library_as_a_folder(calls, tmp_path):
    skills = tmp_path / "skills-run"
    skills.mkdir()
    cfg = TrainConfig(task="walker-walk", latent="sof", skills=str(skills), **TINY_TRAIN)
    pipeline.agent(cfg, tmp_path / "run", progress=False)
    _, args, kwargs = calls.log[-1]
    _no_functions(args, kwargs)
    assert kwargs["skills"] == skills and kwargs["latent_policy"] is None


def test_a_finished_run_builds_nothing_and_a_resumed_one_keeps_the_latent_policy_it_recorded(calls, monkeypatch,
                                                                                              tmp_path):
    monkeypatch.setattr(pipeline, "latent_policy", calls.record("latent_policy", RuntimeError("built upstream")))
    cfg = TrainConfig(latent="laof", **TINY_TRAIN)
    recorded = tmp_path / "the-recorded-latent-policy"
    recorded.mkdir()
    _record_run(tmp_path / "done", cfg, recorded, checkpoint=True, report=True)
    assert pipeline.agent(cfg, tmp_path / "done", progress=False) == {"steps": 64, "finished": True}
    assert calls.names() == []  # neither the latent policy nor the library
    _record_run(tmp_path / "cut", cfg, recorded, checkpoint=True)
    with pytest.raises(ValueError, match="--resume"):  # refused before anything upstream is built
        pipeline.agent(cfg, tmp_path / "cut", progress=False)
    assert calls.names() == []
    pipeline.agent(cfg, tmp_path / "cut", resume=True, progress=False)
    assert calls.names() == ["train"] and calls.log[-1][2]["latent_policy"] == recorded
    with pytest.raises(ValueError, match="another config"):
        pipeline.agent(TrainConfig(latent="laof", **{**TINY_TRAIN, "seed": 1}), tmp_path / "cut", resume=True,
                       progress=False)
    assert calls.names() == ["train"]


@pytest.mark.usefixtures("gl")
def test_the_latent_model_is_found_or_built_first_and_only_while_the_policy_still_needs_its_latents(
        lam_dataset, monkeypatch, tmp_path):
    from rl_laof.imitation import training as imitation

    calls = Calls()
    lam = tmp_path / "lam-run"
    monkeypatch.setattr(pipeline, "preset_latent_model", calls.record("latent_model", lam))
    monkeypatch.setattr(imitation, "imitate", calls.record("imitate", {"imitated": True}))
    cfg = ImitationConfig(latent="laof", labels=0.1, normalise=False)
    assert pipeline.imitation(cfg, lam_dataset, tmp_path / "fresh", progress=False) == {"imitated": True}
    assert calls.names() == ["latent_model", "imitate"]
    _, args, kwargs = calls.log[-1]
    _no_functions(args, kwargs)
    assert kwargs["lam"] == lam and args[2] == tmp_path / "fresh"
    (tmp_path / "targets").mkdir()
    (tmp_path / "targets" / imitation.TARGETS_FILE).write_bytes(b"")  # the latents are kept: no model needed
    pipeline.imitation(cfg, lam_dataset, tmp_path / "targets", progress=False)
    assert calls.names()[2:] == ["imitate"] and calls.log[-1][2]["lam"] is None
    config = json.loads(json.dumps(cfg.to_dict()))
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "config.json").write_text(json.dumps({"config": config}))
    (tmp_path / "done" / "report.json").write_text(json.dumps({"config": config, "finished": True}))
    assert pipeline.imitation(cfg, lam_dataset, tmp_path / "done", progress=False)["finished"]
    assert calls.names()[3:] == []
    with pytest.raises(KeyError, match="frac-0.5"):  # a label split the dataset lacks: refused before the model
        pipeline.imitation(ImitationConfig(latent="laof", labels=0.5), lam_dataset, tmp_path / "bad",
                               progress=False)
    assert calls.names()[3:] == []


def test_the_expert_is_found_or_trained_only_for_a_dataset_left_to_collect_and_handed_over_as_a_folder(
        monkeypatch, tmp_path):
    from rl_laof.data import collection
    from rl_laof.data.config import CollectConfig

    calls = Calls()
    monkeypatch.setattr(pipeline, "expert_for", calls.record("expert", str(tmp_path / "expert")))
    monkeypatch.setattr(collection, "collect", calls.record("collect", tmp_path / "ds" / "dataset.h5"))
    cfg = CollectConfig(episodes=2, image_size=32)
    pipeline.dataset(cfg, tmp_path / "ds", progress=False)
    assert calls.names() == ["expert", "collect"]
    _, args, kwargs = calls.log[-1]
    assert kwargs["expert"] == str(tmp_path / "expert")
    other = json.loads(json.dumps(CollectConfig(episodes=3, image_size=32).to_dict()))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "collect.json").write_text(json.dumps({"config": other}))
    with pytest.raises(ValueError, match="another config"):  # refused before an expert is trained for it
        pipeline.dataset(cfg, tmp_path / "other", progress=False)
    assert calls.names() == ["expert", "collect"]


def test_a_shipped_expert_of_the_same_config_is_copied_in_not_trained(monkeypatch, tmp_path):
    """Datasets on a fresh clone are rolled out by the shipped expert (pretrained/experts), not one trained again;
    a shipped folder of another config is not used."""
    from agents.config import EXPERT_PRESETS, ExpertConfig
    from rl_laof.presets import from_preset

    monkeypatch.setenv("RL_LAOF_RUNS", str(tmp_path / "runs"))
    trained = []
    monkeypatch.setattr(pipeline, "train_expert", lambda cfg, run_dir, progress=True: trained.append(run_dir))
    cfg = from_preset(ExpertConfig, EXPERT_PRESETS, "quick", task="cheetah-run", action_repeat=4)
    shipped = pipeline.SHIPPED / "experts" / "cheetah-run" / "ppo-ar4-quick-s0"
    assert pipeline.shipped_expert(tmp_path / "ppo-ar4-quick-s0", cfg) == shipped  # the one that ships
    run_dir = pipeline.expert("cheetah-run", "quick", action_repeat=4, progress=False)
    assert trained == [] and (run_dir / "best" / "model.zip").read_bytes() == (shipped / "best" /
                                                                              "model.zip").read_bytes()
    other = from_preset(ExpertConfig, EXPERT_PRESETS, "quick", task="cheetah-run", action_repeat=4, seed=1)
    assert pipeline.shipped_expert(tmp_path / "ppo-ar4-quick-s0", other) is None  # another config: not it
    pipeline.expert("cheetah-run", "quick", seed=1, action_repeat=4, progress=False)
    assert [p.name for p in trained] == ["ppo-ar4-quick-s1"]  # none ships: trained


def test_a_built_latent_policy_is_the_agents_own_seeds_and_the_residuals_find_their_start(monkeypatch, tmp_path):
    """Building, agent seed s gets imitation seed s (``latent_seed`` another); the shipped policies are seed 0's and
    serve every seed unless ``latent_seed`` asks for another; action_residual starts from LAOF's latent BC policy,
    labels_residual from BC on the labels (built: no latent model, no flow), at the agent's action repeat."""
    log: list[tuple[str, object]] = []

    def dataset(task, preset, flow, progress=True, **overrides):
        log.append(("dataset", dict(flow=flow, **overrides)))
        return tmp_path / "ds"

    def imitate(icfg, ds, out=None, progress=True):
        log.append(("imitate", icfg))
        return {"run_dir": str(tmp_path / f"{icfg.tag}-s{icfg.seed}")}

    monkeypatch.setattr(pipeline, "default_dataset", dataset)
    monkeypatch.setattr(pipeline, "imitation", imitate)
    shipped = pipeline.shipped_policy("cheetah-run", "laof", "bc")
    assert pipeline.latent_policy(TrainConfig(latent="laof", seed=2)) == shipped
    assert pipeline.latent_policy(TrainConfig(latent="action_residual", seed=1)) == shipped and log == []
    assert pipeline.latent_policy(TrainConfig(latent="laof", seed=2), rebuild=True).name == "laof-bc-val-frac-0.01-s2"
    assert log[-2] == ("dataset", dict(flow=True, distractors="laom", action_repeat=4))
    pipeline.latent_policy(TrainConfig(latent="action_residual", seed=2, latent_seed=1))  # not the shipped seed 0
    assert log[-1][1].seed == 1 and log[-1][1].latent == "laof"
    built = pipeline.latent_policy(TrainConfig(latent="labels_residual", seed=3, action_repeat=2))
    icfg = log[-1][1]
    assert built.name == "bc-frac-0.01-s3" and (icfg.latent, icfg.relabel, icfg.labels) == ("none", "none", 0.01)
    assert log[-2] == ("dataset", dict(flow=False, distractors="laom", action_repeat=2))
    (tmp_path / "mine-s3").mkdir()
    (tmp_path / "mine-s3" / "policy.pt").touch()
    mine = TrainConfig(latent="laof", seed=3, latent_policy=str(tmp_path / "mine-s{seed}"))
    assert pipeline.latent_policy(mine) == tmp_path / "mine-s3"
