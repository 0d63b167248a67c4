"""The study: its storage, and the worker loop that runs trials on it.

Storage: a journal file (Optuna's JournalStorage: an append-only log with a file lock, safe for many
processes on one machine, no server) or any SQLAlchemy URL (PostgreSQL for many machines).

Workers: every worker runs the same loop against the storage, so processes on one machine and on many
share one study with no coordinator. The loop, and why:

- ``n_trials`` counts the study's own trials (retries excluded), over every worker and every rerun:
  the storage numbers trials atomically, so a trial numbered past the budget is a surplus draw of a
  race between workers, and is closed (failed, marked ``surplus``) without running.
- every running trial carries a heartbeat (a system attribute, rewritten every ``heartbeat_s``) on both
  storage kinds, one mechanism for both; a RUNNING trial without one for ``grace_s`` belongs to a dead
  worker: the first worker to see it marks it failed (the storage lets one writer finish a trial) and
  enqueues a retry with the same parameters (``failed_trial`` names the original, as Optuna's
  RetryFailedTrialCallback does);
- a worker with nothing left to start waits while trials still run elsewhere: if their worker dies,
  someone is there to retry them.
- an objective that raises is recorded failed (``fail_reason``), one whose training loop met a non-finite
  loss (``rl_laof.finite.Diverged``) or that returns NaN or infinity failed as diverged, one whose
  intermediate value is NaN pruned; the study goes on.
"""

from __future__ import annotations

import json
import math
import os
import socket
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy.exc
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from sqlalchemy.engine import make_url

from rl_laof import finite
from rl_laof.runs import sweep_dir
from sweeps.config import SweepConfig

HEARTBEAT = "rl_laof:heartbeat"
WORKER = "rl_laof:worker"
SURPLUS = "rl_laof:surplus"
RETRY = "rl_laof:retry"
IDENTITY = "rl_laof:sweep"
COMMANDS = "rl_laof:commands"


# --------------------------------------------------------------------------- storage

def is_url(spec: str) -> bool:
    return "://" in spec


def study_dir(cfg: SweepConfig) -> Path:
    """Where this machine writes the study's outputs and trial folders."""
    return sweep_dir(cfg.name)


def storage_spec(cfg: SweepConfig) -> str:
    return cfg.storage or str(study_dir(cfg) / "journal.log")


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a URL SQLAlchemy cannot parse: say so elsewhere
        return url


def check_storage(spec: str) -> None:
    """Refuse a journal path that cannot be one (a folder, or below a file) before anything is made."""
    if is_url(spec):
        return
    path = Path(spec)
    if path.is_dir():
        raise ValueError(f"--storage {spec}: a folder; give a journal file path (e.g. {path / 'journal.log'}) "
                         "or a database URL")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"--storage {spec}: {parent} is a file, so no journal can be made below it")
            break


def open_storage(spec: str) -> optuna.storages.BaseStorage:
    """A journal file (the path; its folder is made) or an RDB storage (a SQLAlchemy URL), reachable now."""
    check_storage(spec)
    if not is_url(spec):
        path = Path(spec)
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if spec.startswith("postgresql"):
        kwargs["connect_args"] = {"connect_timeout": 10}
    try:
        return optuna.storages.RDBStorage(spec, engine_kwargs=kwargs)
    except sqlalchemy.exc.ArgumentError as exc:
        raise ValueError(f"--storage {redact(spec)}: not a database URL SQLAlchemy understands ({exc})") from None
    except ImportError as exc:
        raise ValueError(f"--storage {redact(spec)}: its database driver is not installed ({exc}); PostgreSQL's "
                         "comes with this package (psycopg 3: postgresql:// or postgresql+psycopg://)") from None
    except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError) as exc:
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        raise RuntimeError(f"cannot reach the study database {redact(spec)}: {reason}. Is the server running and "
                           "reachable from here, and do the user, password and database exist?") from None


# --------------------------------------------------------------------------- the study

def identity(cfg: SweepConfig, space_desc: list[str], fixed: dict[str, Any]) -> dict[str, Any]:
    """What makes two commands the same study (a rerun continues it; anything else must be a new study)."""
    return {"target": cfg.target, "task": cfg.task, "preset": cfg.preset, "method": cfg.resolved_method,
            "dataset": cfg.dataset, "objective": cfg.objective, "budget": list(cfg.budget), "space": space_desc,
            "fixed": json.loads(json.dumps(fixed, default=str)), "directions": cfg.directions}


