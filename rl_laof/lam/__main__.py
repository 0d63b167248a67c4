"""``python -m rl_laof.lam``: the command lives in :mod:`rl_laof.commands.lam`."""
from rl_laof.cli import run
from rl_laof.commands.lam import main

if __name__ == "__main__":
    run(main)
