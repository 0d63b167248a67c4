"""Pieces the benchmarks share: a subset of named items, a seed count, and writing a run's final JSON."""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from rl_laof.runs import atomic_path

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
