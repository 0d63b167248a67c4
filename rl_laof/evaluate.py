"""``python -m rl_laof.evaluate``: the command lives in :mod:`rl_laof.commands.evaluate`."""
from rl_laof.cli import run
from rl_laof.commands.evaluate import main

if __name__ == "__main__":
    run(main)
