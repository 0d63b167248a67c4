"""Run folders: named after the dataset's folder (two datasets never share one by default), recording what their run
was made from (another dataset, flow file or latent model is refused in one line naming both, never handed back),
written by one process at a time (a second writer is refused in one line naming the first's pid, and a killed
holder frees the folder), and their damaged files or wrong paths named with advice that does not mislead."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path
from unittest import mock

import pytest
from conftest import refused

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("gl")

#: a LAPO run of two steps (no flow file read): seconds
TINY_LAPO = ["--method", "lapo", "--steps", "2", "--width", "8", "--batch-size", "8", "--set", "eval_windows=16",
             "--set", "mlp_probe_steps=2", "--set", "eval_every=2", "--no-progress"]


@pytest.fixture(scope="module")
def other_dataset(tmp_path_factory):
    """Another cheetah-run dataset (1 episode of 16 steps: more training windows than TINY_LAPO's batch; 32 px,
    no flow) in a folder named as ``lam_dataset``'s ("ds"), as two users' datasets may be."""
    from rl_laof.data.collection import collect
    from rl_laof.data.config import CollectConfig

    cfg = CollectConfig(expert="random", episodes=1, eval_episodes=0, heldout_bg_episodes=0, val_episodes=0,
                        episode_steps=16, image_size=32, workers=1, seed=7)
    out = tmp_path_factory.mktemp("other") / "ds"
    collect(cfg, out, progress=False)
    return out


@pytest.fixture(scope="module")
def lapo_run(lam_dataset, tmp_path_factory):
    """A finished LAPO run on ``lam_dataset`` in its default folder under a runs root of its own: (root, run)."""
    from rl_laof.commands import lam

    root = tmp_path_factory.mktemp("runs")
    with mock.patch.dict(os.environ, {"RL_LAOF_RUNS": str(root)}):
        report = lam.main(["--dataset", str(lam_dataset), *TINY_LAPO])
    return root, Path(report["run_dir"])


# --------------------------------------------------------------------------- named after, made from, the dataset

def test_two_datasets_never_share_a_default_run_folder(tmp_path, monkeypatch):
    """Every stage names its default run folder after the dataset's folder, whether given the folder or its
    dataset.h5 (named after the file, every dataset's runs met in one `dataset.h5/` folder)."""
    from rl_laof.imitation.config import ImitationConfig
    from rl_laof.imitation.training import default_run_dir as imitation_run
    from rl_laof.lam.config import LAMConfig
    from rl_laof.lam.training import default_run_dir as lam_run
    from rl_laof.runs import skills_dir

    monkeypatch.setenv("RL_LAOF_RUNS", str(tmp_path / "runs"))
    monkeypatch.chdir(tmp_path)
    a, b = tmp_path / "hard-ar4-quick-s0", tmp_path / "mine"
    for cfg in (LAMConfig(method="lapo"), LAMConfig(method="laof")):
        assert lam_run(cfg, a, "cheetah-run") == lam_run(cfg, a / "dataset.h5", "cheetah-run")
        assert lam_run(cfg, a / "dataset.h5", "cheetah-run") != lam_run(cfg, b / "dataset.h5", "cheetah-run")
        assert lam_run(cfg, a / "dataset.h5", "cheetah-run").parent.name == "hard-ar4-quick-s0"
        assert lam_run(cfg, Path("mine") / "dataset.h5", "cheetah-run") == lam_run(cfg, b, "cheetah-run")
    icfg = ImitationConfig(latent="none")
    ds = [types.SimpleNamespace(task="cheetah-run", path=p / "dataset.h5") for p in (a, b)]
    assert imitation_run(icfg, ds[0]) != imitation_run(icfg, ds[1])
    assert imitation_run(icfg, ds[1]).parent.name == "mine"
    assert skills_dir("walker-multitask", a, "quick", 0) != skills_dir("walker-multitask", b / "dataset.h5", "quick", 0)
    monkeypatch.chdir(b.parent)
    assert lam_run(LAMConfig(), Path("."), "x").parent.name == tmp_path.name  # "." is named too


def test_a_finished_run_asked_for_with_another_dataset_is_refused(lam_dataset, other_dataset, lapo_run, tmp_path,
                                                                  monkeypatch, capsys):
    """The same lam command on another dataset whose folder has the same name meets the finished run of the
    first: refused in one line naming both datasets (it handed back the first's model), also with --out; the same
    dataset by another path is the same input, and a run saved before inputs were recorded still loads."""
    from rl_laof.commands import lam
    from rl_laof.lam.training import load_lam

    root, run = lapo_run
    monkeypatch.setenv("RL_LAOF_RUNS", str(root))
    report = json.loads((run / "report.json").read_text())
    for out in ([], ["--out", str(run)]):
        err = refused(lam.main, ["--dataset", str(other_dataset), *TINY_LAPO, *out], capsys)
        assert f"{run} holds a run made from dataset" in err
        assert str(lam_dataset / "dataset.h5") in err and str(other_dataset / "dataset.h5") in err
    assert json.loads((run / "report.json").read_text()) == report  # untouched
    alias = tmp_path / "alias"
    alias.symlink_to(lam_dataset)
    assert lam.main(["--dataset", str(alias), *TINY_LAPO, "--out", str(run)]) == report
    old = tmp_path / "old-run"  # a run from before inputs were recorded
    shutil.copytree(run, old)
    record = json.loads((old / "config.json").read_text())
    del record["inputs"]
    (old / "config.json").write_text(json.dumps(record))
    assert lam.main(["--dataset", str(lam_dataset), *TINY_LAPO, "--out", str(old)])["steps"] == 2
    assert load_lam(old) is not None


def test_imitation_and_skill_runs_refuse_another_dataset_or_latent_model(lam_dataset, other_dataset, lapo_run,
                                                                         tmp_path):
    """An imitation run records its dataset and the latent model it imitates (a model trained again in that
    folder is another input); a skills run its dataset and flow file: each refused when asked with another."""
    from rl_laof.data.dataset import VideoDataset
    from rl_laof.imitation import training as imitation
    from rl_laof.imitation.config import ImitationConfig
    from rl_laof.runs import load_torch, save_torch, write_json
    from rl_laof.skills.config import SkillsConfig
    from rl_laof.skills.training import SkillRun

    lam = tmp_path / "lam"
    shutil.copytree(lapo_run[1], lam)
    cfg = ImitationConfig(latent="lapo", lam_run=str(lam), labels=0.1)
    ds, other = VideoDataset(lam_dataset), VideoDataset(other_dataset)
    out = tmp_path / "imitation"
    assert imitation.open_run(cfg, ds, out) == (out, None)
    write_json(out / "config.json", {"config": json.loads(json.dumps(cfg.to_dict())), "dataset": str(ds.path),
                                     "inputs": imitation.run_inputs(cfg, ds)})  # what a started run records
    assert imitation.open_run(cfg, ds, out) == (out, None)  # the same inputs: resumed
    with pytest.raises(ValueError, match="made from dataset .*lam.*/ds/dataset.h5, not .*other.*/ds/dataset.h5"):
        imitation.open_run(cfg, other, out)
    save_torch({**load_torch(lam / "model.pt"), "again": True}, lam / "model.pt")  # trained again in its folder
    with pytest.raises(ValueError, match=r"made from an earlier latent model at .*model.pt \(since replaced\)"):
        imitation.open_run(cfg, ds, out)

    from rl_laof.flow.targets import fill_flow

    skills = tmp_path / "skills"
    run = SkillRun(SkillsConfig(), lam_dataset, skills)  # the default tier (rgb): the RGB flow file
    assert json.loads((skills / "config.json").read_text())["inputs"]["flow_file"]["path"].endswith("flow-estimate.h5")
    del run  # its lock is released with it
    other_with_flow = tmp_path / "other" / "ds"
    shutil.copytree(other_dataset, other_with_flow)
    fill_flow(other_with_flow, "estimate", progress=False)
    with pytest.raises(ValueError, match="made from dataset"):
        SkillRun(SkillsConfig(), other_with_flow, skills)
    # the same data through another flow tier (the exact flow file and the agent mask) is another run
    with pytest.raises(ValueError, match=r"another config \(differs in \['flow_tier'\]\)"):
        SkillRun(SkillsConfig(flow_tier="oracle"), lam_dataset, skills)
    oracle = tmp_path / "skills-oracle"
    SkillRun(SkillsConfig(flow_tier="oracle"), lam_dataset, oracle)
    assert json.loads((oracle / "config.json").read_text())["inputs"]["flow_file"]["path"].endswith("flow-exact.h5")


def test_a_flow_file_of_another_dataset_is_refused(lam_dataset, other_dataset, tmp_path, capsys):
    """A dataset collected again in a folder that still holds the old dataset's flow file: the flow command
    refuses the file (it returned it as finished), and so does every stage that would read it."""
    from rl_laof.commands import flow
    from rl_laof.data.dataset import VideoDataset

    folder = tmp_path / "ds"
    shutil.copytree(other_dataset, folder)
    shutil.copy(lam_dataset / "flow-estimate.h5", folder)
    err = refused(flow.main, ["--dataset", str(folder), "--method", "estimate", "--no-progress"], capsys)
    assert "flow-estimate.h5: flow targets of another dataset" in err and "rl_laof.flow" in err
    with pytest.raises(RuntimeError, match="flow targets of another dataset"):
        VideoDataset(folder, flow="estimate")
    assert VideoDataset(lam_dataset, flow="estimate").flow_id  # the file with its own dataset


# --------------------------------------------------------------------------- one writer at a time

def _hold(folder: Path, name: str = ".lock", pid: int = 4242) -> int:
    """Hold ``folder``'s lock as another process would (its own descriptor), recording ``pid``."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / name, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(fd, f"{pid}\n".encode())
    return fd


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_a_second_writer_of_a_run_folder_is_refused_in_one_line(lam_dataset, other_dataset, tmp_path, monkeypatch,
                                                                capsys):
    """Every stage that writes a run folder refuses, before writing anything there, a folder another process
    holds, in one line naming it and that process; --fresh does not empty it either."""
    from rl_laof.commands import collect, expert, flow, imitation, lam, skills, train

    monkeypatch.setenv("RL_LAOF_RUNS", str(tmp_path / "runs"))
    commands = {
        "collect": (collect.main, ["--expert", "random", "--episodes", "1", "--eval-episodes", "0",
                                   "--heldout-bg-episodes", "0", "--val-episodes", "0", "--episode-steps", "4",
                                   "--image-size", "32", "--workers", "1", "--no-progress"]),
        "lam": (lam.main, ["--dataset", str(lam_dataset), *TINY_LAPO]),
        "imitation": (imitation.main, ["--dataset", str(lam_dataset), "--latent", "none", "--labels", "0.1",
                                   "--no-progress"]),
        "skills": (skills.main, ["pretrain", "--dataset", str(lam_dataset), "--no-progress"]),
        "train": (train.main, ["--latent", "none", "--no-progress"]),
        "train --fresh": (train.main, ["--latent", "none", "--fresh", "--no-progress"]),
        "expert": (expert.main, ["--no-progress"]),
    }
    for name, (main, argv) in commands.items():
        folder = tmp_path / name
        fd = _hold(folder)
        (folder / "keep.txt").write_text("the other run's")
        try:
            err = refused(main, [*argv, "--out", str(folder)], capsys)
        finally:
            os.close(fd)
        assert err == f"error: {folder} is in use by another run (pid 4242); wait for it or choose another --out.", name
        assert _listing(folder) == [".lock", "keep.txt"], name

    data = tmp_path / "flow" / "ds"
    shutil.copytree(other_dataset, data)
    fd = _hold(data, ".flow-estimate.lock")
    try:
        err = refused(flow.main, ["--dataset", str(data), "--method", "estimate", "--no-progress"], capsys)
    finally:
        os.close(fd)
    assert f"{data} is in use by another run (pid 4242); wait for it" in err
    assert not (data / "flow-estimate.h5").exists() and not (data / "flow-estimate-parts").exists()


def test_the_lock_is_the_holding_process_and_dies_with_it(tmp_path):
    """A run folder held by a live process is refused naming its pid; once that process is killed (a crash) the
    folder is free. The process that holds a folder may take it again (nested stages), and gives it back."""
    from rl_laof.runs import lock_run

    folder = tmp_path / "run"
    code = ("import sys, time; from rl_laof.runs import lock_run; lock = lock_run(sys.argv[1]); "
            "print('held', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ValueError, match=rf"{folder} is in use by another run \(pid {holder.pid}\)"):
            lock_run(folder)
    finally:
        holder.kill()
        holder.wait()
    with lock_run(folder), lock_run(folder):  # free now; taken twice by this process
        fd = os.open(folder / ".lock", os.O_RDWR)
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.close(fd)
    fd = os.open(folder / ".lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # given back
    os.close(fd)


# --------------------------------------------------------------------------- damaged files, wrong paths

def test_a_cut_short_run_file_is_named_by_the_command(lam_dataset, lapo_run, tmp_path, capsys):
    """A truncated config.json / report.json of a run refuses the command in one line naming the file and what to
    do; a truncated model.pt is named too."""
    from rl_laof.commands import lam
    from rl_laof.lam.training import load_lam

    run = tmp_path / "run"
    shutil.copytree(lapo_run[1], run)
    argv = ["--dataset", str(lam_dataset), *TINY_LAPO, "--out", str(run)]
    for name in ("config.json", "report.json"):
        path = run / name
        whole = path.read_text()
        path.write_text(whole[:len(whole) // 2])
        err = refused(lam.main, argv, capsys)
        assert f"{path} is not valid JSON" in err and "remove its run folder" in err, err
        path.write_text(whole)
    model = run / "model.pt"
    model.write_bytes(model.read_bytes()[:1000])
    err = refused(lambda argv: load_lam(run), [], capsys)
    assert str(model) in err and ("cut short" in err or "damaged" in err), err


def test_flow_advice_for_a_record_file_or_a_link_loop_does_not_mislead(lam_dataset, tmp_path, capsys):
    """`rl_laof.flow --dataset <collect.json>` says --dataset takes the dataset's folder (or its dataset.h5) and
    names the folder beside the file, never to delete it; a symbolic-link loop is named as one, never answered
    with "make one with collect --out <the loop>"."""
    from rl_laof.commands import flow

    folder = tmp_path / "ds"
    folder.mkdir()
    (folder / "collect.json").write_text(json.dumps({"config": {}, "command": "python -m rl_laof.collect"}))
    err = refused(flow.main, ["--dataset", str(folder / "collect.json")], capsys)
    assert f"{folder / 'collect.json'}: a file, not a dataset" in err and f"here {folder}" in err, err
    assert "or its dataset.h5" in err and "delete" not in err and "corrupt" not in err and "--out" not in err
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    for given in (tmp_path / "a", tmp_path / "a" / "dataset.h5"):
        err = refused(flow.main, ["--dataset", str(given)], capsys)
        assert "symbolic link that leads nowhere (a loop" in err and "collect --out" not in err, err
