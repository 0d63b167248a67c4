"""Every command keeps its flags: the option strings, defaults and choices of each ``python -m`` command equal
the snapshot in ``tests/data/cli_options.json`` (recorded before the architecture move).

A command's parser is taken the way a user reaches it (``conftest.parser_of``): the module runs as ``__main__``
(``runpy``) with ``ArgumentParser.parse_args`` patched to hand the parser back instead of parsing, so nothing
runs. After a deliberate change of flags, rewrite the snapshot with ``python tests/test_cli_options.py --write``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest
from conftest import parser_of

SNAPSHOT = Path(__file__).resolve().parent / "data" / "cli_options.json"
COMMANDS = ["rl_laof.expert", "rl_laof.collect", "rl_laof.flow", "rl_laof.lam", "rl_laof.imitation", "rl_laof.skills",
            "rl_laof.train", "rl_laof.evaluate", "rl_laof.commands.inspect", "rl_laof.commands.multitask",
            "rl_laof.commands.demo", "sweeps.tune"]


def options(parser: argparse.ArgumentParser) -> dict[str, dict]:
    """Every argument of ``parser``: its option strings (or positional name), default, choices, nargs, and
    whether it takes a value."""
    out = {}
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        name = ", ".join(action.option_strings) or action.dest
        out[name] = {"dest": action.dest, "default": _plain(action.default), "choices": _plain(action.choices),
                     "nargs": _plain(action.nargs), "takes_value": action.nargs != 0,
                     "required": bool(action.required)}
    return out


def _plain(value):
    return json.loads(json.dumps(value, default=str))


def snapshot() -> dict[str, dict]:
    return {command: options(parser_of(command)) for command in COMMANDS}


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_keeps_its_flags(command):
    want = json.loads(SNAPSHOT.read_text())[command]
    got = options(parser_of(command))
    assert sorted(got) == sorted(want), f"python -m {command}: the set of flags changed"
    for name in want:
        assert got[name] == want[name], f"python -m {command} {name}: changed"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_says_what_it_does_and_its_default_once(command):
    parser = parser_of(command)
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
            continue
        name = ", ".join(action.option_strings) or action.dest
        assert action.help, f"python -m {command} {name}: no help text"
    text = parser.format_help()
    assert "(default: None)" not in text and "(default: False)" not in text, text
    flat = " ".join(text.split())
    for action in parser._actions:
        if action.option_strings:
            start = flat.find(action.option_strings[-1] + " ")
            entry = flat[start:start + 400].split(" --")[0] if start >= 0 else ""
            assert entry.count("(default") <= 1 and not ("default" in (action.help or "") and "(default:" in entry), \
                f"python -m {command} {action.option_strings[-1]}: its default said twice: {entry}"


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        raise SystemExit("usage: python tests/test_cli_options.py --write  (rewrites tests/data/cli_options.json)")
    SNAPSHOT.parent.mkdir(exist_ok=True)
    SNAPSHOT.write_text(json.dumps(snapshot(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {SNAPSHOT}")
