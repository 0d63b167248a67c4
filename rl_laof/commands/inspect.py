"""``python -m rl_laof.commands.inspect DIR`` (``rl-laof-inspect``): what a dataset holds, and a contact sheet.

Prints a JSON summary (episodes, frames, label counts, returns per split, provenance) after a
full integrity check, and writes ``DIR/contact_sheet.png``: sample frames of each split, the
agent mask over each, and the flow target where the dataset has one (LAOF's HSV encoding:
hue = direction, brightness = speed).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from rl_laof.cli import command_parser, run
from rl_laof.data.dataset import VideoDataset
from rl_laof.flow.encoding import flow_to_uint8
from rl_laof.runs import atomic_path


def contact_sheet(ds: VideoDataset, path: Path, per_split: int = 6, seed: int = 0) -> Path:
    import matplotlib  # deferred: matplotlib only for plots

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # deferred: matplotlib only for plots

    rng = np.random.default_rng(seed)
    splits = [s for s, eps in ds.episodes.items() if eps]
    has_flow = "flow" in ds.keys
    rows_per = 3 if has_flow else 2
    fig, axes = plt.subplots(rows_per * len(splits), per_split, figsize=(1.6 * per_split, 1.7 * rows_per * len(splits)),
                             squeeze=False)
    for si, split in enumerate(splits):
        eps = ds.episodes[split]
        for j in range(per_split):
            e = eps[rng.integers(len(eps))]
            t = int(rng.integers(e.length))
            keys = ("obs", "agent_mask", "flow") if has_flow else ("obs", "agent_mask")
            arr = ds.episode(split, e.index, keys)
            frame = arr["obs"][t].transpose(1, 2, 0)
            mask = arr["agent_mask"][t]
            overlay = frame.copy()
            overlay[mask] = (0.4 * overlay[mask] + 0.6 * np.array([0, 255, 0])).astype(np.uint8)
            ax = axes[rows_per * si, j]
            ax.imshow(frame)
            ax.set_title(f"{split} {e.index} t={t}", fontsize=6)
            axes[rows_per * si + 1, j].imshow(overlay)
            axes[rows_per * si + 1, j].set_title("agent mask", fontsize=6)
            if has_flow:
                axes[rows_per * si + 2, j].imshow(flow_to_uint8(arr["flow"][t]))
                axes[rows_per * si + 2, j].set_title("flow", fontsize=6)
    for ax in axes.ravel():
        ax.axis("off")
    fig.suptitle(f"{ds.task}: {ds.path}", fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> dict:
    p = command_parser("rl_laof.commands.inspect", __doc__)
    p.add_argument("dir", type=Path, help="dataset folder (or its dataset.h5)")
    p.add_argument("--samples", type=int, default=6, help="frames per split in the contact sheet")
    p.add_argument("--out", type=Path, default=None, help="PNG path (default DIR/contact_sheet.png)")
    p.add_argument("--quick", action="store_true", help="structural check only (skip reading every chunk)")
    args = p.parse_args(argv)
    if args.samples < 1:
        raise ValueError(f"--samples {args.samples}: need at least 1 frame per split")
    ds = VideoDataset(args.dir, verify="structure" if args.quick else "full")
    out = args.out or ds.path.parent / "contact_sheet.png"
    summary = ds.summary()
    summary["contact_sheet"] = str(contact_sheet(ds, out, args.samples))
    print(json.dumps(summary, indent=2))
    return summary


def main_entry() -> None:
    """The console script ``rl-laof-inspect``."""
    run(main)


if __name__ == "__main__":
    run(main)
