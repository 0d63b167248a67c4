"""rl_laof: learning action spaces (latent actions, skills) from action-free video, and PPO in them."""

import os as _os
import shlex as _shlex
import signal as _signal
import sys as _sys

__version__ = "0.1.0"


def _command() -> str | None:
    """``python -m <module> <args>`` while ``python -m`` imports this package to run one of its modules (or
    sweeps'), ``rl-laof-<name> <args>`` while a console script does; None otherwise (an import by a library, a
    test, a worker process)."""
    argv, orig = _sys.argv, getattr(_sys, "orig_argv", [])
    script = _os.path.basename(argv[0]) if argv else ""
    if script.startswith("rl-laof-"):
        return " ".join([script, *map(_shlex.quote, argv[1:])])
    if argv[:1] != ["-m"] or "-m" not in orig[:-1]:
        return None
    module = orig[orig.index("-m") + 1]
    if not module.startswith(("rl_laof.", "sweeps.")):
        return None
    return " ".join(["python", "-m", module, *map(_shlex.quote, argv[1:])])


def _stopped_while_starting(signum, frame) -> None:
    """Ctrl-C while a command's imports run (seconds: torch, SB3, Numba), before its ``main`` and before anything
    is written: one line, exit status 130, not the import's traceback. ``rl_laof.cli.run`` takes over from here."""
    _sys.stderr.write(f"stopped by Ctrl-C while starting, before anything was written: `{_command_line}` "
                      "starts it again\n")
    _sys.stderr.flush()
    _os._exit(130)


_stopped_while_starting.while_starting = True  # what envs.cli.run looks for to hand Ctrl-C back to Python
_command_line = _command()
if _command_line is not None and _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler:
    _signal.signal(_signal.SIGINT, _stopped_while_starting)
