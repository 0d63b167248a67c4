"""Flow targets for a whole dataset: ``python -m rl_laof.flow --dataset DIR --method exact``.

Writes ``DIR/flow-<method>.h5`` beside the dataset (which is never rewritten), resuming from finished
episodes (the library: :func:`rl_laof.flow.targets.fill_flow`), and prints the flow file, its method and
the speed as JSON.
"""

from __future__ import annotations

import json
from pathlib import Path

from rl_laof.cli import command_parser, run
from rl_laof.data import format as fmt
from rl_laof.flow.backends import BACKENDS
from rl_laof.flow.targets import fill_flow


def main(argv: list[str] | None = None) -> Path:
    p = command_parser("rl_laof.flow", __doc__)
    p.add_argument("--dataset", type=Path, required=True, help="dataset folder (or its dataset.h5)")
    p.add_argument("--method", default="exact", choices=list(fmt.FLOW_METHODS),
                   help="exact: reprojection from the recorded depth and poses; estimate: from RGB only")
    p.add_argument("--backend", default="auto", choices=list(BACKENDS), help="kernel backend")
    p.add_argument("--batch", type=int, default=256, help="frame pairs per kernel call")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    path = fill_flow(args.dataset, args.method, args.backend, args.batch, progress=not args.no_progress)
    with fmt.open_h5(path) as f:
        print(json.dumps(dict(flow_file=str(path), method=str(f.attrs["method"]),
                              pairs_per_s=round(float(f.attrs["pairs_per_s"]), 1))))
    return path


def main_entry() -> None:
    """The console script ``rl-laof-flow``."""
    run(main)


if __name__ == "__main__":
    run(main)
