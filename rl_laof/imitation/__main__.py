"""``python -m rl_laof.imitation``: the command lives in :mod:`rl_laof.commands.imitation`."""
from rl_laof.cli import run
from rl_laof.commands.imitation import main

if __name__ == "__main__":
    run(main)
