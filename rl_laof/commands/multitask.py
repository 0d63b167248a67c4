"""Multi-task video data for one embodiment: ``python -m rl_laof.commands.multitask --sources A B C --out DIR``.

Merges single-task datasets of one domain (``walker-stand``, ``walker-walk``, ``walker-run``; each from
``python -m rl_laof.collect`` with its own expert) into one dataset of the same layout; the library, and what
the merge keeps: :mod:`rl_laof.data.multitask`. Console script: ``rl-laof-multitask``.
"""

from __future__ import annotations

from pathlib import Path

from rl_laof.cli import command_parser, run
from rl_laof.data.multitask import merge_datasets


def main(argv: list[str] | None = None) -> Path:
    p = command_parser("rl_laof.commands.multitask", __doc__)
    p.add_argument("--sources", nargs="+", type=Path, required=True,
                   help="single-task dataset folders of one domain (python -m rl_laof.collect)")
    p.add_argument("--out", type=Path, required=True, help="folder of the merged dataset")
    args = p.parse_args(argv)
    return merge_datasets(args.sources, args.out)


def main_entry() -> None:
    """The console script ``rl-laof-multitask``."""
    run(main)


if __name__ == "__main__":
    run(main)
