"""Progress bars for long work: a live tqdm bar on a terminal; elsewhere (a log file, CI) one plain line per
interval instead of a flood of carriage returns. A bar that starts part-way says the run resumes.

Every bar counts, shown or not, and the newest says where the work stands (:func:`position`): the line a command
stopped by Ctrl-C ends with (``rl_laof.cli.run``)."""

from __future__ import annotations

import os
import sys
from typing import Any, TextIO

from tqdm import tqdm

#: seconds between two lines of a bar written to something that is not a terminal
LOG_INTERVAL = 30.0


class _Lines:
    """A stream for tqdm that ends each of its redraws with a newline instead of starting it with a carriage
    return, so a log gets whole lines."""

    def __init__(self, stream: TextIO):
        self.stream = stream

    def write(self, text: str) -> None:
        text = text.replace("\r", "").rstrip()
        if text:
            self.stream.write(text + "\n")

    def flush(self) -> None:
        self.stream.flush()


class _Bar(tqdm):
    """A bar that counts while hidden too (``n``, :func:`position`) and updates once per item of an iterable."""

    def update(self, n: float | None = 1):
        if self.disable:  # tqdm leaves a disabled bar's count alone
            self.n += n or 0
            return None
        return super().update(n)

    def __iter__(self):
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()


class _LogBar(_Bar):
    """A bar for logs: its postfix and description change without a redraw (the next interval's line shows
    them)."""

    def set_postfix(self, ordered_dict=None, refresh=True, **kwargs):
        super().set_postfix(ordered_dict, refresh=False, **kwargs)

    def set_description(self, desc=None, refresh=True):
        super().set_description(desc, refresh=False)


#: the newest bar and what it counts (its description, unit, total and folder): :func:`position`
_NEWEST: dict[str, Any] = {}


def progress_bar(iterable=None, total: int | None = None, initial: int = 0, desc: str = "", unit: str = "it",
                 enabled: bool = True, stream: TextIO | None = None, folder: str | os.PathLike | None = None,
                 **kwargs: Any) -> tqdm:
    """A tqdm bar over ``iterable`` or ``total`` units from ``initial``; disabled unless ``enabled``. On a
    terminal it redraws in place; otherwise it writes a line at most every :data:`LOG_INTERVAL` seconds (and at
    the end). When ``initial`` > 0 it first says the run resumes from there, bar or not. ``folder``: where the
    work is written (the run folder), for :func:`position`."""
    stream = stream or sys.stderr
    if initial:  # said with or without a bar
        print(f"{desc}: resuming from {unit} {initial} of {total}", file=stream, flush=True)
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)
    common = dict(total=total, initial=initial, desc=desc, unit=unit, disable=not enabled, **kwargs)
    if stream.isatty():
        bar = _Bar(iterable, file=stream, dynamic_ncols=True, **common)
    else:
        bar = _LogBar(iterable, file=_Lines(stream), mininterval=LOG_INTERVAL, maxinterval=LOG_INTERVAL * 2,
                      ncols=100, **common)
    _NEWEST.clear()
    _NEWEST.update(bar=bar, desc=desc, unit=unit, total=total, folder=folder)
    return bar


def position() -> str | None:
    """Where the work of the newest bar stands, e.g. "in lam laof at step 130 of 5000 (run folder runs/lam/...)"
    or "after collect cheetah-run finished its 48 episodes (...)"; None before any bar (what a command stopped by
    Ctrl-C says)."""
    if not _NEWEST:
        return None
    n, total, unit, desc = int(_NEWEST["bar"].n), _NEWEST["total"], _NEWEST["unit"], _NEWEST["desc"] or "the work"
    if total is not None and n >= total:
        text = f"after {desc} finished its {total} {unit}s"
    else:
        text = f"in {desc} at {unit} {n}" + (f" of {total}" if total is not None else "")
    return text + (f" (run folder {_NEWEST['folder']})" if _NEWEST["folder"] is not None else "")
