"""The command-line base of every command, which takes it from here through ``rl_laof.cli``: it sits in ``envs``,
the lowest layer, and imports nothing of ``rl_laof``.

:func:`command_parser` makes a :class:`CommandParser`: a bad flag is one line and exit status 2. :func:`run` runs
a command's ``main`` and turns bad input and a full disk into a one-line error (exit 2) and Ctrl-C into one line
with where the work stopped and the command that resumes (exit 130).
"""

from __future__ import annotations

import argparse
import difflib
import errno
import os
import re
import shlex
import shutil
import signal
import sys
import threading
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


def _command(main: Callable, name: str | None = None) -> str:
    """The command that runs ``main`` again, as the user started it: ``python -m <module>`` with the module they
    ran (``rl_laof.train`` or ``rl_laof.commands.train``: both run the same ``main``), or a console script by its
    name (``rl-laof-train``; its path where that name is not on the PATH); else (``main`` called in-process)
    ``python -m <name>``, by default the module holding ``main``."""
    top = sys.modules.get("__main__")
    spec = getattr(top, "__spec__", None)
    if spec is not None and (main.__module__ == "__main__" or getattr(top, "main", None) is main):
        return f"python -m {spec.name.removesuffix('.__main__')}"
    entry = getattr(top, "main_entry", None)
    if spec is None and sys.argv and getattr(entry, "__module__", None) == main.__module__:
        script = os.path.basename(sys.argv[0])
        return script if shutil.which(script) else sys.argv[0]
    return f"python -m {name or main.__module__}"


def run(main: Callable[[list[str] | None], Any], argv: list[str] | None = None,
        where: Callable[[], str | None] | None = None, name: str | None = None) -> None:
    """Run a command's ``main``; bad input (a ValueError, a missing or unwritable path, a corrupt dataset: a
    DatasetError is a RuntimeError, no GPU, no EGL, a diverged run...) and a full disk end with one line and exit
    status 2 instead of a traceback; Ctrl-C ends with one line saying where the work stopped (``where()``: e.g.
    "in lam laof at step 130 of 5000 (run folder ...)") and the command that resumes it (:func:`_command`; ``name``:
    the module a message names where ``main`` runs in-process), exit status 130."""
    command = f"{_command(main, name)} {shlex.join(sys.argv[1:] if argv is None else argv)}".rstrip()
    if getattr(signal.getsignal(signal.SIGINT), "while_starting", False):  # rl_laof's, while the imports ran
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        main(argv)
    except KeyboardInterrupt:  # Ctrl-C: one line, not a traceback; every stage resumes from what it finished
        if argv is None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, _exit_at_once)  # a second Ctrl-C while the process winds down
        at = (where() or "while setting up") if where is not None else None
        print(f"stopped by Ctrl-C{' ' + at if at else ''}; what was finished is kept: `{command}` resumes",
              file=sys.stderr, flush=True)
        raise SystemExit(130) from None
    except (ValueError, KeyError, OSError, RuntimeError, NotImplementedError) as exc:
        full = disk_full(exc)
        if full is not None:
            text = f"{full}: free space and rerun the same command, `{command}` (what was finished is kept)"
        else:
            text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
        print(f"error: {' '.join(text.split())}", file=sys.stderr)
        raise SystemExit(2) from None


def _exit_at_once(signum: int, frame: Any) -> None:
    """Ctrl-C again after the one line was said: out at once, quietly (a stuck worker or thread is not waited
    for)."""
    os._exit(130)


#: the errors of a full disk or an exhausted quota, and how foreign libraries word them (h5py: "errno = 28")
_FULL = (errno.ENOSPC, errno.EDQUOT)
_FULL_TEXT = re.compile(rf"No space left on device|Disk quota exceeded|errno = ({'|'.join(map(str, _FULL))})\b")


def disk_full(exc: BaseException) -> str | None:
    """"no space left on <disk> (writing <file>)" where ``exc`` or an error it was raised from is a full disk's
    (an OSError ENOSPC / EDQUOT, or a library's error that names one), else None. An OSError whose text
    already starts "no space left on" (a check before writing) is said as it is."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if (isinstance(e, OSError) and e.errno in _FULL) or _FULL_TEXT.search(str(e)):
            if isinstance(e, OSError) and str(e.strerror or "").startswith("no space left on "):
                return str(e.strerror)
            name = getattr(e, "filename", None) or next(iter(re.findall(r"filename = '([^']+)'", str(e))), None)
            if name is None:
                return "no space left on the disk"
            return f"no space left on {_mount_point(os.path.dirname(os.path.abspath(name)))} (writing {name})"
        e = e.__cause__ if e.__cause__ is not None else None if e.__suppress_context__ else e.__context__
    return None


def _mount_point(folder: str) -> str:
    """The mount point of the file system that holds ``folder`` (the full disk a message names)."""
    path = os.path.realpath(folder)
    while not os.path.ismount(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return path
