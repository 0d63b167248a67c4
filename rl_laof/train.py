"""``python -m rl_laof.train``: the command lives in :mod:`rl_laof.commands.train`."""
from rl_laof.cli import run
from rl_laof.commands.train import main

if __name__ == "__main__":
    run(main)
