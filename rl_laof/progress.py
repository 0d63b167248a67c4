"""Progress bars for long work: a live tqdm bar on a terminal; elsewhere (a log file, CI) one plain line per
interval instead of a flood of carriage returns. A bar that starts part-way says the run resumes."""

from __future__ import annotations

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


class _LogBar(tqdm):
    """A bar for logs: its postfix and description change without a redraw (the next interval's line shows
    them)."""

    def set_postfix(self, ordered_dict=None, refresh=True, **kwargs):
        super().set_postfix(ordered_dict, refresh=False, **kwargs)

    def set_description(self, desc=None, refresh=True):
        super().set_description(desc, refresh=False)


def progress_bar(iterable=None, total: int | None = None, initial: int = 0, desc: str = "", unit: str = "it",
                 enabled: bool = True, stream: TextIO | None = None, **kwargs: Any) -> tqdm:
    """A tqdm bar over ``iterable`` or ``total`` units from ``initial``; disabled unless ``enabled``. On a
    terminal it redraws in place; otherwise it writes a line at most every :data:`LOG_INTERVAL` seconds (and at
    the end). When ``initial`` > 0 it first says the run resumes from there, bar or not."""
    stream = stream or sys.stderr
    if initial:  # said with or without a bar
        print(f"{desc}: resuming from {unit} {initial} of {total}", file=stream, flush=True)
    common = dict(total=total, initial=initial, desc=desc, unit=unit, disable=not enabled, **kwargs)
    if stream.isatty():
        return tqdm(iterable, file=stream, dynamic_ncols=True, **common)
    return _LogBar(iterable, file=_Lines(stream), mininterval=LOG_INTERVAL, maxinterval=LOG_INTERVAL * 2, ncols=100,
                   **common)
