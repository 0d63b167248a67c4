"""Named presets of the config dataclasses: ``quick`` sizes a stage to run in minutes on a 2-core CPU (CI,
first runs), ``paper`` is the full-size setting. Each stage's config module holds its preset table; this
module makes a config from one."""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Iterable
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


EVAL_BACKGROUNDS = ("train", "eval")  # the background videos an evaluation may use; "eval": the held-out ones


def check_eval_backgrounds(value: tuple[str, ...]) -> None:
    """The evaluation's backgrounds (imitation and skills alike): one or both of :data:`EVAL_BACKGROUNDS`."""
    if not value or any(b not in EVAL_BACKGROUNDS for b in value):
        raise ValueError(f"eval_backgrounds={value}: use 'train' and / or 'eval' (at least one).")


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
