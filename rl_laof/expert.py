"""``python -m rl_laof.expert``: the command lives in :mod:`rl_laof.commands.expert`."""
from rl_laof.cli import run
from rl_laof.commands.expert import main

if __name__ == "__main__":
    run(main)
