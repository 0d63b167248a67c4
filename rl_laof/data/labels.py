"""Which training transitions keep their action labels.

Two kinds of budget, both as boolean masks over the train split's transitions (episode order):

* ``frac-<f>``: exactly ``round(f * N)`` transitions, uniformly at random (0, 1, 5, 10 %);
* ``traj-<n>``: every transition of ``n`` whole episodes (LAOM's 2 ... 128 trajectories).

Within a kind the budgets are *nested* (one random permutation, prefixes of it), so a bigger
budget holds every label of a smaller one and results across budgets are comparable. Everything
is a pure function of (episode lengths, budgets, seed).
"""

from __future__ import annotations

import numpy as np


def fraction_name(fraction: float) -> str:
    return f"frac-{fraction:g}"


def trajectory_name(n: int) -> str:
    return f"traj-{n}"


def make_label_splits(lengths: list[int] | np.ndarray, fractions: tuple[float, ...],
                      trajectories: tuple[int, ...], seed: int) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
    """Masks and their metadata; trajectory budgets larger than the number of episodes are skipped
    (listed in the metadata under ``skipped``)."""
    lengths = np.asarray(lengths, np.int64)
    total = int(lengths.sum())
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    masks: dict[str, np.ndarray] = {}
    meta: dict[str, dict] = {}
    order = np.random.default_rng([seed, 1]).permutation(total)
    for f in sorted(set(fractions)):
        count = int(round(f * total))
        mask = np.zeros(total, bool)
        mask[order[:count]] = True
        masks[fraction_name(f)] = mask
        meta[fraction_name(f)] = dict(kind="fraction", value=f, count=count, seed=seed)
    episodes = np.random.default_rng([seed, 2]).permutation(len(lengths))
    skipped = []
    for n in sorted(set(trajectories)):
        if n > len(lengths):
            skipped.append(n)
            continue
        mask = np.zeros(total, bool)
        for e in episodes[:n]:
            mask[starts[e]:starts[e] + lengths[e]] = True
        masks[trajectory_name(n)] = mask
        meta[trajectory_name(n)] = dict(kind="trajectories", value=n, count=int(mask.sum()), seed=seed,
                                        episodes=sorted(int(e) for e in episodes[:n]))
    if skipped:
        meta["skipped"] = dict(kind="skipped", trajectories=skipped,
                               reason=f"only {len(lengths)} train episodes")
    return masks, meta
