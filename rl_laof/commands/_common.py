"""What several commands share."""

from __future__ import annotations

import argparse
from pathlib import Path

from rl_laof import pipeline
from rl_laof.cli import given


def stage_dataset(args: argparse.Namespace, flow: bool | str | None) -> Path:
    """The dataset a stage command works on: the user's ``--dataset``, refused when it is not a dataset or not of a
    ``--task`` the user gave, else the task's default dataset at ``--preset`` with flow targets ``flow`` (see
    :func:`rl_laof.pipeline.default_dataset`), collected if missing."""
    if args.dataset is not None:
        pipeline.check_dataset_task(args.dataset, args.task if given(args, "task") else None)
        return Path(args.dataset)
    return pipeline.default_dataset(args.task, args.preset, flow, progress=not args.no_progress)
