"""Pieces the benchmarks share: a subset of named items, a seed count, writing a run's final JSON, and running one
benchmark at a time on the machine (:func:`alone`)."""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from rl_laof.runs import atomic_path, read_json

RESULTS = Path(__file__).resolve().parent / "results"


def subset(p: argparse.ArgumentParser, text: str, valid: Iterable[str], what: str) -> list[str]:
    """The comma-separated names of ``text``, each one of ``valid`` (else a usage error naming them)."""
    valid = list(valid)
    names = [n.strip() for n in text.split(",") if n.strip()]
    if unknown := sorted(set(names) - set(valid)):
        p.error(f"unknown {what} {unknown}; valid: {', '.join(valid)}")
    if not names:
        p.error(f"no {what} given; valid: {', '.join(valid)}")
    return names


def seed_count(p: argparse.ArgumentParser, seeds: int | None, quick: bool) -> int:
    """``--seeds``, by default 3 (2 for a --quick smoke run); at least 1."""
    n = seeds if seeds is not None else (2 if quick else 3)
    if n < 1:
        p.error(f"--seeds {n}: need at least 1 (3 or more for intervals that can decide a claim)")
    return n


def write_result(name: str, result: dict) -> Path:
    """``benchmarks/results/<name>.json``: the run's final JSON with the command and commit that made it (a
    full run overwrites its own file; smoke runs do not call this)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=RESULTS.parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    argv = ["benchmarks/" + Path(sys.argv[0]).name, *sys.argv[1:]]
    source = {"commit": commit, "command": "python " + " ".join(shlex.quote(a) for a in argv)}
    path = RESULTS / f"{name}.json"
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps({**result, "source": source}, indent=1) + "\n")
    return path


#: flags with which a benchmark trains nothing (it only aggregates records): it may run beside another
READ_ONLY_FLAGS = ("--report-only", "--help", "-h")


def lock_path() -> Path:
    """The machine-wide benchmark lock (``RL_LAOF_BENCH_LOCK`` overrides it): one file for every worktree and
    runs root, since they all share the same cores."""
    return Path(os.environ.get("RL_LAOF_BENCH_LOCK") or Path(tempfile.gettempdir()) / "rl_laof-benchmark.lock")


def lock_holder(path: Path | None = None) -> str | None:
    """What holds the benchmark lock (its pid, command and start), or None when no benchmark runs."""
    path = path or lock_path()
    if not path.exists():
        return None
    with open(path, "a+") as f:
        holder = _take_lock(f)
        if holder is None:
            fcntl.flock(f, fcntl.LOCK_UN)
    return holder


def _take_lock(f) -> str | None:
    """Take the lock on the open lock file ``f``; None when taken, else what the holder wrote there."""
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        return f.read().strip() or "another process"
    return None


def alone(main: Callable[[], Any], argv: list[str] | None = None) -> Any:
    """Run a benchmark's ``main`` holding the machine-wide benchmark lock, or refuse at once, naming the one that
    holds it. Two benchmarks (or a test run beside one) on 2 cores do not share them evenly: torch's and oneDNN's
    threads wait on each other, and a step measured at 0.034 s alone took 0.58 s beside a running benchmark
    (17x; issue 31's imitation step, bf16, 2 threads each). A run with one of :data:`READ_ONLY_FLAGS` takes no
    lock; nor does a torchrun worker other than rank 0."""
    argv = sys.argv[1:] if argv is None else argv
    if any(flag in argv for flag in READ_ONLY_FLAGS) or os.environ.get("RANK", "0") != "0":
        return main()  # aggregation only, or a torchrun worker beside rank 0 (which holds the lock)
    path = lock_path()
    with open(path, "a+") as f:
        holder = _take_lock(f)
        if holder is not None:
            raise SystemExit(f"another benchmark is running ({holder}; lock {path}): benchmarks share the cores and "
                             "slow each other many times over, so they run one at a time. Wait for it, or stop it.")
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}: python {' '.join(shlex.quote(a) for a in [sys.argv[0], *argv])}, "
                f"since {time.strftime('%Y-%m-%d %H:%M:%S')}")
        f.flush()
        try:
            return main()
        finally:
            f.seek(0)
            f.truncate()
            fcntl.flock(f, fcntl.LOCK_UN)


def study_variants(name: str, result: dict, names: list[str], every: Iterable[str],
                   record: Callable[[str], dict]) -> dict:
    """A study's run: ``record(v)`` for each variant of ``names`` into ``result["variants"]``; written as
    ``benchmarks/results/<name>.json`` once ``names`` covers ``every`` variant; the result printed as one JSON line."""
    result["variants"] = {v: record(v) for v in names}
    if set(every) <= set(names):
        write_result(name, result)
    print(json.dumps(result))
    return result


def amend_record(path: Path, rec: dict) -> dict:
    """Write ``rec`` (a record :func:`recorded` returned, with fields added) back to ``path``, its identity kept."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(rec, indent=1) + "\n")
    return rec


def recorded(path: Path, identity: dict, make: Callable[[], dict]) -> dict:
    """The committed record of one finished run at ``path`` when it stands for ``identity`` (what the run is:
    its configs, JSON-comparable), else ``make()``'s, written there first with the identity inside. A benchmark's
    runs live in ``runs/``, which a fresh clone lacks; these small records, committed beside the results, let the
    next session continue where this one stopped."""
    identity = json.loads(json.dumps(identity))
    if path.exists():
        rec = read_json(path)  # a damaged record is refused naming the file (delete it to run that run again)
        if rec.get("identity") == identity:
            return rec
    rec = {**make(), "identity": identity}
    path.parent.mkdir(parents=True, exist_ok=True)
    return amend_record(path, rec)
