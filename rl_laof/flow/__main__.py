from rl_laof.cli import run
from rl_laof.flow.targets import main

run(main)