def create_or_load(cfg: SweepConfig, storage, ident: dict[str, Any], command: list[str] | None = None
                   ) -> optuna.Study:
    """The study named ``cfg.name`` (made if new), refused if it was made for other settings."""
    study = optuna.create_study(study_name=cfg.name, storage=storage, directions=cfg.directions,
                                load_if_exists=True)
    old = study.user_attrs.get(IDENTITY)
    if old is None:
        study.set_user_attr(IDENTITY, ident)
        study.set_user_attr("rl_laof:defaults", json.loads(json.dumps(cfg.to_dict(), default=str)))
    elif old != ident:
        diff = sorted(k for k in set(old) | set(ident) if old.get(k) != ident.get(k))
        raise ValueError(f"study {cfg.name!r} was made with other settings ({', '.join(diff)} differ: "
                         f"{ {k: old.get(k) for k in diff} }); use another --study-name, or the same settings to "
                         "continue it")
    if command is not None:
        study.set_user_attr(COMMANDS, [*study.user_attrs.get(COMMANDS, []),
                                       {"argv": command, "host": socket.gethostname(), "time": time.time()}][-50:])
    return study


def make_sampler(cfg: SweepConfig, worker_index: int, started: int) -> optuna.samplers.BaseSampler:
    # distinct seeds per worker and invocation: two workers with one seed would draw the same first trials
    seed = cfg.seed + 1009 * worker_index + 7919 * started
    if cfg.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True,
                                      n_startup_trials=max(cfg.pruner_startup_trials, 5))


def make_pruner(cfg: SweepConfig) -> optuna.pruners.BasePruner:
    steps, every = cfg.budget
    if cfg.pruner == "none" or len(cfg.directions) > 1 or every is None:
        return optuna.pruners.NopPruner()
    if cfg.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=cfg.pruner_startup_trials, n_warmup_steps=0)
    return optuna.pruners.HyperbandPruner(min_resource=every, max_resource=steps or "auto", reduction_factor=3)


# --------------------------------------------------------------------------- bookkeeping over trials

def is_retry(t: optuna.trial.FrozenTrial) -> bool:
    return "failed_trial" in t.system_attrs


def counted(trials: list[optuna.trial.FrozenTrial]) -> int:
    """Trials that count against n_trials: the study's own draws (no retries, no surplus)."""
    return sum(1 for t in trials if not is_retry(t) and not t.system_attrs.get(SURPLUS))


def last_beat(t: optuna.trial.FrozenTrial) -> float:
    beat = t.system_attrs.get(HEARTBEAT)
    if beat is not None:
        return float(beat)
    return t.datetime_start.timestamp() if t.datetime_start else time.time()


def fail_stale(study: optuna.Study, cfg: SweepConfig, log=print) -> list[int]:
    """Fail the RUNNING trials whose worker stopped beating; enqueue their retries. Returns their numbers."""
    storage, now, failed = study._storage, time.time(), []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if now - last_beat(t) <= cfg.grace_s:
            continue
        try:
            storage.set_trial_user_attr(t._trial_id, "fail_reason", f"worker died (no heartbeat for {cfg.grace_s:g} s)")
            if not storage.set_trial_state_values(t._trial_id, TrialState.FAIL):
                continue
        except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError):
            continue  # another worker got there first (or the trial just finished)
        failed.append(t.number)
        retries = int(t.system_attrs.get(RETRY, 0))
        if retries >= cfg.max_retry:
            log(f"trial {t.number}: its worker died; not retried ({retries} retries already)")
            continue
        original = t.system_attrs.get("failed_trial", t.number)
        study.add_trial(optuna.trial.create_trial(
            state=TrialState.WAITING, params=t.params, distributions=t.distributions, user_attrs={},
            system_attrs={"failed_trial": original, RETRY: retries + 1, "fixed_params": t.params}))
        log(f"trial {t.number}: its worker died; retrying with the same parameters")
    return failed


class Heartbeat:
    """Rewrites the trial's heartbeat attribute every ``interval`` seconds in a thread, until stopped."""

    def __init__(self, storage, trial_id: int, interval: float):
        self.storage, self.trial_id, self.interval = storage, trial_id, interval
        self._stop = threading.Event()
        self.beat()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def beat(self) -> None:
        self.storage.set_trial_system_attr(self.trial_id, HEARTBEAT, time.time())

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.beat()
            except Exception:  # noqa: BLE001 - a missed beat only risks a retry; never kill the trial for it
                pass

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


