"""The command-line base of ``envs``' own commands (``python -m envs.demo``), and of every ``rl_laof`` command,
which takes it from here through ``rl_laof.cli`` (``envs`` imports nothing of ``rl_laof``).

:func:`command_parser` makes a :class:`CommandParser`: a bad flag is one line and exit status 2. :func:`run` runs
a command's ``main`` and turns bad input into a one-line error (exit 2) and Ctrl-C into one line with the command
that resumes (exit 130).
"""

from __future__ import annotations

import argparse
import difflib
import re
import shlex
import sys
import typing
from collections.abc import Callable
from typing import Any


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` with each option's default said once: not after a help text that already names it, and not
    for the defaults that say nothing (None, False, an empty list)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default is None or action.default is False or action.default in ([], ()) or "default" in text:
            return text
        return super()._get_help_string(action)


class CommandParser(argparse.ArgumentParser):
    """The parser of every ``python -m ...`` command: a bad flag or value ends with one line on stderr (the
    closest valid name suggested) and exit status 2, not argparse's usage block."""

    def parse_known_args(self, args=None, namespace=None):
        ns, rest = super().parse_known_args(args, namespace)
        defaulted = {k for k, v in vars(ns).items() if isinstance(v, Default)}
        for k in defaulted:
            setattr(ns, k, str(getattr(ns, k)))  # configs and files get plain strings
        ns.defaulted = frozenset(getattr(ns, "defaulted", ())) | defaulted
        return ns, rest

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message}{self._suggestion(message)}; see --help\n")

    def _suggestion(self, message: str) -> str:
        choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)$", message)
        if choice:
            given, valid = choice.group(1), re.findall(r"'([^']*)'", choice.group(2))
        else:
            unknown = re.search(r"unrecognized arguments: (\S+)", message)
            if not unknown:
                return ""
            given, valid = unknown.group(1).split("=")[0], list(self._option_string_actions)
        close = difflib.get_close_matches(given, valid, n=1)
        return f" (did you mean {close[0]!r}?)" if close else ""


def command_parser(prog: str, doc: str | None, **kwargs: Any) -> CommandParser:
    """A :class:`CommandParser` for ``python -m <prog>`` with the module docstring's first paragraph as its
    description and each default shown once in ``--help``."""
    return CommandParser(prog=f"python -m {prog}", description=(doc or "").split("\n\n")[0],
                         formatter_class=HelpFormatter, **kwargs)


class Default(str):
    """A flag's default text, told apart from the same text typed by the user: :class:`CommandParser` turns it
    into a plain string and notes the flag (:func:`given`)."""


def _module_name(main: Callable) -> str:
    """The ``python -m`` name of the module holding ``main`` (run as ``__main__``: the name it was run by)."""
    name = main.__module__
    if name == "__main__":
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        name = spec.name.removesuffix(".__main__") if spec is not None else name
    return name


def run(main: Callable[[list[str] | None], Any], argv: list[str] | None = None) -> None:
    """Run a command's ``main``; bad input (a ValueError, a missing or unwritable path, a corrupt dataset: a
    DatasetError is a RuntimeError, no GPU, no EGL, a diverged run...) ends with its message on one line and exit
    status 2 instead of a traceback."""
    try:
        main(argv)
    except KeyboardInterrupt:  # Ctrl-C: one line, not a traceback; every stage resumes from what it finished
        args = " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
        print(f"stopped by Ctrl-C; what was finished is kept: `python -m {_module_name(main)} {args}` resumes",
              file=sys.stderr)
        raise SystemExit(130) from None
    except (ValueError, KeyError, OSError, RuntimeError, NotImplementedError) as exc:
        text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
        print(f"error: {' '.join(text.split())}", file=sys.stderr)
        raise SystemExit(2) from None
