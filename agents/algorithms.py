"""The registry of stable-baselines3 / sb3-contrib algorithms: every algorithm class by name (experts take any
one for continuous actions), and the agents' own table (``ALGOS``: the name ``rl_laof.train --algo`` takes ->
class and policy; ``drq``, DrQ-v2, is this project's own, ``agents.drq``)."""

from __future__ import annotations

import difflib
import inspect
import numbers
from dataclasses import dataclass
from typing import Any

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


#: constructor arguments the run sets itself
_SET_BY_THE_RUN = ("policy", "env", "seed", "device", "tensorboard_log", "verbose", "_init_setup_model")


def check_algo_kwargs(algo: type, kwargs: dict[str, Any], reserved: dict[str, str] | None = None) -> None:
    """Refuse ``algo_kwargs`` that ``algo``'s constructor would reject or misread, before anything runs: a name
    it does not take (the closest one suggested), or a non-number where its default is a number (a learning
    rate or a schedule given as text, a fractional count). ``reserved``: arguments the run sets itself from its
    config, each with what to set instead (they are refused, and not listed among those it takes)."""
    reserved = reserved or {}
    for name in kwargs:
        if name in reserved:
            raise ValueError(f"algo_kwargs: {name} is set by the run, not by algo_kwargs: {reserved[name]}")
    params = inspect.signature(algo.__init__).parameters
    for name, value in kwargs.items():
        if name not in params or name in _SET_BY_THE_RUN:
            valid = sorted(k for k in params if k not in _SET_BY_THE_RUN and k not in reserved
                           and k not in ("self", "kwargs"))
            close = difflib.get_close_matches(name, valid, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"algo_kwargs: {algo.__name__} takes no {name!r}{hint}; it takes {', '.join(valid)}")
        default = params[name].default
        if isinstance(default, bool) or default is inspect.Parameter.empty or default is None:
            continue
        if isinstance(default, numbers.Integral) and not (isinstance(value, numbers.Integral)
                                                          and not isinstance(value, bool)):
            if not (name in ("train_freq", "gradient_steps") and isinstance(value, (list, tuple))):
                raise ValueError(f"algo_kwargs: {name}={value!r}: {algo.__name__} wants an integer")
        elif isinstance(default, float) and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
            raise ValueError(f"algo_kwargs: {name}={value!r}: {algo.__name__} wants a number")


@dataclass(frozen=True)
class AlgoSpec:
    cls_name: str  # key of algorithm_table() (SB3 / sb3-contrib class, lower case); for a native one, its name
    recurrent: bool = False
    native: bool = False  # not SB3's: this project's own loop (DrQ-v2: agents.drq), no algo_kwargs

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
    "drq": AlgoSpec("drq", native=True),  # DrQ-v2, the pixel baseline (agents.drq)
}
