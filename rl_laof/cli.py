"""What every stage's command line shares: ``--task`` and ``--preset`` over a preset table."""

from __future__ import annotations

import argparse
import dataclasses
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


def parse_sets(cls, items: list[str]) -> dict[str, Any]:
    """``--set FIELD=VALUE`` items as config overrides for the dataclass ``cls`` (values parsed as bool,
    None, int, float or str)."""
    fields = {f.name for f in dataclasses.fields(cls)}
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in fields:
            raise ValueError(f"--set {item!r}: use FIELD=VALUE with a {cls.__name__} field "
                             f"({', '.join(sorted(fields))})")
        out[key] = parse_value(value)
    return out


def parse_value(v: str) -> Any:
    if v.startswith("[") or v.startswith("{"):  # a list or dict in JSON, e.g. fsq_levels=[8,5,5,5]
        import json

        try:
            return json.loads(v)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{v!r}: not valid JSON ({exc})") from None
    if v.lower() in ("true", "false"):
        return v.lower() == "true"
    if v.lower() == "none":
        return None
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return v


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
