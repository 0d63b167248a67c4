"""The pipeline: the only code that finds or builds an upstream artifact, along one chain

    expert -> dataset -> flow -> latent model -> latent policy -> skills -> agent

Each function here returns a finished artifact (its run folder, or its report), finding it under the runs
root (``rl_laof.runs``) or in the shipped ``pretrained/`` folder, and otherwise building it, and what it
needs, with the stage libraries at the chosen preset (with their progress bars). So one command,
``python -m rl_laof.train``, works on a fresh machine.

The chain is resolved here, top to bottom, before a library runs: each step first asks the library of the
stage below whether its run still needs the artifact (``collection.finished``, ``imitation.open_run`` /
``needs_latent_model``, ``agents.training.open_run``: a finished run needs nothing, a resumed agent keeps the
upstream runs its folder records), then finds or builds what it needs, then hands the library plain paths.
No library calls back up here, and no function travels down.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agents import training as agent_training
from agents.config import EXPERT_PRESETS, ExpertConfig, TrainConfig
from agents.expert import Expert, train_expert
from rl_laof.data import collection
from rl_laof.data import format as fmt
from rl_laof.data.config import COLLECT_PRESETS, CollectConfig
from rl_laof.data.dataset import VideoDataset
from rl_laof.flow.targets import fill_flow
from rl_laof.imitation import training as imitation_training
from rl_laof.imitation.config import IMITATION_PRESETS, ImitationConfig
from rl_laof.lam import training as lam
from rl_laof.lam.config import LAM_PRESETS, LAMConfig
from rl_laof.presets import from_preset
from rl_laof.runs import dataset_dir, expert_dir, read_json, skills_dirs

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "pretrained"  # the quick preset's latent policies and decoders, each with its command.txt


# --------------------------------------------------------------------------- expert -> dataset -> flow

def shipped_expert(run_dir: Path, cfg: ExpertConfig) -> Path | None:
    """The shipped copy of expert ``cfg`` (``pretrained/experts/<task>/<run folder name>``), if one of exactly this
    config ships. An expert trained again need not be the one that rolled out earlier datasets (the quick cheetah-run
    expert at action repeat 4: 724 when the datasets page measured it, 671 trained again on a fresh clone later),
    so the datasets every fresh clone collects are rolled out by the shipped one."""
    shipped = SHIPPED / "experts" / cfg.task / run_dir.name
    if not (shipped / "report.json").exists():
        return None
    return shipped if read_json(shipped / "config.json") == json.loads(json.dumps(cfg.to_dict())) else None


def expert(task: str, preset: str = "quick", algo: str = "ppo", seed: int = 0, progress: bool = True,
           action_repeat: int = 1) -> Path:
    """The run folder of a finished expert: the shipped one copied in where it ships (``shipped_expert``), else
    trained (or resumed) first where needed."""
    run_dir = expert_dir(task, algo, preset, seed, action_repeat)
    if not (run_dir / "report.json").exists():
        trained_expert(from_preset(ExpertConfig, EXPERT_PRESETS, preset, task=task, algo=algo, seed=seed,
                                   action_repeat=action_repeat), run_dir, progress)
    return run_dir


def trained_expert(cfg: ExpertConfig, run_dir: Path, progress: bool = True) -> Path:
    """``run_dir`` holding the finished expert ``cfg``: found, the shipped one copied in (``shipped_expert``), or
    trained (resumed)."""
    if not (run_dir / "report.json").exists():
        shipped = shipped_expert(run_dir, cfg)
        if shipped is not None and not run_dir.exists():
            shutil.copytree(shipped, run_dir)
        else:
            train_expert(cfg, run_dir, progress=progress)
    return run_dir


def expert_for(cfg: CollectConfig, progress: bool = True) -> str:
    """The expert a dataset is collected with: "random", the config's expert run folder, or for "auto" the
    preset's expert (:func:`expert`, trained if missing)."""
    if cfg.expert == "auto":
        return str(expert(cfg.task, cfg.expert_preset, progress=progress, action_repeat=cfg.action_repeat))
    return cfg.expert


def dataset(cfg: CollectConfig, out: str | Path | None = None, progress: bool = True,
            keep_parts: bool = False, command: str | None = None) -> Path:
    """The dataset ``cfg`` describes (``out``, default runs/datasets/<task>/<name>), collected (or resumed) if
    unfinished, with its expert (:func:`expert_for`) found or trained when episodes are left to collect;
    returns its ``dataset.h5``."""
    done = collection.finished(cfg, out)  # a folder of another config: refused before an expert is trained
    if done is not None:
        return done
    return collection.collect(cfg, out, progress, keep_parts, expert=expert_for(cfg, progress),
                              load_expert=Expert.load, command=command)


