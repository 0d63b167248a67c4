"""Named presets of the config dataclasses: ``quick`` sizes a stage to run in minutes on a 2-core CPU (CI,
first runs), ``paper`` is the full-size setting. Each stage's config module holds its preset table; this
module makes a config from one."""

from __future__ import annotations

import dataclasses
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
