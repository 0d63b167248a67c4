"""PyTorch datasets of windows over a video dataset, and the loaders that feed training.

A window at transition t of an episode of length T (``rl_laof.data.config.WindowConfig``)::

    obs         o_{t-s+1..t}   (3s, H, W) uint8   frame stack s, oldest first; frames before the
                                                  episode start repeat its first frame (as the env does)
    next_obs    o_{t+2-s..t+1} (3s, H, W) uint8
    future_obs  o_{..t+k}      (3s, H, W) uint8   k ~ U{1..min(max_offset, T-t)}  (LAOM)
    k           ()             int64
    action      (A,)           float32            a_t, zeros where unlabelled
    labelled    ()             bool
    agent_mask  (2, H, W)      bool               agent pixels of o_t and o_{t+1}
    flow        (2, H, W)      float32            flow of (t, t+1) in displayed pixels, when the dataset has
    flow_valid  (H, W)         bool               flow targets (``python -m rl_laof.flow``); LAOF's target
                                                  is flow x agent_mask[:, 0] x flow_valid
    state, next_state          float32            proprioceptive state (``with_states``)

Every index of a window lies inside one episode: windows never cross an episode boundary.
Whole splits live in RAM as uint8 and a batch is gathered with one fancy-indexing call per array
(``__getitems__``), so loading costs far less than a training step (``benchmarks/bench_data.py``).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from rl_laof.data.config import WindowConfig
from rl_laof.data.dataset import SplitArrays, VideoDataset


class WindowDataset(torch.utils.data.Dataset):
    """Windows of one split. ``labelled``: None = every transition, True / False = only those with /
    without an action label under ``cfg.label_split``."""

    def __init__(self, dataset: VideoDataset, split: str = "train", cfg: WindowConfig | None = None,
                 labelled: bool | None = None, seed: int = 0, episodes: int | None = None,
                 arrays: SplitArrays | None = None):
        self.cfg = cfg = cfg or WindowConfig()
        keys = ["obs", "actions"]
        if cfg.with_masks:
            keys.append("agent_mask")
        if cfg.with_states and "states" in dataset.keys:  # a video without the simulator's state has none
            keys.append("states")
        self.has_flow = cfg.with_flow and "flow" in dataset.keys
        if self.has_flow:
            keys += ["flow", "flow_valid"]
        self.data = arrays if arrays is not None else dataset.load_split(split, tuple(keys), episodes)
        d = self.data
        n_eps = len(d.lengths)
        ep_of = np.repeat(np.arange(n_eps), d.lengths)
        t_of = np.arange(d.num_transitions) - np.repeat(d.trans_start, d.lengths)
        mask = dataset.label_mask(split, cfg.label_split)[: d.num_transitions]
        self.labelled_mask = mask
        select = np.ones(d.num_transitions, bool) if labelled is None else (mask == labelled)
        self.transitions = np.flatnonzero(select)  # rows into the split's transition arrays
        self.episode = ep_of  # per transition row
        self.t = t_of
        self.rng = np.random.default_rng(seed)
        self.split = split
        self._actions_masked = np.where(mask[:, None], d["actions"], 0.0).astype(np.float32)

    def __len__(self) -> int:
        return len(self.transitions)

    # ------------------------------------------------------------------ gathering
    def _stack_rows(self, ep: np.ndarray, end: np.ndarray) -> np.ndarray:
        """(B, s) frame rows of the stacks ending at frame ``end`` of episodes ``ep``, clamped at 0."""
        s = self.cfg.frame_stack
        offsets = np.arange(1 - s, 1)
        local = np.maximum(end[:, None] + offsets[None], 0)
        return self.data.frame_start[ep][:, None] + local

    def _frames(self, rows: np.ndarray) -> torch.Tensor:
        frames = self.data["obs"][rows]  # (B, s, 3, H, W)
        b, s, c, h, w = frames.shape
        return torch.from_numpy(frames.reshape(b, s * c, h, w))

    def frames_at(self, episodes: np.ndarray, t: np.ndarray) -> torch.Tensor:
        """(B, 3s, H, W) uint8 frame stacks ending at frame ``t`` of ``episodes`` (indices into the split)."""
        return self._frames(self._stack_rows(np.asarray(episodes, np.int64), np.asarray(t, np.int64)))

    def gather(self, rows: np.ndarray) -> dict[str, torch.Tensor]:
        """The windows of transition rows ``rows`` (indices into the split, not into this dataset)."""
        rows = np.asarray(rows, np.int64)
        ep, t = self.episode[rows], self.t[rows]
        length = self.data.lengths[ep]
        room = np.minimum(self.cfg.max_offset, length - t)  # >= 1: t <= T-1
        k = self.rng.integers(1, room + 1) if self.cfg.max_offset > 1 else np.ones_like(t)
        out = {
            "obs": self._frames(self._stack_rows(ep, t)),
            "next_obs": self._frames(self._stack_rows(ep, t + 1)),
            "k": torch.from_numpy(k),
            "action": torch.from_numpy(self._actions_masked[rows]),
            "labelled": torch.from_numpy(self.labelled_mask[rows]),
            "episode": torch.from_numpy(ep),
            "t": torch.from_numpy(t),
        }
        if self.cfg.max_offset > 1:
            out["future_obs"] = self._frames(self._stack_rows(ep, t + k))
        frame_rows = self.data.frame_start[ep] + t
        if "agent_mask" in self.data:
            m = self.data["agent_mask"]
            out["agent_mask"] = torch.from_numpy(np.stack([m[frame_rows], m[frame_rows + 1]], 1))
        if "states" in self.data:
            out["state"] = torch.from_numpy(self.data["states"][frame_rows])
            out["next_state"] = torch.from_numpy(self.data["states"][frame_rows + 1])
        if self.has_flow:
            out["flow"] = torch.from_numpy(self.data["flow"][rows].astype(np.float32))
            out["flow_valid"] = torch.from_numpy(self.data["flow_valid"][rows])
        return out

    def __getitems__(self, indices) -> dict[str, torch.Tensor]:
        return self.gather(self.transitions[np.asarray(indices, np.int64)])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        batch = self.gather(self.transitions[[int(index)]])
        return {k: v[0] for k, v in batch.items()}

    # ------------------------------------------------------------------ loaders
    def batches(self, batch_size: int, seed: int | None = None) -> Iterator[dict[str, torch.Tensor]]:
        """Endless random batches (with replacement across epochs, without within one)."""
        if len(self) == 0:
            raise ValueError(f"no windows to sample in split {self.split!r} (label split {self.cfg.label_split!r})")
        rng = np.random.default_rng(seed)
        while True:
            order = rng.permutation(len(self))
            for i in range(0, len(order) - batch_size + 1 if len(order) >= batch_size else 1, batch_size):
                yield self.__getitems__(order[i:i + batch_size])

    def loader(self, batch_size: int, shuffle: bool = True, drop_last: bool = True, num_workers: int = 0,
               seed: int = 0) -> torch.utils.data.DataLoader:
        """A torch DataLoader that gathers whole batches at once (no per-sample collation)."""
        gen = torch.Generator().manual_seed(seed)
        sampler = (torch.utils.data.RandomSampler(self, generator=gen) if shuffle
                   else torch.utils.data.SequentialSampler(self))
        batch_sampler = torch.utils.data.BatchSampler(sampler, batch_size, drop_last)
        # with a batch sampler the fetcher calls __getitems__(batch indices); collation is already done
        return torch.utils.data.DataLoader(self, batch_sampler=batch_sampler, collate_fn=_identity,
                                           num_workers=num_workers, worker_init_fn=_reseed_worker,
                                           persistent_workers=num_workers > 0)


def _identity(batch):
    return batch


def _reseed_worker(worker_id: int) -> None:
    """Each loader worker draws its own offsets k (a forked generator would repeat the parent's)."""
    info = torch.utils.data.get_worker_info()
    info.dataset.rng = np.random.default_rng(torch.initial_seed() % 2**32)


def labelled_and_unlabelled(dataset: VideoDataset, cfg: WindowConfig, split: str = "train", seed: int = 0,
                            episodes: int | None = None) -> tuple[WindowDataset, WindowDataset | None]:
    """Two views over one in-RAM copy of the split: labelled windows and unlabelled ones (None if none)."""
    full = WindowDataset(dataset, split, cfg, None, seed, episodes)
    lab = WindowDataset(dataset, split, cfg, True, seed + 1, episodes, arrays=full.data)
    unl = WindowDataset(dataset, split, cfg, False, seed + 2, episodes, arrays=full.data)
    return lab, (unl if len(unl) else None)
