"""Config files: stage settings a command reads with ``--config FILE`` (what ``sweeps.tune`` exports).

A config file is JSON with one section per stage, each a set of fields of that stage's dataclass::

    {"format": "rl_laof-config/1",
     "lam": {"flow_weight": 0.6, "lr": 0.0007},           # LAMConfig
     "imitation": {},                                    # ImitationConfig
     "skills": {},                                       # SkillsConfig
     "train": {"learning_rate": 0.0001},                 # TrainConfig
     "source": {...}}                                    # free-form: where the values came from

Precedence: the preset, then the file, then the command line's flags and ``--set``. Each stage's config
lives beside its code; :data:`SECTIONS` names them for config files and for the sweeps that write them: a
section is named as its stage's command (``python -m rl_laof.lam`` reads ``lam``).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from agents.config import TRAIN_PRESETS, TrainConfig
from rl_laof.cli import parse_file_values, shown
from rl_laof.imitation.config import IMITATION_PRESETS, ImitationConfig
from rl_laof.lam.config import LAM_PRESETS, LAMConfig
from rl_laof.runs import write_json
from rl_laof.skills.config import SKILLS_PRESETS, SkillsConfig

FORMAT = "rl_laof-config/1"
#: the stage sections of a config file: section -> (the stage's config dataclass, its presets)
SECTIONS: dict[str, tuple[type, dict[str, dict[str, Any]]]] = {
    "lam": (LAMConfig, LAM_PRESETS), "imitation": (ImitationConfig, IMITATION_PRESETS),
    "skills": (SkillsConfig, SKILLS_PRESETS), "train": (TrainConfig, TRAIN_PRESETS)}


def read_config_file(path: str | Path) -> dict[str, dict[str, Any]]:
    """Every stage section of the file, checked: known sections, each a JSON object of fields of the section's
    dataclass, each value of its field's type (``rl_laof.cli.parse_file_values``: the check ``--set`` values
    pass too)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"--config {path}: no such file")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"--config {path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"--config {path}: not an rl_laof config file (needs \"format\": \"{FORMAT}\")")
    sections = {name: cls for name, (cls, _) in SECTIONS.items()}
    out: dict[str, dict[str, Any]] = {}
    for name, values in data.items():
        if name in ("format", "source"):
            continue
        if name not in sections:
            raise ValueError(f"--config {path}: unknown section {name!r}; valid: {', '.join(sections)}")
        fields = {f.name for f in dataclasses.fields(sections[name])}
        if not isinstance(values, dict):
            raise ValueError(f"--config {path}: section {name!r} must be a JSON object of {sections[name].__name__} "
                             f"fields, not {shown(values)}")
        bad = sorted(set(values) - fields)
        if bad:
            raise ValueError(f"--config {path}: section {name!r} has no field(s) {bad} "
                             f"({sections[name].__name__} fields: {', '.join(sorted(fields))})")
        # every section typed here, also those a command hands on (train's lam / imitation sections)
        out[name] = parse_file_values(sections[name], values)
    return out


def config_section(path: str | Path | None, section: str, required: bool = True) -> dict[str, Any]:
    """The overrides one stage takes from ``--config`` (``{}`` without a file)."""
    if path is None:
        return {}
    sections = read_config_file(path)
    if section not in sections:
        if required:
            raise ValueError(f"--config {path} has no {section!r} section (it has: {', '.join(sections) or 'none'})")
        return {}
    return sections[section]


def write_config_file(path: str | Path, sections: dict[str, dict[str, Any]], source: dict[str, Any] | None = None
                      ) -> Path:
    """Write a config file (atomically), checking it reads back."""
    path = Path(path)
    write_json(path, {"format": FORMAT, **{k: v for k, v in sections.items() if v}, "source": source or {}})
    read_config_file(path)
    return path