def default_dataset(task: str, preset: str, flow: bool | str | None, progress: bool = True,
                    **overrides: Any) -> Path:
    """The task's default dataset at ``preset`` (hard distractors unless ``overrides`` say otherwise: any
    ``CollectConfig`` field, e.g. ``distractors="laom"``), collected if missing, with flow targets: ``flow`` a
    flow method ("exact" / "estimate"), True for the one the default latent action model's flow tier reads
    (``LAMConfig().flow_method``), False / None for none."""
    cfg = from_preset(CollectConfig, COLLECT_PRESETS, preset, task=task, **overrides)
    path = dataset_dir(task, cfg.name)
    if not (path / "dataset.h5").exists() or not _complete(path / "dataset.h5"):
        dataset(cfg, path, progress=progress)
    if flow:
        fill_flow(path, LAMConfig().flow_method if flow is True else flow, progress=progress)
    return path


def check_dataset_task(dataset: str | Path, task: str | None) -> None:
    """Refuse a ``--dataset`` that is not a dataset, or whose task is not the ``--task`` the user gave (None:
    no task given, the dataset's is taken)."""
    ds = VideoDataset(dataset, flow=None)
    if task is not None and task != ds.task:
        raise ValueError(f"--task {task}, but --dataset {ds.path.parent} holds {ds.task}: drop --task (the dataset "
                         f"names its task) or give a {task} dataset")


def _complete(h5: Path) -> bool:
    with fmt.open_h5(h5) as f:
        return bool(fmt.root_attrs(f)["complete"])


# --------------------------------------------------------------------------- latent model -> latent policy

def latent_model(cfg: LAMConfig, dataset: str | Path, progress: bool = True) -> Path:
    """The run folder of the latent action model ``cfg`` on ``dataset`` (its folder or its file: the folder names
    the run's, ``rl_laof.runs.lam_dir``), trained now if missing."""
    return Path(lam.train_lam(cfg, dataset, progress=progress)["run_dir"])


def preset_latent_model(cfg: ImitationConfig, ds: VideoDataset, progress: bool = True) -> Path:
    """The preset's latent action model for an imitation config on ``ds`` (trained now if missing, on the same
    labels for a ``-action`` model): its run folder."""
    supervised = cfg.latent.endswith("-action")
    lam_cfg = from_preset(LAMConfig, LAM_PRESETS, cfg.preset, method=cfg.latent, seed=cfg.seed,
                          labels=cfg.labels if supervised else None, threads=cfg.threads)
    return latent_model(lam_cfg, ds.path, progress)


def imitation(cfg: ImitationConfig, dataset: str | Path, out: str | Path | None = None,
                  progress: bool = True) -> dict[str, Any]:
    """An imitation run of ``cfg`` on ``dataset`` (its report): the latent action model is ``cfg.lam_run``, or
    the preset's (:func:`preset_latent_model`, found or built first, where the run still needs its latents)."""
    ds = VideoDataset(dataset)
    run_dir, report = imitation_training.open_run(cfg, ds, out)  # another config, unusable inputs: refused here
    if report is not None:
        return report
    lam_run = None
    if cfg.lam_run is None and imitation_training.needs_latent_model(cfg, run_dir):
        lam_run = preset_latent_model(cfg, ds, progress)
    return imitation_training.imitate(cfg, dataset, run_dir, progress, lam=lam_run)


# --------------------------------------------------------------------------- the agent's action space

def shipped_policy(task: str, latent: str, policy: str) -> Path:
    """Where the shipped latent policy of a task, latent action model and policy type lives."""
    return SHIPPED / task / f"{latent}-{policy}"


def latent_policy(cfg: TrainConfig, rebuild: bool = False, progress: bool = True) -> Path | None:
    """The imitation run (``policy.pt``: latent policy, decoder, normaliser; BC on the labels for
    ``labels_residual``) the agent's action space comes from: ``cfg.latent_policy`` (its ``{seed}`` filled with the
    latent seed), the shipped one (quick preset, unless ``rebuild`` or a ``latent_seed`` it was not made with), else
    the preset's run of imitation seed ``cfg.resolved_latent_seed`` (the agent's own seed unless ``latent_seed``
    says otherwise), built with every stage it needs. None for the latents "none" and "sof"."""
    if cfg.latent in ("none", "sof"):
        return None
    if cfg.latent_policy is not None:
        path = Path(cfg.resolved_latent_policy)
        agent_training.check_latent_policy(cfg, path)
        return path
    shipped = shipped_policy(cfg.task, cfg.imitation_latent, cfg.policy)
    if not rebuild and (shipped / "policy.pt").exists() and cfg.preset == "quick" and \
            cfg.latent_seed in (None, read_json(shipped / "report.json")["config"]["seed"]):
        return shipped
    # expert -> dataset -> flow (the expert only while the dataset has episodes left to collect)
    dataset = default_dataset(cfg.task, cfg.preset, flow=cfg.imitation_latent.startswith("laof"), progress=progress,
                              distractors=cfg.distractors, action_repeat=cfg.resolved_action_repeat)
    # latent model -> latent policy (the model only while the imitation run lacks its latents; none for BC on labels)
    icfg = from_preset(ImitationConfig, IMITATION_PRESETS, cfg.preset, latent=cfg.imitation_latent,
                       policy=cfg.policy, seed=cfg.resolved_latent_seed, normalise=False, threads=cfg.threads)
    return Path(imitation(icfg, dataset, progress=progress)["run_dir"])


