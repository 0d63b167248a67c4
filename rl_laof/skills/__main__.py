"""``python -m rl_laof.skills``: the command lives in :mod:`rl_laof.commands.skills`."""
from rl_laof.cli import run
from rl_laof.commands.skills import main

if __name__ == "__main__":
    run(main)
