"""Sweeps: real worker processes on one study (journal file, PostgreSQL), a killed worker's trial retried,
failing / diverging trials recorded, bad input refused, best.json read back by the stages."""

from __future__ import annotations

import glob
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

ROOT = Path(__file__).resolve().parents[1]
# tiny LAOF trials on the session's tiny dataset: seconds each
TINY = ["--set", "width=8", "--set", "batch_size=16", "--set", "labelled_batch_size=8", "--set", "eval_windows=64",
        "--set", "labels=0.1", "--space", "latent_dim=[32,64]"]


def tune_cmd(dataset: Path, storage: str, name: str, n_trials: int, workers: int, steps: int = 10,
             *extra: str) -> list[str]:
    return [sys.executable, "-m", "sweeps.tune", "--target", "laof", "--dataset", str(dataset), "--storage", storage,
            "--study-name", name, "--n-trials", str(n_trials), "--workers", str(workers), "--trial-steps", str(steps),
            "--report-every", str(max(1, steps // 2)), "--heartbeat", "0.5", "--grace", "3", "--no-progress",
            *TINY, *extra]


def run_tune(cmd: list[str], runs: Path, timeout: float = 300) -> dict:
    out = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "RL_LAOF_RUNS": str(runs)}, capture_output=True,
                         text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def check_two_worker_study(storage, name: str, runs: Path, n_trials: int, result: dict) -> None:
    """n_trials trials, each run once by one of two workers; the reported best is the best trial's own probe."""
    study = optuna.load_study(study_name=name, storage=storage)
    trials = study.get_trials()
    assert len(trials) == n_trials and result["trials"] == n_trials
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    assert sorted(t.number for t in trials) == list(range(n_trials))
    assert len({t.system_attrs["rl_laof:worker"] for t in trials}) == 2  # both workers ran trials
    folder = runs / "sweeps" / name
    # each trial's training ran exactly once: one TensorBoard run per trial folder
    for t in trials:
        assert len(glob.glob(str(folder / "trials" / f"{t.number:04d}" / "lam" / "tb" / "events.*"))) == 1
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = min(complete, key=lambda t: t.value)
    assert study.best_value == best.value == result["best_value"]
    report = json.loads((folder / "trials" / f"{best.number:04d}" / "lam" / "report.json").read_text())
    assert math.isclose(report["probes"]["eval"]["linear_action_mse"], best.value, rel_tol=1e-9)
    cfg = json.loads((folder / "best.json").read_text())
    assert cfg["source"]["trial"] == best.number and cfg["lam"]["lr"] == best.params["lr"]
    assert (folder / "trials.csv").read_text().count("\n") == n_trials + 1
    for png in ("history", "importance", "parallel"):
        assert (folder / f"{png}.png").stat().st_size > 1000


@pytest.mark.slow
def test_two_workers_share_a_journal_file(lam_dataset, tmp_path):
    journal = tmp_path / "study.log"
    result = run_tune(tune_cmd(lam_dataset, str(journal), "journal", 4, 2), tmp_path)
    from sweeps.study import open_storage

    check_two_worker_study(open_storage(str(journal)), "journal", tmp_path, 4, result)
    # the same command again: the study is complete, nothing more runs
    again = run_tune(tune_cmd(lam_dataset, str(journal), "journal", 4, 2), tmp_path)
    assert again["trials"] == 4 and again["best_value"] == result["best_value"]


# --------------------------------------------------------------------------- PostgreSQL

def _pg_bin() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(versions[-1]).parent if versions else None


@pytest.fixture
def postgres_url():
    """A PostgreSQL server of the test's own: a temporary data directory, a free loopback port, trust auth;
    run as the ``postgres`` user when the tests run as root (PostgreSQL refuses root)."""
    bindir = _pg_bin()
    if bindir is None:
        reason = "PostgreSQL is not installed (apt-get install postgresql; .ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(f"CI must install PostgreSQL: {reason}")
        pytest.skip(reason)
    as_user: list[str] = []
    data = Path(tempfile.mkdtemp(prefix="rl-laof-pg-"))
    if os.geteuid() == 0:
        import pwd

        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server as")
        os.chown(data, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pgdata = data / "db"
    subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(pgdata), "-U", "postgres", "--auth=trust",
                    "-E", "UTF8", "--no-sync"], check=True, capture_output=True)
    subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(pgdata), "-l", str(data / "log"), "-w", "-t", "60",
                    "-o", f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off", "start"],
                   check=True, capture_output=True)
    try:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres",
                             autocommit=True) as conn:
            conn.execute("CREATE DATABASE sweeps")
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/sweeps"
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(pgdata), "-m", "immediate", "-w", "stop"],
                       capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


@pytest.mark.slow
def test_two_workers_share_a_postgresql_study(lam_dataset, tmp_path, postgres_url):
    result = run_tune(tune_cmd(lam_dataset, postgres_url, "pg", 4, 2), tmp_path)
    assert result["storage"].startswith("postgresql")
    check_two_worker_study(postgres_url, "pg", tmp_path, 4, result)


