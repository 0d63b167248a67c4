"""Named presets of the config dataclasses: ``quick`` sizes a stage to run in minutes on a 2-core CPU (CI,
first runs), ``paper`` is the full-size setting. Each stage's config module holds its preset table; this
module makes a config from one, and holds the checks every config shares: value ranges (:func:`check_ranges`,
in each config's validation) and, before a stage starts, what this machine can hold (:func:`refuse_beyond`
with :func:`available_memory`, :func:`free_disk`, :func:`cpu_count`)."""

from __future__ import annotations

import dataclasses
import numbers
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

PRESET_NAMES = ("quick", "paper")


def from_preset(cls, presets: dict[str, dict[str, Any]], preset: str, **overrides: Any):
    """``cls(**presets[preset], **overrides)``; ``None`` overrides are ignored (unset CLI flags)."""
    if preset not in presets:
        raise ValueError(f"Unknown preset {preset!r} for {cls.__name__}; valid: {', '.join(presets)}.")
    fields = {f.name for f in dataclasses.fields(cls)}
    bad = sorted(set(overrides) - fields)
    if bad:
        raise TypeError(f"{cls.__name__} has no field(s) {bad}; fields: {', '.join(sorted(fields))}.")
    values = dict(presets[preset])
    values.update({k: v for k, v in overrides.items() if v is not None})
    values.setdefault("preset", preset)
    return cls(**values)


def recorded_dict(cfg, added: dict[str, Any]) -> dict[str, Any]:
    """``cfg`` as a run records it (``dataclasses.asdict``), less each field of ``added`` that holds the value
    ``added`` gives it. ``added`` names the fields a config gained after runs had been recorded, each with the value
    every earlier run had in effect: a run recorded before the field existed and one made now with the field at
    that value are the same config, so its folder, records and checks still stand for it."""
    d = dataclasses.asdict(cfg)
    for name, value in added.items():
        if d.get(name) == value:
            del d[name]
    return d


def from_recorded(cls, recorded: dict[str, Any], added: dict[str, Any], **changes: Any):
    """The config a run recorded (:func:`recorded_dict`), each field of ``added`` it lacks at the value earlier runs
    had in effect (not today's default), with ``changes`` applied."""
    return cls(**{**added, **recorded, **changes})


#: the evaluation sets an evaluation may use (envs.rollout.EVAL_SETS: their background videos and episodes):
#: "train" the data's background videos, "eval" the held-out ones, "val" the data's videos on episodes of their
#: own (what a choice is made on, so that "train" and "eval" stay untouched by it)
EVAL_BACKGROUNDS = ("train", "eval", "val")


def check_eval_backgrounds(value: tuple[str, ...]) -> None:
    """The evaluation's backgrounds (imitation and skills alike): some of :data:`EVAL_BACKGROUNDS`."""
    if not value or any(b not in EVAL_BACKGROUNDS for b in value):
        raise ValueError(f"eval_backgrounds={value}: use some of 'train', 'eval' and 'val' (at least one).")


def check_ranges(cfg, at_least_one: Iterable[str] = (), signed: Iterable[str] = ()) -> None:
    """Refuse a config holding a negative number in a field outside ``signed`` (a seed, a count, a weight, a
    rate: negative means nothing there; tuples are checked item by item), or a value below 1 in a field of
    ``at_least_one`` (sizes and counts); None ("not set") passes. Called first by each config's
    ``__post_init__``, so a bad value is refused before anything runs or is written."""
    name = type(cfg).__name__
    for f in dataclasses.fields(cfg):
        if f.name in signed:
            continue
        value = getattr(cfg, f.name)
        items = value if isinstance(value, (tuple, list)) else (value,)
        for x in items:
            if isinstance(x, numbers.Real) and not isinstance(x, bool) and x < 0:
                raise ValueError(f"{name}.{f.name}={value}: must not be negative.")
    for field in at_least_one:
        value = getattr(cfg, field)
        items = value if isinstance(value, (tuple, list)) else (value,)
        if any(x is not None and x < 1 for x in items):
            raise ValueError(f"{name}.{field}={value}: must be >= 1.")


# --------------------------------------------------------------------------- what the machine holds

def available_memory() -> int | None:
    """Bytes of memory a process can still take: ``MemAvailable`` of /proc/meminfo (Linux), else the free pages
    ``os.sysconf`` reports; a cgroup (v2) limit below that wins. None where the system says nothing."""
    found = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    found = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    if found is None:
        try:
            found = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            found = min(found, int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text()))
    except (OSError, ValueError):
        pass
    return found


def free_disk(path: str | Path) -> int | None:
    """Free bytes on the file system that ``path`` (or its nearest existing parent) is on; None if unknown."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def cpu_count() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def size_text(n: float) -> str:
    """Bytes in words: "512 MB", "1.3 TB"."""
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit in ("B", "KB", "MB") else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def refuse_beyond(what: str, need: float, have: int | None, where: str, fix: str) -> None:
    """Refuse ``what`` (a setting, e.g. ``"batch_size=100000"``) before anything runs when the ``need`` bytes it
    is estimated to take are more than the ``have`` bytes of ``where`` ("memory", "disk space at ...")
    available; ``fix`` says what to do. Nothing is refused where ``have`` is unknown (None)."""
    if have is not None and need > have:
        raise ValueError(f"{what} needs about {size_text(need)} of {where} (estimated), more than the "
                         f"{size_text(max(have, 0))} available: {fix}")
