"""Search spaces: which config fields each sweep target tunes, over which ranges.

A parameter is named after the config field it sets, in the stage section it belongs to (``lam``:
LAMConfig, ``imitation``: ImitationConfig, ``skills``: SkillsConfig, ``train``: TrainConfig; a ``train``
parameter that TrainConfig lacks goes into its ``algo_kwargs``, as stable-baselines3 takes it). The
ranges are checked against the preset before a study starts: every end of a range and every choice must
make a valid config, so a study never spends hours to find a bad corner.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from rl_laof.cli import parse_value
from rl_laof.config_file import SECTIONS
from rl_laof.presets import from_preset
from sweeps.config import SweepConfig

#: the stage section each target tunes
TARGET_STAGE = {"laof": "lam", "lapo": "lam", "laom": "lam", "lafp": "imitation", "sof": "skills",
                "ppo": "train"}


def stage_config(section: str, preset: str, overrides: dict[str, Any]):
    """The config of a stage section (``lam`` / ``imitation`` / ``skills`` / ``train``) at a preset."""
    cls, presets = SECTIONS[section]
    return from_preset(cls, presets, preset, **overrides)


@dataclass(frozen=True)
class Param:
    """One tuned value: a float or int range (``log``: sampled on a log scale) or a list of choices."""

    name: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    choices: tuple[Any, ...] | None = None

    def __post_init__(self) -> None:
        if self.choices is None:
            if self.low is None or self.high is None or not self.low <= self.high:
                raise ValueError(f"{self.name}: a range needs low <= high (got {self.low}..{self.high})")
            if self.log and self.low <= 0:
                raise ValueError(f"{self.name}: a log range needs low > 0 (got {self.low})")
        elif not self.choices:
            raise ValueError(f"{self.name}: an empty list of choices")

    def suggest(self, trial) -> Any:
        if self.choices is not None:
            # Optuna stores choices as JSON-able scalars: lists (e.g. FSQ levels) travel as JSON strings
            encoded = [json.dumps(c) if isinstance(c, (list, tuple)) else c for c in self.choices]
            value = trial.suggest_categorical(self.name, encoded)
            return json.loads(value) if isinstance(value, str) and value.startswith("[") else value
        if self.integer:
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, log=self.log)

    def corners(self) -> list[Any]:
        """The values a valid space must allow: both ends of a range, every choice."""
        if self.choices is not None:
            return list(self.choices)
        return [int(self.low), int(self.high)] if self.integer else [self.low, self.high]

    def describe(self) -> str:
        if self.choices is not None:
            return f"{self.name} in {list(self.choices)}"
        return f"{self.name} in [{self.low:g}, {self.high:g}]" + (" (log)" if self.log else "")


def _lam_space(method: str) -> list[Param]:
    """LAPO / LAOM / LAOF: their loss weights, learning rate, latent size and IDM offset."""
    base = method.removesuffix("-action")
    space = [Param("fdm_weight", 0.1, 3.0, log=True),  # the reconstruction (forward model) loss
             Param("lr", 1e-4, 3e-3, log=True),
             Param("latent_dim", choices=(32, 64, 128, 256)),
             Param("max_offset", 1, 4, integer=True)]  # IDM offset k ~ U{1..max_offset}
    if base == "laof":  # the flow term, and how much a cell without the agent counts in it
        space[:0] = [Param("flow_weight", 0.05, 3.0, log=True), Param("flow_bg_weight", 0.01, 1.0, log=True)]
    if base == "lapo":  # VQ latents: the commitment weight and the VQ loss weight
        space += [Param("vq_commitment", 0.01, 0.5, log=True), Param("vq_weight", 0.1, 3.0, log=True)]
    elif base == "laom":  # LAOM's continuous latent: the target encoder's EMA rate instead
        space += [Param("ema_tau", 1e-4, 1e-2, log=True)]
    if method.endswith("-action"):
        space.append(Param("action_weight", 1e-3, 1.0, log=True))  # lambda
    return space


#: LAFP (flow-matching latent policy): its optimiser, ODE steps, time embedding and decoder
LAFP_SPACE = [Param("lr", 1e-4, 3e-3, log=True), Param("euler_steps", 1, 8, integer=True),
              Param("time_embed", choices=(32, 64, 128)), Param("decoder_lr", 1e-4, 3e-3, log=True),
              Param("weight_decay", 1e-6, 1e-2, log=True)]
#: SOF skills: optimiser, tokenizer width, FSQ vocabulary, flow-loss weighting, prior sampling
SOF_SPACE = [Param("lr", 1e-4, 3e-3, log=True), Param("d_model", choices=(64, 128, 256)),
             Param("fsq_levels", choices=((8, 5, 5, 5), (8, 6, 5), (7, 5, 5, 5, 5))),
             Param("background_weight", 0.01, 1.0, log=True), Param("top_k", 1, 20, integer=True)]
#: PPO, as rl-baselines3-zoo samples it (its hyperparams_opt.sample_ppo_params)
PPO_SPACE = [Param("batch_size", choices=(64, 128, 256, 512)), Param("n_steps", choices=(64, 128, 256, 512, 1024)),
             Param("gamma", choices=(0.9, 0.95, 0.98, 0.99, 0.995, 0.999)),
             Param("learning_rate", 1e-5, 1e-2, log=True), Param("ent_coef", 1e-8, 0.1, log=True),
             Param("clip_range", choices=(0.1, 0.2, 0.3, 0.4)), Param("n_epochs", choices=(1, 5, 10, 20)),
             Param("gae_lambda", choices=(0.8, 0.9, 0.92, 0.95, 0.98, 0.99, 1.0)),
             Param("max_grad_norm", choices=(0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 2.0, 5.0)),
             Param("vf_coef", 0.0, 1.0)]


def default_space(cfg: SweepConfig) -> list[Param]:
    if cfg.target in ("laof", "lapo", "laom"):
        return _lam_space(cfg.resolved_method)
    return {"lafp": LAFP_SPACE, "sof": SOF_SPACE, "ppo": PPO_SPACE}[cfg.target]


def parse_space_item(item: str) -> Param:
    """``--space NAME=LOW:HIGH`` (``:log`` appended for a log scale, integers give an int range) or
    ``--space NAME=[a,b,c]``."""
    name, sep, spec = item.partition("=")
    if not sep or not name:
        raise ValueError(f"--space {item!r}: use NAME=LOW:HIGH[:log] or NAME=[choice,...]")
    if spec.startswith("["):
        values = parse_value(spec)
        return Param(name, choices=tuple(tuple(v) if isinstance(v, list) else v for v in values))
    parts = spec.split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "log"):
        raise ValueError(f"--space {item!r}: use NAME=LOW:HIGH[:log] or NAME=[choice,...]")
    low, high = parse_value(parts[0]), parse_value(parts[1])
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
        raise ValueError(f"--space {item!r}: LOW and HIGH must be numbers")
    return Param(name, float(low), float(high), log=len(parts) == 3,
                 integer=isinstance(low, int) and isinstance(high, int))


def apply(section: str, values: dict[str, Any]) -> dict[str, Any]:
    """Sampled values as the section's config overrides (TrainConfig's unknown names -> algo_kwargs)."""
    cls, _ = SECTIONS[section]
    fields = {f.name for f in dataclasses.fields(cls)}
    out = {k: v for k, v in values.items() if k in fields}
    extra = {k: v for k, v in values.items() if k not in fields}
    if extra:
        out["algo_kwargs"] = {**out.get("algo_kwargs", {}), **extra}
    return out


def build_space(cfg: SweepConfig, fixed: dict[str, Any], narrowed: list[Param]) -> list[Param]:
    """The target's space with ``--space`` items replacing or adding parameters, checked against ``fixed``
    (``--set``) and the preset: a clear error rather than a study of failing trials."""
    section = TARGET_STAGE[cfg.target]
    cls, _ = SECTIONS[section]
    fields = {f.name for f in dataclasses.fields(cls)}
    space = {p.name: p for p in default_space(cfg)}
    for p in narrowed:
        if p.name not in fields and not (section == "train" and p.name in PPO_ALGO_KWARGS):
            raise ValueError(f"--space {p.name}: {cls.__name__} has no such field "
                             f"(fields: {', '.join(sorted(fields))})")
        space[p.name] = p
    both = sorted(set(space) & set(fixed))
    if both:
        raise ValueError(f"{', '.join(both)}: both fixed by --set and tuned by the search space; drop the --set, "
                         f"or fix it with --space {both[0]}=[value]")
    base = {**target_defaults(cfg), **fixed}
    try:
        stage_config(section, cfg.preset, apply(section, base))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"--set {fixed} conflicts with the {cfg.preset} preset: {exc}") from None
    for p in space.values():
        for value in p.corners():
            try:
                stage_config(section, cfg.preset, apply(section, {**base, p.name: value}))
            except (ValueError, TypeError) as exc:
                raise ValueError(f"search space conflicts with the {cfg.preset} preset: {p.describe()} allows "
                                 f"{p.name}={value}, which gives: {exc}") from None
    return list(space.values())


#: PPO arguments that are stable-baselines3's own (no TrainConfig field): they go into algo_kwargs
PPO_ALGO_KWARGS = ("max_grad_norm", "vf_coef")


def target_defaults(cfg: SweepConfig) -> dict[str, Any]:
    """What every trial of the target fixes: the method, the trial budget, the worker's threads."""
    out: dict[str, Any] = {"threads": cfg.worker_threads, "seed": cfg.seed}
    steps, every = cfg.budget
    if cfg.target in ("laof", "lapo", "laom"):
        out.update(method=cfg.resolved_method, mlp_probe_steps=0)  # the linear probe scores; the MLP is slow
        if steps is not None:
            out["steps"] = steps
            out["checkpoint_every"] = steps
        if every is not None:
            out["eval_every"] = every
    elif cfg.target == "lafp":
        out.update(latent="laof", policy="lafp", normalise=False, eval_backgrounds=("train",))
        if steps is not None:
            out.update(steps=steps, decoder_steps=steps)
    elif cfg.target == "sof":
        if steps is not None:
            out.update(tokenizer_steps=steps, prior_steps=steps, translator_steps=steps)
    elif cfg.target == "ppo":
        out.update(task=cfg.task, latent="laof")
        if steps is not None:
            out["total_steps"] = steps
        if every is not None:
            out["eval_every"] = every
            out["checkpoint_every"] = every
    return out
