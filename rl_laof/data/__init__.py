"""Video datasets with sparse action labels: HDF5 files, label splits, windowed torch datasets.

    from rl_laof.data import VideoDataset, WindowDataset, WindowConfig
    ds = VideoDataset("runs/datasets/cheetah-run/hard-ar4-quick-s0")
    lab, unl = labelled_and_unlabelled(ds, WindowConfig(frame_stack=3, max_offset=10, label_split="traj-8"))
    for batch in unl.batches(256): ...

Layout: :mod:`rl_laof.data.format`; collection: ``python -m rl_laof.collect``; a summary and a
contact sheet: ``python -m rl_laof.commands.inspect DIR``.
"""

from rl_laof.data.config import WindowConfig
from rl_laof.data.dataset import EpisodeInfo, SplitArrays, VideoDataset
from rl_laof.data.format import DatasetError
from rl_laof.data.labels import make_label_splits
from rl_laof.data.windows import WindowDataset, labelled_and_unlabelled

__all__ = ["DatasetError", "EpisodeInfo", "SplitArrays", "VideoDataset", "WindowConfig", "WindowDataset",
           "labelled_and_unlabelled", "make_label_splits"]
