"""What every stage's command line shares: ``--task`` and ``--preset`` over a preset table."""

from __future__ import annotations

import argparse
from typing import Any


def stage_parser(prog: str, doc: str | None, presets: dict[str, dict[str, Any]],
                 preset_help: str) -> argparse.ArgumentParser:
    """An argparse parser for ``python -m <prog>``: the module docstring's first paragraph as the
    description, defaults shown in ``--help``, and the two flags every stage has."""
    p = argparse.ArgumentParser(prog=f"python -m {prog}", description=(doc or "").split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--task", default="cheetah-run", help="dm_control task, e.g. cheetah-run, walker-walk")
    p.add_argument("--preset", default="quick", choices=list(presets), help=preset_help)
    return p


def run(main, argv: list[str] | None = None) -> None:
    """Run a stage's ``main``; bad input (a ValueError, a missing file, a corrupt dataset, no GPU...)
    ends with its one-line message and exit status 2 instead of a traceback."""
    import sys

    from rl_laof.data.format import DatasetError

    try:
        main(argv)
    except (ValueError, KeyError, FileNotFoundError, DatasetError, RuntimeError, NotImplementedError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
