"""Optuna sweeps of loss weights and hyper-parameters (built in the sweeps issue)."""
