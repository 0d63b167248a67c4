"""Optuna sweeps of loss weights and hyper-parameters (``python -m sweeps.tune``): config, search spaces,
objectives, storages and workers, outputs."""

import rl_laof  # noqa: F401  (first, as ``python -m sweeps.tune`` starts: a Ctrl-C among its imports is one line)