def test_unreachable_database_is_a_clear_error(tmp_path):
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = subprocess.run([sys.executable, "-m", "sweeps.tune", "--target", "laof", "--storage",
                          f"postgresql://u:secret@127.0.0.1:{port}/db", "--no-progress"], cwd=ROOT,
                         env={**os.environ, "RL_LAOF_RUNS": str(tmp_path)}, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2
    assert "cannot reach the study database" in out.stderr and f"127.0.0.1:{port}" in out.stderr
    assert "secret" not in out.stderr  # the password stays out of messages


# --------------------------------------------------------------------------- a worker dies

@pytest.mark.slow
def test_a_killed_workers_trial_is_retried(lam_dataset, tmp_path):
    journal = tmp_path / "study.log"
    cmd = tune_cmd(lam_dataset, str(journal), "kill", 1, 1, 150)
    env = {**os.environ, "RL_LAOF_RUNS": str(tmp_path)}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    from sweeps.study import HEARTBEAT, open_storage

    storage = open_storage(str(journal))
    deadline = time.time() + 120
    try:
        while time.time() < deadline:  # wait until the trial runs and beats
            if journal.exists():
                try:
                    trials = optuna.load_study(study_name="kill", storage=storage).get_trials()
                except KeyError:
                    trials = []
                if trials and trials[0].state == TrialState.RUNNING and HEARTBEAT in trials[0].system_attrs:
                    break
            assert proc.poll() is None, "the worker ended before it could be killed"
            time.sleep(0.2)
        else:
            pytest.fail("the trial never started")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    killed = optuna.load_study(study_name="kill", storage=storage).get_trials()[0]
    assert killed.state == TrialState.RUNNING  # nobody finished it: its worker is gone
    result = run_tune(cmd, tmp_path)  # the same command again
    trials = optuna.load_study(study_name="kill", storage=open_storage(str(journal))).get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert "worker died" in trials[0].user_attrs["fail_reason"]
    assert trials[1].system_attrs["failed_trial"] == 0 and trials[1].params == trials[0].params
    assert result["trials"] == 1 and result["retries"] == 1 and result["best_trial"] == 1


# --------------------------------------------------------------------------- the worker loop, in process

def _cfg(**kw):
    from sweeps.config import SweepConfig

    return SweepConfig(**{"n_trials": 3, "heartbeat_s": 0.2, "grace_s": 1.0, **kw})


def _study(tmp_path, cfg):
    from sweeps.study import create_or_load, open_storage

    return create_or_load(cfg, open_storage(str(tmp_path / "j.log")), {"test": 1})


def test_raising_and_diverging_trials_are_recorded_and_the_study_goes_on(tmp_path):
    from sweeps.study import run_worker

    cfg = _cfg(n_trials=4)
    study = _study(tmp_path, cfg)

    def objective(trial, report):
        x = trial.suggest_float("x", 0, 1)
        if trial.number == 0:
            return [float("nan")]
        if trial.number == 1:
            raise RuntimeError("out of memory")
        if trial.number == 2:
            report(1, float("inf"))
        report(1, x)
        return [x]

    ran = run_worker(study, cfg, objective, log=lambda m: None)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL, TrialState.PRUNED, TrialState.COMPLETE]
    assert "diverged" in trials[0].user_attrs["fail_reason"]
    assert trials[1].user_attrs["fail_reason"] == "RuntimeError: out of memory"
    assert "diverged" in trials[2].user_attrs["fail_reason"]
    assert ran == {"complete": 1, "pruned": 1, "failed": 2, "retries_run": 0}


def test_a_trial_whose_training_loop_diverges_is_recorded_as_diverged(tmp_path):
    """A stage that stops at a non-finite loss (rl_laof.finite.Diverged) fails its trial as diverged, with the
    stage's message and no traceback, and the study goes on."""
    from rl_laof.finite import Diverged
    from sweeps.study import run_worker

    cfg = _cfg(n_trials=2)
    study = _study(tmp_path, cfg)

    def objective(trial, report):
        x = trial.suggest_float("x", 0, 1)
        if trial.number == 0:
            raise Diverged("lam: loss is nan at step 3; lower the learning rate")
        return [x]

    run_worker(study, cfg, objective, log=lambda m: None)
    first, second = study.get_trials()
    assert first.state == TrialState.FAIL and second.state == TrialState.COMPLETE
    assert first.user_attrs["fail_reason"] == "diverged: lam: loss is nan at step 3; lower the learning rate"
    assert "traceback" not in first.user_attrs


def test_a_rerun_continues_the_study_to_its_count(tmp_path):
    from sweeps.study import counted, run_worker

    cfg = _cfg(n_trials=2)
    study = _study(tmp_path, cfg)

    def objective(trial, report):
        return [trial.suggest_float("x", 0, 1)]

    run_worker(study, cfg, objective, log=lambda m: None)
    run_worker(study, cfg, objective, log=lambda m: None)  # complete already: nothing runs
    assert len(study.get_trials()) == 2
    more = _cfg(n_trials=3)
    run_worker(study, more, objective, log=lambda m: None)
    assert counted(study.get_trials()) == 3


