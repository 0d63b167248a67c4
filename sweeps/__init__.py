"""Optuna sweeps of loss weights and hyper-parameters (``python -m sweeps.tune``): config, search spaces,
objectives, storages and workers, outputs."""
