"""``python -m rl_laof.collect``: the command lives in :mod:`rl_laof.commands.collect`."""
from rl_laof.cli import run
from rl_laof.commands.collect import main

if __name__ == "__main__":
    run(main)