# --------------------------------------------------------------------------- the worker loop

class Diverged(Exception):
    """The objective returned a non-finite value."""


def run_trial(study: optuna.Study, trial: optuna.Trial, cfg: SweepConfig, objective, log=print,
              sample=None) -> TrialState:
    """Run one trial with its heartbeat; tell the study how it ended. ``sample(trial)`` draws every parameter
    first, so a trial that has a heartbeat has its whole configuration in the storage (a retry repeats it)."""
    storage = study._storage
    if sample is not None:
        sample(trial)
    storage.set_trial_system_attr(trial._trial_id, WORKER, f"{socket.gethostname()}:{os.getpid()}")
    beat = Heartbeat(storage, trial._trial_id, cfg.heartbeat_s)
    multi = len(cfg.directions) > 1

    def report(step: int, value: float) -> None:
        if not math.isfinite(value):
            trial.set_user_attr("fail_reason", f"diverged: intermediate value {value} at step {step}")
            raise optuna.TrialPruned(f"diverged at step {step}")
        trial.report(value, step)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned at step {step} (value {value:.4g})")

    t0 = time.time()
    try:
        values = objective(trial, None if multi else report)
        if not all(math.isfinite(v) for v in values):
            raise Diverged(f"diverged: objective {values}")
    except optuna.TrialPruned as exc:
        beat.stop()
        study.tell(trial, state=TrialState.PRUNED)
        log(f"trial {trial.number}: {exc} ({time.time() - t0:.0f} s)")
        return TrialState.PRUNED
    except Exception as exc:  # noqa: BLE001 - one bad trial must not end the study
        beat.stop()
        diverged = isinstance(exc, (Diverged, finite.Diverged))  # a non-finite value, or a loop that met one
        reason = (str(exc) if isinstance(exc, Diverged) else f"diverged: {exc}" if diverged
                  else f"{type(exc).__name__}: {exc}")
        trial.set_user_attr("fail_reason", reason[:500])
        if not diverged:
            trial.set_user_attr("traceback", traceback.format_exc()[-2000:])
        study.tell(trial, state=TrialState.FAIL)
        log(f"trial {trial.number}: failed: {reason} ({time.time() - t0:.0f} s)")
        return TrialState.FAIL
    except BaseException:
        beat.stop()  # interrupted (Ctrl-C): leave it RUNNING; its heartbeat stops, so it is retried later
        raise
    beat.stop()
    study.tell(trial, values if multi else values[0])
    log(f"trial {trial.number}: {values} {trial.params} ({time.time() - t0:.0f} s)")
    return TrialState.COMPLETE


def draw(study: optuna.Study, cfg: SweepConfig) -> optuna.Trial | None:
    """The next trial to run (a waiting retry first), or None when the draw is a surplus: two workers that
    both saw room for one more trial draw two, and the storage numbers them in order, so the one numbered
    past ``n_trials`` is closed unrun."""
    trial = study.ask()
    if is_retry(study._storage.get_trial(trial._trial_id)):
        return trial
    if counted([t for t in study.get_trials(deepcopy=False) if t.number < trial.number]) >= cfg.n_trials:
        study._storage.set_trial_system_attr(trial._trial_id, SURPLUS, True)
        study.tell(trial, state=TrialState.FAIL)
        return None
    return trial


def run_worker(study: optuna.Study, cfg: SweepConfig, objective, log=print, sample=None) -> dict[str, int]:
    """Run trials until the study has ``cfg.n_trials`` and nothing is left to retry or wait for."""
    ran = {"complete": 0, "pruned": 0, "failed": 0, "retries_run": 0}
    while True:
        fail_stale(study, cfg, log)
        trials = study.get_trials(deepcopy=False)
        waiting = any(t.state == TrialState.WAITING for t in trials)
        if not waiting and counted(trials) >= cfg.n_trials:
            if any(t.state == TrialState.RUNNING for t in trials):
                time.sleep(cfg.heartbeat_s)  # others still run: stay to retry them if their worker dies
                continue
            return ran
        trial = draw(study, cfg)
        if trial is None:
            continue
        if is_retry(study._storage.get_trial(trial._trial_id)):
            ran["retries_run"] += 1
        state = run_trial(study, trial, cfg, objective, log, sample)
        ran[{TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned", TrialState.FAIL: "failed"}[state]] += 1
