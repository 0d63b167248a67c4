"""The registry of stable-baselines3 / sb3-contrib algorithms: every algorithm class by name (experts take any
one for continuous actions), and the agents' own table (``ALGOS``: the name ``rl_laof.train --algo`` takes ->
class and policy)."""

from __future__ import annotations

from dataclasses import dataclass

import sb3_contrib
import stable_baselines3
from stable_baselines3.common.base_class import BaseAlgorithm

_UNSUPPORTED = {"dqn": "discrete actions only", "qrdqn": "discrete actions only",
                "maskableppo": "discrete actions only", "her": "goal-conditioned replay, not an algorithm",
                "recurrentppo": "recurrent policies need their hidden state when collecting",
                "ars": "no gradient-based policy to checkpoint the same way"}


def algorithm_table() -> dict[str, type]:
    """Every SB3 / sb3-contrib algorithm class, by lower-case name."""
    table: dict[str, type] = {}
    for module in (stable_baselines3, sb3_contrib):
        for name in dir(module):
            obj = getattr(module, name)
            if isinstance(obj, type) and issubclass(obj, BaseAlgorithm) and obj is not BaseAlgorithm:
                table[name.lower()] = obj
    return table


def resolve_algorithm(name: str) -> type:
    """An expert's algorithm class by name; one that cannot train an expert here is refused with the reason."""
    name = name.lower()
    if name in _UNSUPPORTED:
        raise ValueError(f"Algorithm {name!r} cannot train an expert here: {_UNSUPPORTED[name]}.")
    table = algorithm_table()
    if name not in table:
        ok = sorted(k for k in table if k not in _UNSUPPORTED)
        raise ValueError(f"Unknown algorithm {name!r}; valid (stable-baselines3 / sb3-contrib): {', '.join(ok)}.")
    return table[name]


@dataclass(frozen=True)
class AlgoSpec:
    cls_name: str  # key of algorithm_table() (SB3 / sb3-contrib class, lower case)
    recurrent: bool = False

    @property
    def algo_class(self) -> type:
        return algorithm_table()[self.cls_name]

    def policy_name(self) -> str:
        # the features extractor is ours, so the "Mlp" policies (no image transposition or scaling) fit pixels
        return "MlpLstmPolicy" if self.recurrent else "MlpPolicy"


ALGOS: dict[str, AlgoSpec] = {
    "ppo": AlgoSpec("ppo"), "a2c": AlgoSpec("a2c"), "trpo": AlgoSpec("trpo"),
    "recurrent-ppo": AlgoSpec("recurrentppo", recurrent=True),
    "sac": AlgoSpec("sac"), "td3": AlgoSpec("td3"), "tqc": AlgoSpec("tqc"),
}
