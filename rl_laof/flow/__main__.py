"""``python -m rl_laof.flow``: the command lives in :mod:`rl_laof.commands.flow`."""
from rl_laof.cli import run
from rl_laof.commands.flow import main

if __name__ == "__main__":
    run(main)