def tuned_latent_policy(cfg: TrainConfig, lam_overrides: dict[str, Any], imitation_overrides: dict[str, Any],
                       progress: bool = True) -> Path:
    """The latent policy for ``cfg`` built with a config file's ``lam`` / ``imitation`` sections (e.g. a
    sweep's best values): latent action model, then imitation, each in its own run folder (named by a hash
    of the values, so the preset's runs are left alone). The agent's config and both stages' configs are
    checked before anything is built (expert, dataset, models)."""
    latent = cfg.imitation_latent
    method = lam_overrides.get("method", latent)
    if latent in ("none", "sof"):
        raise ValueError(f"--latent {cfg.latent} uses no latent action model: the config file's lam / imitation "
                         "sections do not apply")
    if method != latent:
        raise ValueError(f"the config file's lam section is for {method}, the agent's latent is {latent}: "
                         f"pass --latent {method}")
    agent_training.check_config(cfg)
    seed = cfg.resolved_latent_seed
    lam_cfg = from_preset(LAMConfig, LAM_PRESETS, cfg.preset, **{**lam_overrides, "method": latent,
                                                                 "seed": seed, "threads": cfg.threads})
    im_values = {**imitation_overrides, "latent": latent, "policy": cfg.policy, "seed": seed,
                 "normalise": False, "threads": cfg.threads}
    from_preset(ImitationConfig, IMITATION_PRESETS, cfg.preset, **im_values)  # its values checked now
    dataset = default_dataset(cfg.task, cfg.preset, flow=latent.startswith("laof"), progress=progress,
                              distractors=cfg.distractors, action_repeat=cfg.resolved_action_repeat)
    key = hashlib.sha1(json.dumps([lam_cfg.to_dict(), imitation_overrides], sort_keys=True, default=str)
                       .encode()).hexdigest()[:8]
    lam_run = lam.default_run_dir(lam_cfg, dataset, cfg.task)
    lam_report = lam.train_lam(lam_cfg, dataset, lam_run.with_name(f"{lam_run.name}-cfg{key}"), progress=progress)
    icfg = from_preset(ImitationConfig, IMITATION_PRESETS, cfg.preset,
                       **{**im_values, "lam_run": lam_report["run_dir"]})
    out = imitation_training.default_run_dir(icfg, VideoDataset(dataset))
    return Path(imitation(icfg, dataset, out.with_name(f"{out.name}-cfg{key}"), progress=progress)["run_dir"])


def skills(cfg: TrainConfig) -> Path | None:
    """The skills run for an agent with latent "sof": ``cfg.skills`` (its ``{seed}`` filled with the skills seed),
    else the newest finished skills run of the preset and skills seed whose tasks include ``cfg.task`` (None if
    there is none: skills are built by hand, see docs/skills.md). None for the other latents."""
    if cfg.latent != "sof":
        return None
    if cfg.skills is not None:
        return Path(cfg.resolved_skills)
    domain = cfg.task.split("-")[0]
    runs = sorted(skills_dirs(f"{domain}-multitask", cfg.preset, cfg.resolved_skills_seed), key=_modified,
                  reverse=True)
    for run in runs:
        if (run / "translator.pt").exists() and cfg.task in read_json(run / "config.json").get("tasks", []):
            return run
    return None


def _modified(path: Path) -> float:
    return path.stat().st_mtime


# --------------------------------------------------------------------------- the agent

def agent(cfg: TrainConfig, out: str | Path | None = None, resume: bool = False, rebuild: bool = False,
          progress: bool = True, stop_at: int | None = None,
          on_eval: Callable[[int, dict[str, float]], None] | None = None) -> dict[str, Any]:
    """The main job: train (or, with ``resume``, continue) an agent in its action space; returns its report.

    Top to bottom: the run folder is checked first (another config, an unfinished run without ``resume``:
    refused before anything is built); a finished run returns its report and needs nothing upstream; a resumed
    run keeps the latent policy / skills its folder records; otherwise the latent policy (:func:`latent_policy`:
    expert -> dataset -> flow -> latent model -> latent policy) or the skills (:func:`skills`) are found or
    built; then ``agents.training.train`` gets their folders."""
    run = agent_training.open_run(cfg, out, resume, stop_at)
    if run.report is not None:
        return run.report
    latent_policy_run = run.resumes_with("latent_policy") or latent_policy(cfg, rebuild, progress)
    skills_run = run.resumes_with("skills") or skills(cfg)
    return agent_training.train(cfg, run.dir, resume, progress, stop_at, on_eval,
                                latent_policy=latent_policy_run, skills=skills_run)
