"""Command-line pieces the seeded benchmarks share: a subset of named items, and a seed count."""

from __future__ import annotations

import argparse
from collections.abc import Iterable


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