def test_a_surplus_draw_is_closed_unrun(tmp_path):
    """Two workers that both saw room for the last trial both draw: the later-numbered one is closed unrun."""
    from sweeps.study import SURPLUS, counted, draw

    cfg = _cfg(n_trials=1)
    study = _study(tmp_path, cfg)
    first = draw(study, cfg)  # worker A's draw
    assert first is not None and first.number == 0
    assert draw(study, cfg) is None  # worker B's, in the same moment
    trials = study.get_trials()
    assert trials[1].state == TrialState.FAIL and trials[1].system_attrs[SURPLUS]
    assert counted(trials) == 1
    study.tell(first, 0.5)


# --------------------------------------------------------------------------- bad input, spaces, config files

def test_bad_sweeps_are_refused_before_any_work(tmp_path, monkeypatch):
    from sweeps.tune import main

    monkeypatch.setenv("RL_LAOF_RUNS", str(tmp_path))
    with pytest.raises(SystemExit):  # argparse: invalid choice, with the valid ones
        main(["--target", "dreamer"])
    with pytest.raises(ValueError, match="search space conflicts with the quick preset.*latent_dim=60"):
        main(["--target", "laof", "--space", "latent_dim=[60,64]"])
    with pytest.raises(ValueError, match="vq_positions.*conflicts with the quick preset.*latent_dim"):
        main(["--target", "laof", "--set", "vq_positions=3"])
    with pytest.raises(ValueError, match="both fixed by --set and tuned"):
        main(["--target", "laof", "--set", "lr=0.001"])
    with pytest.raises(ValueError, match="no latent probe"):
        main(["--target", "ppo", "--objective", "probe"])
    with pytest.raises(ValueError, match="no such field"):
        main(["--target", "laof", "--space", "learning_rate=1e-4:1e-3"])
    with pytest.raises(ValueError, match="Unknown task"):
        main(["--target", "laof", "--task", "cheetah-fly"])


def test_a_study_refuses_other_settings(lam_dataset, tmp_path, monkeypatch):
    from sweeps.config import SweepConfig
    from sweeps.study import create_or_load, open_storage

    storage = open_storage(str(tmp_path / "j.log"))
    create_or_load(SweepConfig(), storage, {"objective": "probe", "space": ["lr in [0.0001, 0.003] (log)"]})
    with pytest.raises(ValueError, match="made with other settings.*space"):
        create_or_load(SweepConfig(), storage, {"objective": "probe", "space": ["lr in [0.001, 0.003] (log)"]})


def test_every_target_space_fits_its_preset():
    from sweeps.config import SweepConfig
    from sweeps.spaces import build_space

    for target in ("laof", "lapo", "laom"):
        for method in (target, f"{target}-action"):
            names = {p.name for p in build_space(SweepConfig(target=target, method=method), {}, [])}
            assert {"lr", "latent_dim", "max_offset", "fdm_weight"} <= names
            assert ("action_weight" in names) == method.endswith("-action")
            assert ("flow_weight" in names) == (target == "laof")
    for target in ("lafp", "sof", "ppo"):
        assert build_space(SweepConfig(target=target, objective="return"), {}, [])
    ppo = {p.name for p in build_space(SweepConfig(target="ppo", objective="return"), {}, [])}
    assert {"learning_rate", "n_steps", "batch_size", "gamma", "gae_lambda", "clip_range", "ent_coef",
            "max_grad_norm", "vf_coef", "n_epochs"} <= ppo


def test_best_config_feeds_lam_and_train(tmp_path):
    from rl_laof.commands.lam import build_parser as lam_parser
    from rl_laof.commands.lam import config_from_args as lam_config
    from rl_laof.commands.train import build_parser as train_parser
    from rl_laof.commands.train import config_from_args as train_config
    from rl_laof.config_file import write_config_file

    best = write_config_file(tmp_path / "best.json",
                             {"lam": {"method": "laof-action", "flow_weight": 0.3, "lr": 7e-4},
                              "train": {"learning_rate": 1e-4, "algo_kwargs": {"max_grad_norm": 0.7}}})
    cfg = lam_config(lam_parser().parse_args(["--config", str(best), "--set", "lr=1e-3"]))
    assert (cfg.method, cfg.flow_weight, cfg.lr) == ("laof-action", 0.3, 1e-3)  # --set wins over the file
    tcfg = train_config(train_parser().parse_args(["--config", str(best)]))
    assert tcfg.latent == "laof-action" and tcfg.learning_rate == 1e-4
    assert tcfg.resolved_algo_kwargs()["max_grad_norm"] == 0.7
    (tmp_path / "bad.json").write_text(json.dumps({"format": "rl_laof-config/1", "lam": {"flow_wieght": 1}}))
    with pytest.raises(ValueError, match="no field.*flow_wieght"):
        lam_config(lam_parser().parse_args(["--config", str(tmp_path / "bad.json")]))
    only_train = write_config_file(tmp_path / "ppo.json", {"train": {"gamma": 0.98}})
    with pytest.raises(ValueError, match="no 'lam' section"):
        lam_config(lam_parser().parse_args(["--config", str(only_train)]))
