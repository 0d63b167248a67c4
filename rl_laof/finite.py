"""Divergence checks shared by every training loop: stop at the first non-finite loss, gradient or parameter
with one line that says what to change, and never write a checkpoint that holds a non-finite value (a rerun
would resume it).

:class:`Diverged` is a ValueError, so a command ends with its message and exit status 2 (``rl_laof.cli.run``),
and a sweep records the trial as diverged (``sweeps.study``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

import torch


class Diverged(ValueError):
    """A training loop met a non-finite loss, gradient norm or parameter."""


def check_step(stage: str, step: int, hint: str, **values: float | torch.Tensor | None) -> None:
    """Raise :class:`Diverged` if one of ``values`` (e.g. ``loss=..., grad_norm=...``; None skipped) is not
    finite at update ``step`` (1-based) of ``stage``; ``hint`` is what to change ("lower the learning rate
    (--set lr=...)")."""
    for name, value in values.items():
        if value is None:
            continue
        x = float(value.detach()) if isinstance(value, torch.Tensor) else float(value)
        if not math.isfinite(x):
            raise Diverged(f"{stage}: {name.replace('_', ' ')} is {x} at step {step}; {hint}")


def first_non_finite(state: Any, prefix: str = "") -> str | None:
    """The name of the first floating-point tensor in ``state`` (a module's state dict, an optimizer's, nested
    dicts / lists of them) holding a NaN or infinity; None when all are finite."""
    for name, t in _tensors(state, prefix):
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            return name
    return None


def check_state(stage: str, state: Any, step: int | None, hint: str) -> None:
    """Raise :class:`Diverged` (before anything is written) if ``state`` holds a non-finite value."""
    name = first_non_finite(state)
    if name is not None:
        at = f" at step {step}" if step is not None else ""
        raise Diverged(f"{stage}: {name} is not finite{at}; not saved; {hint}")


def _tensors(state: Any, prefix: str) -> Iterator[tuple[str, torch.Tensor]]:
    if isinstance(state, torch.Tensor):
        yield prefix or "tensor", state
    elif isinstance(state, Mapping):
        for k, v in state.items():
            yield from _tensors(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(state, (list, tuple)):
        for i, v in enumerate(state):
            yield from _tensors(v, f"{prefix}[{i}]")
